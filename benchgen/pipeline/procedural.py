"""Procedural datasets: index-addressable, optionally infinite streams of items from a task's own samplers.

Item ``i`` is a pure function of (task config, seed, split, depths, held-out share, i), whatever the
order items are read in: items come in blocks of ``BLOCK``, block ``b`` drawn from its own seeded
generator (``benchgen.seeding`` keyed by purpose and ``b``), one vectorised draw per cell, so reading
``ds[10**9]`` first or last gives the same item. Items are ``{"question", "answer", "metadata"}``
(reasoning-gym's item format).

Splits partition the query space: a query's held-out membership is a pure function of the query (a
64-bit hash of its token key, mixed with the seed), so ``split="test"`` draws only queries that
``split="train"`` can never draw, at every depth (``audit`` re-checks it by drawing both and
intersecting their question texts). Within its part of the space a split draws uniformly, with
replacement, from the same cells and samplers as the files (train distribution: the training depths;
the difficulty knob ``depth`` moves it; held-out cells such as test_systematic's never appear).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from benchgen import seeding
from benchgen.errors import BenchgenError
from benchgen.task import Task
from benchgen.tasks.grid.cells import row_hash

BLOCK = 1024
SPLITS = ("train", "test")
CACHE_BLOCKS = 64  # recent blocks kept as Python lists (random access within 64 Ki items stays cheap)
MAX_ROUNDS = 200  # rejection rounds per cell and block before a split is declared empty there
_MIX = 0x9E3779B97F4A7C15


def held_out_mask(key: np.ndarray, seed: int, share: float) -> np.ndarray:
    """Whether each query (a row of its integer key) is held out: a pure function of the query and seed."""
    h = row_hash(key) ^ np.uint64((int(seed) * _MIX) % (1 << 64))
    h = row_hash(h[:, None])  # mix again so the seed changes which queries are held out
    return (h >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53)) < share


def _depths(depth: int | Sequence[int] | None, default: Sequence[int]) -> tuple[int, ...]:
    """The depths asked for (an int or a list), else the task's training depths."""
    if depth is None:
        return tuple(default)
    values = (depth,) if isinstance(depth, (int, np.integer)) else tuple(depth)
    if not values or any(isinstance(d, bool) or not isinstance(d, (int, np.integer)) for d in values):
        raise BenchgenError(f"depth={depth!r}: expected an integer or a list of integers")
    return tuple(sorted({int(d) for d in values}))


