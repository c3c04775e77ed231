"""reasoning-gym bridge: benchgen's tasks in reasoning-gym's registry (``import benchgen.reasoning_gym``).

Importing this module (reasoning-gym installed) registers every task that has a procedural sampler
as ``benchgen_<task>``, so the frameworks that consume reasoning-gym (verl, TRL, OpenRLHF, environment
hubs) take benchgen's items unchanged::

    import reasoning_gym, benchgen.reasoning_gym
    ds = reasoning_gym.create_dataset("benchgen_khop", size=1000, seed=0, preset="khop-small", depth=3)
    ds[0]                          # {"question", "answer", "metadata"}: benchgen.procedural's item i
    ds.score_answer(answer, ds[0]) # benchgen.score_answer: the evaluator's exact match, not rg's default

Config fields: ``size``, ``seed``, ``preset``, ``depth`` (the difficulty knob), ``split`` ("train" /
"test"), ``held_out_share`` and ``options`` (the task's config fields, e.g. ``{"num_entities": 64}``).
reasoning-gym pins packages that conflict with benchgen's ``lmeval`` extra, so keep it in its own
environment (README: Python API); the bridge is tested there (``tests/test_reasoning_gym.py``, slow).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from benchgen import registry
from benchgen.api import procedural, score_answer
from benchgen.errors import BenchgenError

PREFIX = "benchgen_"


@dataclasses.dataclass
class BenchgenConfig:
    """reasoning-gym config of a benchgen task (``task`` is fixed per registered name)."""

    task: str = "khop"
    preset: str | None = None
    seed: int | None = None
    size: int = 500
    depth: int | list[int] | None = None
    split: str = "train"
    held_out_share: float = 0.1
    options: dict = dataclasses.field(default_factory=dict)

    def validate(self) -> None:
        """reasoning-gym calls this before building the dataset."""
        if isinstance(self.size, bool) or not isinstance(self.size, int) or self.size < 1:
            raise ValueError(f"size={self.size!r}: expected a positive integer")


def _dataset_class():
    """The reasoning-gym dataset class (defined on first use: reasoning_gym is optional)."""
    from reasoning_gym.dataset import ProceduralDataset as RGDataset

    class BenchgenDataset(RGDataset):
        """benchgen.procedural items under reasoning-gym's interface (same item i for the same seed)."""

        def __init__(self, config: BenchgenConfig):
            """The procedural dataset behind this reasoning-gym config (seed drawn by reasoning-gym when None)."""
            super().__init__(config=config, seed=config.seed, size=config.size)
            config.seed = self.seed  # reasoning-gym draws a seed when none is given; keep it
            self.procedural = procedural(config.task, config.preset, self.seed, split=config.split,
                                         depth=config.depth, size=config.size, held_out_share=config.held_out_share,
                                         **config.options)

        def __getitem__(self, idx: int) -> dict[str, Any]:
            """benchgen.procedural's item ``idx``, with reasoning-gym's source fields."""
            item = self.procedural[idx]
            item["metadata"].update(source_dataset=PREFIX + self.config.task, source_index=int(idx))
            return item

        def score_answer(self, answer: str | None, entry: dict[str, Any]) -> float:
            """benchgen's reward: exact match after the evaluator's normalisation (1.0 / 0.0)."""
            return score_answer(answer, entry)

    return BenchgenDataset


def register() -> list[str]:
    """Register ``benchgen_<task>`` for every task with a procedural sampler; returns the names registered
    (names already registered are left as they are)."""
    try:
        from reasoning_gym.factory import DATASETS, register_dataset
    except ModuleNotFoundError as e:
        raise registry.missing_extra(e, "benchgen.reasoning_gym") from None
    cls = _dataset_class()
    names = []
    for name in registry.task_names():
        try:
            task = registry.get_task(name)
        except BenchgenError:
            continue  # a broken plugin does not stop the others
        if task.procedural is None or PREFIX + name in DATASETS:
            continue
        config = dataclasses.make_dataclass(f"Benchgen{name.title()}Config",
                                            [("task", str, dataclasses.field(default=name))],
                                            bases=(BenchgenConfig,))
        register_dataset(PREFIX + name, cls, config)
        names.append(PREFIX + name)
    return names


REGISTERED = register()
