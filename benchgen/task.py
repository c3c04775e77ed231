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
