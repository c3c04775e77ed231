"""A task is a value: what the registry returns, the pipeline runs and the CLI lists.

Built-in tasks (``tasks/khop``, ``tasks/addition``, ``tasks/induction``) and plugins alike
register a :class:`Task` under the ``benchgen.tasks`` entry point group::

    [project.entry-points."benchgen.tasks"]
    mytask = "my_package.my_task:TASK"

The pipeline builds the writer (on disk, or in memory for the Python API), hands it to
``generate``, then measures validity with ``baselines`` and writes the manifest and card; a task
never opens files itself, so the same code serves every output.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import pyarrow as pa

from benchgen.config import Preset
from benchgen.vocab import Vocab


class Writer(Protocol):
    """What a task writes through: :class:`benchgen.dataset.DatasetWriter` or the in-memory writer.

    ``supports_parts``: worker processes may encode shards themselves (``part_path`` /
    ``add_parts``, disk only); otherwise every split goes through ``write_split``.
    """

    rows_per_shard: int
    dictionary_columns: list[str]
    supports_parts: bool

    def write_split(self, split: str, tables) -> None: ...

    def write_extra(self, name: str, table: pa.Table) -> None: ...


class Procedural(Protocol):
    """What a task supplies for procedural generation (``benchgen.procedural``; the mechanism is
    ``benchgen.pipeline.procedural``): the same samplers as its files, one depth at a time.

    ``knob`` names the difficulty (``"hops"``, ``"operands"``); ``depths`` are the training depths (the
    default), ``levels`` every depth the config covers (a curriculum's range). ``cells(depth)`` are the
    train-distribution cells at that depth (never a cell the files hold out, e.g. test_systematic's);
    ``draw(rng, cell, m)`` gives ``m`` independent uniform rows with ``"key"``, an integer matrix whose
    row identifies the query; ``table(rows, cell, split)`` renders them (``depth``, ``prompt``,
    ``answer`` and the task's extra columns). ``shared(cell)``: the cell's queries all belong to train
    (khop's atomic facts), so no held-out split exists there.
    """

    knob: str

    def depths(self) -> tuple[int, ...]:
        """The training depths (the default difficulty)."""

    def levels(self) -> tuple[int, ...]:
        """Every depth the config covers (a curriculum's ladder)."""

    def cells(self, depth: int) -> list:
        """The train-distribution cells at ``depth``."""

    def draw(self, rng, cell, m: int) -> dict:
        """``m`` independent uniform rows of ``cell`` (``"key"``: the query's integer key)."""

    def table(self, rows: dict, cell, split: str) -> pa.Table:
        """The rows rendered as the task's columns."""

    def shared(self, cell) -> bool:
        """Whether every query of ``cell`` belongs to train (no held-out part)."""


@dataclass(frozen=True)
class Task:
    """One task: its name, config class and presets, and the functions the pipeline calls.

    - ``generate(cfg, writer, *, progress, workers)`` writes every split (and task extras such
      as ``kg.parquet``) through ``writer``; ``workers`` is passed only when ``parallel``.
    - ``audit(dataset)`` (``audit(dataset, sample=N)`` when ``audit_sample``; ``workers=N`` too
      when ``parallel``) re-derives the split guarantees from the files by an independent route:
      a list of violations.
    - ``baselines()`` lists the task's own non-reasoning baselines (the common ones are added
      by ``benchgen.tasks.baselines.for_task``).
    - ``about`` is the dataset card's prose; ``citations`` its BibTeX entries.
    - ``procedural(cfg)`` (optional) returns the task's :class:`Procedural` samplers for ``cfg``.
    """

    name: str
    description: str
    config: type
    presets: Mapping[str, Preset]
    schema: pa.Schema
    vocab: Callable[[Any], Vocab]
    generate: Callable[..., None]
    audit: Callable[..., list[str]]
    baselines: Callable[[], Sequence[Any]] = lambda: ()
    pretty_name: str = ""
    about: str = ""
    citations: tuple[str, ...] = field(default=())
    parallel: bool = False
    audit_sample: bool = False
    procedural: Callable[[Any], Procedural] | None = None


def deferred(target: str) -> Callable[..., Any]:
    """A function that imports ``"module:name"`` on its first call and calls it (or returns it, when it
    is not callable: a list of baselines); keeps heavy modules (networkx, a fitted probe) off
    ``benchgen generate``'s start-up."""
    module, _, name = target.partition(":")

    def call(*args: Any, **kwargs: Any) -> Any:
        obj = getattr(importlib.import_module(module), name)
        return obj(*args, **kwargs) if callable(obj) else obj

    call.__name__ = call.__qualname__ = name
    call.__doc__ = f"{target}, imported when first called"
    return call
