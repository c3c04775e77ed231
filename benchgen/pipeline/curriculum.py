"""An adaptive curriculum over a procedural dataset's difficulty knob: hold a target rolling accuracy.

The learner's rewards (``benchgen.score_answer``, 1.0 / 0.0 per item) are fed back with ``update``;
once ``window`` rewards at the current level are in, their mean is compared with ``target``: above
``target + band`` the level goes one step up the ``levels`` ladder (deeper), below ``target - band``
one step down, and the window starts afresh at the new level. Items come from one procedural stream
per level, read in order (a per-level cursor), so a resumed curriculum continues exactly where it
stopped: ``state_dict`` is plain JSON and ``Curriculum.from_state`` rebuilds it.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Sequence
from typing import Any

from benchgen.errors import BenchgenError
from benchgen.pipeline.procedural import ProceduralDataset

STATE_VERSION = 1


class Curriculum:
    """Difficulty control for one procedural task (built by ``benchgen.Curriculum``; see the module doc)."""

    def __init__(self, base: ProceduralDataset, *, target: float = 0.7, band: float = 0.1, window: int = 64,
                 levels: Sequence[int] | None = None, start: int | None = None, spec: dict | None = None):
        """A curriculum over ``base``'s depth (``spec``: what ``from_state`` rebuilds ``base`` from)."""
        if not 0.0 < target < 1.0:
            raise BenchgenError(f"target={target!r}: expected an accuracy in (0, 1)")
        if not 0.0 <= band < min(target, 1.0 - target):
            raise BenchgenError(f"band={band!r}: expected 0 <= band < min(target, 1 - target)")
        if isinstance(window, bool) or not isinstance(window, int) or window < 1:
            raise BenchgenError(f"window={window!r}: expected a positive integer")
        self.base, self.target, self.band, self.window = base, float(target), float(band), window
        self.levels = tuple(sorted({int(x) for x in (levels or base.sampler.levels())}))
        if not self.levels:
            raise BenchgenError("levels: expected at least one depth")
        first = start if start is not None else min(base.depths)
        if first not in self.levels:
            raise BenchgenError(f"start={first}: not one of the levels {list(self.levels)}")
        self.spec = dict(spec or {})  # what from_state needs to rebuild the base dataset
        self.level = first
        self.cursor: dict[int, int] = {}
        self.recent: deque[float] = deque(maxlen=window)
        self.history: list[dict] = []  # level changes: {"step", "from", "to", "accuracy"}
        self.steps = 0
        self._streams: dict[int, ProceduralDataset] = {}

    def dataset(self, level: int | None = None) -> ProceduralDataset:
        """The infinite procedural stream at ``level`` (default: the current one)."""
        level = self.level if level is None else level
        if level not in self._streams:
            self._streams[level] = self.base.with_depth(level)
        return self._streams[level]

    def sample(self, n: int) -> list[dict]:
        """The next ``n`` items at the current level (its cursor advances)."""
        start = self.cursor.get(self.level, 0)
        ds = self.dataset()
        items = [ds[i] for i in range(start, start + n)]
        self.cursor[self.level] = start + n
        return items

    @property
    def accuracy(self) -> float | None:
        """Mean of the rewards in the window at the current level (None before the first)."""
        return sum(self.recent) / len(self.recent) if self.recent else None

    def update(self, rewards: float | Iterable[float]) -> int:
        """Record rewards in [0, 1] (one per item, in order); move the level when a full window is off
        target; return the (possibly new) level."""
        values = [rewards] if isinstance(rewards, (int, float)) else list(rewards)
        for r in values:
            r = float(r)
            if not 0.0 <= r <= 1.0:
                raise BenchgenError(f"reward {r!r}: expected a value in [0, 1] (benchgen.score_answer)")
            self.recent.append(r)
            self.steps += 1
            if len(self.recent) == self.window:
                self._decide()
        return self.level

    def _decide(self) -> None:
        """A full window: one level up above target + band, one down below target - band."""
        acc, i = self.accuracy, self.levels.index(self.level)
        step = 1 if acc > self.target + self.band else -1 if acc < self.target - self.band else 0
        if step and 0 <= i + step < len(self.levels):
            new = self.levels[i + step]
            self.history.append({"step": self.steps, "from": self.level, "to": new, "accuracy": acc})
            self.level = new
            self.recent.clear()

    # -- saved state --------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue: settings, level, per-level cursors, the window, the history."""
        return {"version": STATE_VERSION, "spec": self.spec, "target": self.target, "band": self.band,
                "window": self.window, "levels": list(self.levels), "level": self.level,
                "cursor": {str(k): v for k, v in self.cursor.items()}, "recent": list(self.recent),
                "history": list(self.history), "steps": self.steps}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from ``state_dict()`` output (settings must match this curriculum's)."""
        if state.get("version") != STATE_VERSION:
            raise BenchgenError(f"curriculum state: version {state.get('version')!r}, expected {STATE_VERSION}")
        for key in ("target", "band", "window", "levels"):
            mine = list(self.levels) if key == "levels" else getattr(self, key)
            if state[key] != mine:
                raise BenchgenError(f"curriculum state: {key}={state[key]!r} differs from this curriculum's {mine!r}")
        if state["level"] not in self.levels:
            raise BenchgenError(f"curriculum state: level {state['level']} is not one of {list(self.levels)}")
        self.level = int(state["level"])
        self.cursor = {int(k): int(v) for k, v in state["cursor"].items()}
        self.recent = deque((float(r) for r in state["recent"]), maxlen=self.window)
        self.history = [dict(h) for h in state["history"]]
        self.steps = int(state["steps"])