class ProceduralDataset:
    """An index-addressable stream of items (``size=None``: infinite) from ``task`` with ``cfg``."""

    def __init__(self, task: Task, cfg: Any, *, split: str = "train", depth: int | Sequence[int] | None = None,
                 size: int | None = None, held_out_share: float = 0.1, sampler: Any = None):
        """Check the options; build the task's samplers for ``cfg`` (once: ``with_depth`` shares them)."""
        if task.procedural is None:
            raise BenchgenError(f"task {task.name!r} has no procedural sampler (Task.procedural)")
        if split not in SPLITS:
            raise BenchgenError(f"split={split!r}: expected one of {', '.join(SPLITS)}")
        if not 0.0 < held_out_share < 1.0:
            raise BenchgenError(f"held_out_share={held_out_share!r}: expected a share in (0, 1)")
        if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 0):
            raise BenchgenError(f"size={size!r}: expected a non-negative integer or None (infinite)")
        self.task, self.cfg, self.split, self.size, self.held_out_share = task, cfg, split, size, float(held_out_share)
        self.seed = int(cfg.seed)
        self.sampler = sampler if sampler is not None else task.procedural(cfg)
        self.depths = _depths(depth, self.sampler.depths())
        self.cells = [c for d in self.depths for c in self.sampler.cells(d)]
        if split == "test" and all(self.sampler.shared(c) for c in self.cells):
            raise BenchgenError(f"depth {list(self.depths)}: every query of it is in train (as in the files); "
                                "no held-out split exists there")
        self._cache: dict[int, dict[str, list]] = {}

    # -- the sequence -----------------------------------------------------------------------------
    def __len__(self) -> int:
        """``size``; an infinite dataset has no length."""
        if self.size is None:
            raise TypeError("an infinite procedural dataset has no len(); give size=N")
        return self.size

    def __getitem__(self, i: int) -> dict:
        """Item ``i`` (negative indices count from the end of a sized dataset)."""
        if isinstance(i, slice):
            raise TypeError("index one item at a time, or use .table(start, stop) for a range")
        if isinstance(i, bool) or not isinstance(i, (int, np.integer)):
            raise TypeError(f"index must be an integer, got {type(i).__name__}")
        i = int(i)
        if i < 0 and self.size is not None:
            i += self.size
        if i < 0 or (self.size is not None and i >= self.size):
            raise IndexError(f"index {i} out of range" + ("" if self.size is None else f" (size {self.size})"))
        return self._item(self._columns(i // BLOCK), i)

    def __iter__(self) -> Iterator[dict]:
        """Items 0, 1, 2, ... (forever when infinite), a block at a time."""
        indices = range(self.size) if self.size is not None else itertools.count()
        for i in indices:
            yield self._item(self._columns(i // BLOCK), i)

    def with_depth(self, depth: int | Sequence[int] | None) -> ProceduralDataset:
        """The same stream at another difficulty (same config, seed, split, size and held-out share)."""
        return ProceduralDataset(self.task, self.cfg, split=self.split, depth=depth, size=self.size,
                                 held_out_share=self.held_out_share, sampler=self.sampler)

    # -- blocks -----------------------------------------------------------------------------------
    def table(self, start: int, stop: int) -> pa.Table:
        """Items ``start..stop-1`` as one arrow table (index, question, answer, depth, the task's extras)."""
        if not 0 <= start <= stop or (self.size is not None and stop > self.size):
            raise BenchgenError(f"table({start}, {stop}): expected 0 <= start <= stop" +
                                ("" if self.size is None else f" <= size {self.size}"))
        parts = []
        for b in range(start // BLOCK, -(-stop // BLOCK)):
            t = self.block(b)
            lo, hi = max(start - b * BLOCK, 0), min(stop - b * BLOCK, BLOCK)
            parts.append(t.slice(lo, hi - lo))
        return pa.concat_tables(parts) if parts else self.block(0).slice(0, 0)

    def block(self, b: int) -> pa.Table:
        """Items ``b * BLOCK .. (b + 1) * BLOCK - 1`` as a table: a pure function of the dataset and ``b``."""
        rng = seeding.rng(self.seed, "procedural", self.task.name, self.split, *self.depths,
                          int(round(self.held_out_share * 1e9)), b)
        which = rng.integers(0, len(self.cells), size=BLOCK)
        order = np.argsort(which, kind="stable")
        counts = np.bincount(which, minlength=len(self.cells))
        parts = [(c, self._draw_cell(rng, c, int(m))) for c, m in zip(self.cells, counts) if m]
        if hasattr(self.sampler, "tables"):  # one rendering call for every cell (khop: one padded matrix)
            table = self.sampler.tables(parts, self.split)
        else:
            table = pa.concat_tables([self.sampler.table(rows, c, self.split) for c, rows in parts])
        position = np.empty(BLOCK, dtype=np.int64)
        position[order] = np.arange(BLOCK)  # item j is row position[j] of the cell-ordered table
        keep = [n for n in table.column_names if n not in ("id", "split", "input_ids", "target_ids")]
        table = table.select(keep).take(pa.array(position))
        return table.add_column(0, "index", pa.array(np.arange(b * BLOCK, (b + 1) * BLOCK, dtype=np.int64)))

    def _draw_cell(self, rng: np.random.Generator, cell, m: int) -> dict[str, np.ndarray]:
        """``m`` rows of ``cell`` from this split's part of the query space (rejection on the partition)."""
        if self.sampler.shared(cell):
            if self.split != "train":
                raise BenchgenError(f"cell {cell}: every query is in train; it has no held-out part")
            return self.sampler.draw(rng, cell, m)
        want_held = self.split == "test"
        share = self.held_out_share if want_held else 1.0 - self.held_out_share
        kept: list[dict[str, np.ndarray]] = []
        have = 0
        for _ in range(MAX_ROUNDS):
            rows = self.sampler.draw(rng, cell, int((m - have) / share * 1.1) + 16)
            ok = np.flatnonzero(held_out_mask(rows["key"], self.seed, self.held_out_share) == want_held)[: m - have]
            kept.append({k: v[ok] for k, v in rows.items()})
            have += len(ok)
            if have == m:
                return {k: np.concatenate([r[k] for r in kept]) for k in kept[0]}
        raise BenchgenError(f"cell {cell}: no {self.split} queries found in {MAX_ROUNDS} rounds (held_out_share="
                            f"{self.held_out_share}); the cell is too small for this share")

    def _columns(self, b: int) -> dict[str, list]:
        """Block ``b`` as Python lists per column (a few recent blocks are kept)."""
        cols = self._cache.get(b)
        if cols is None:
            t = self.block(b)
            cols = {n: t.column(n).to_pylist() for n in t.column_names}
            if len(self._cache) >= CACHE_BLOCKS:
                self._cache.pop(next(iter(self._cache)))
            self._cache[b] = cols
        return cols

    def _item(self, cols: dict[str, list], i: int) -> dict:
        """Item ``i`` as reasoning-gym's dict, from its block's columns."""
        j = i % BLOCK
        meta = {k: cols[k][j] for k in cols if k not in ("prompt", "answer", "index")}
        meta.update(split=self.split, index=i, id=f"{self.task.name}-{self.split}-{i}", seed=self.seed)
        return {"question": cols["prompt"][j], "answer": cols["answer"][j],
                "metadata": {"task": self.task.name, **meta}}

    # -- the partition, re-checked -----------------------------------------------------------------
    def audit(self, n: int = 20_000) -> list[str]:
        """Draw ``n`` items of each split at these depths and intersect their question texts: the held-out
        split must never produce a train question. One line per violation (at most 5); [] when clean."""
        other = "test" if self.split == "train" else "train"
        if any(self.sampler.shared(c) for c in self.cells):
            return []  # shared cells (khop's facts) have no held-out part by definition
        drawn = [set(ProceduralDataset(self.task, self.cfg, split=split, depth=self.depths, sampler=self.sampler,
                                       held_out_share=self.held_out_share).table(0, n).column("prompt").to_pylist())
                 for split in (self.split, other)]  # unsized streams: the audit may read past ``size``
        both = sorted(drawn[0] & drawn[1])
        return [f"question {q!r} drawn by both {self.split} and {other}" for q in both[:5]]

    def __repr__(self) -> str:
        """Task, split, difficulty, seed and size."""
        size = "infinite" if self.size is None else f"size={self.size}"
        return (f"ProceduralDataset(task={self.task.name!r}, split={self.split!r}, {self.sampler.knob}="
                f"{list(self.depths)}, seed={self.seed}, {size})")
