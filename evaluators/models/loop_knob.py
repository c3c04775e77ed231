"""How an external model is told its loop count T: a forward keyword or a config field.

- :class:`KwargKnob` (``--loop-kwarg NAME``): ``NAME=T`` is passed to ``forward`` / ``generate``
  (Huginn-style ``num_steps``);
- :class:`ConfigKnob` (``--loop-config NAME``): the config attribute ``NAME`` is set to T on every
  config object of the model that has it (the top config, nested text configs, sub-module configs)
  for the duration of one loop count, then restored (e.g. ``loop_num_passes`` of transformers'
  ``Inkling2LoopForCausalLM``).

:func:`check_effect` refuses a knob that changes nothing: the logits of a probe batch at the
smallest and largest requested T must differ.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, nullcontext, suppress

import numpy as np

from benchgen.errors import BenchgenError


class KwargKnob:
    """The loop count as a forward/generate keyword argument."""

    flag = "--loop-kwarg"

    def __init__(self, name: str):
        self.name = name

    def kwargs(self, loops: int | None) -> dict:
        """Keyword arguments for a call at ``loops`` (none for a loop-free call)."""
        return {} if loops is None else {self.name: int(loops)}

    def at(self, loops: int | None):
        """Nothing to set: the keyword carries T."""
        return nullcontext()


def _config_objects(model) -> list:
    """Every distinct config object reachable from ``model``: its config, nested sub-configs
    (``text_config``, ...) and the configs held by its sub-modules."""
    seen: dict[int, object] = {}

    def visit(cfg, depth: int = 0) -> None:
        """Collect ``cfg`` and the configs nested in it (bounded depth)."""
        if cfg is None or id(cfg) in seen or depth > 4 or not hasattr(cfg, "to_dict"):
            return
        seen[id(cfg)] = cfg
        for value in list(vars(cfg).values()):
            if hasattr(value, "to_dict") and hasattr(value, "model_type"):
                visit(value, depth + 1)
        get_text = getattr(cfg, "get_text_config", None)
        if callable(get_text):
            with suppress(TypeError, ValueError, AttributeError):
                visit(get_text(), depth + 1)

    visit(getattr(model, "config", None))
    for module in getattr(model, "modules", lambda: [])():
        visit(getattr(module, "config", None))
    return list(seen.values())


class ConfigKnob:
    """The loop count as a config field, set before each loop count and restored after."""

    flag = "--loop-config"

    def __init__(self, model, name: str):
        self.name = name
        self.configs = [c for c in _config_objects(model) if name in vars(c) or hasattr(type(c), name)]
        if not self.configs:
            raise BenchgenError(f"--loop-config {name}: the model's config has no field {name!r} "
                                "(nor any nested text config); check the name in its config.json")

    def kwargs(self, loops: int | None) -> dict:
        """No keyword: the config carries T."""
        return {}

    @contextmanager
    def at(self, loops: int | None) -> Iterator[None]:
        """Set the field to ``loops`` on every config holding it; restore the old values after."""
        if loops is None:
            yield
            return
        old = [getattr(c, self.name) for c in self.configs]
        try:
            for c in self.configs:
                try:
                    setattr(c, self.name, int(loops))
                except Exception as e:  # noqa: BLE001 - e.g. a strict config refusing an int for a float field
                    raise BenchgenError(f"--loop-config {self.name}: the config refuses the loop count {loops} "
                                        f"({type(e).__name__}; is {self.name!r} an integer loop count?)") from None
            yield
        finally:
            for c, v in zip(self.configs, old):
                setattr(c, self.name, v)


def make_knob(model, loop_kwarg: str | None, loop_config: str | None):
    """The knob the user chose (None: a model without a loop count); both at once is an error."""
    if loop_kwarg and loop_config:
        raise BenchgenError("--loop-config and --loop-kwarg: give one loop knob, not both")
    if loop_config:
        return ConfigKnob(model, loop_config)
    return KwargKnob(loop_kwarg) if loop_kwarg else None


def check_effect(knob, low: int, high: int, logits_low: np.ndarray, logits_high: np.ndarray) -> None:
    """Refuse a knob whose smallest and largest loop counts give identical logits on a probe batch."""
    if low != high and np.array_equal(logits_low, logits_high):
        raise BenchgenError(f"{knob.flag} {knob.name}: the model's logits are identical at T={low} and "
                            f"T={high} on a probe batch, so this knob has no effect (wrong name, or the "
                            "model ignores it)")
