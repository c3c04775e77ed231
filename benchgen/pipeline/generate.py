"""Generate a dataset: config -> task -> writer -> validity -> manifest + card.

The one place a dataset is assembled. The task writes its splits through the writer it is
handed (a :class:`~benchgen.dataset.DatasetWriter` into a temp dir beside ``out``, or a
:class:`~benchgen.memory.MemoryWriter` for the Python API); the cheap validity baselines are
scored on what was written; the manifest records them and the card shows them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from benchgen.config import to_dict
from benchgen.dataset import DatasetWriter
from benchgen.memory import MemoryDataset, MemoryWriter
from benchgen.pipeline.card import render_card
from benchgen.pipeline.validity import measure
from benchgen.task import Task
from benchgen.workers import resolve_workers


def generate(task: Task, cfg: Any, out: str | Path | None = None, *, overwrite: bool = False,
             progress: bool = False, workers: int | None = None) -> Path | MemoryDataset:
    """Generate ``task`` with config ``cfg`` into directory ``out`` (atomic), or in memory when ``out`` is None.

    ``workers`` (tasks that run units in worker processes; default: the CPUs this job may use) never
    changes the bytes written. Returns the dataset directory, or the :class:`MemoryDataset`.
    """
    cfg.validate()
    run: dict[str, Any] = {"workers": resolve_workers(workers)} if task.parallel else {}
    meta = {"task": task.name, "config": to_dict(cfg), "seed": cfg.seed, "vocab": task.vocab(cfg),
            "schema": task.schema}
    writer = MemoryWriter(**meta) if out is None else DatasetWriter(out, overwrite=overwrite, **meta)
    with writer:
        task.generate(cfg, writer, progress=progress, **run)
        return finish(writer, task)


def finish(writer: DatasetWriter | MemoryWriter, task: Task | None) -> Path | MemoryDataset:
    """Finish what a writer holds: validity (cheap baselines on the written splits, when the dataset
    is a task's), the manifest and the card; commit. Also for datasets written from tables directly."""
    written = writer.finish()
    validity = measure(written, task) if task is not None else None
    manifest = writer.manifest()
    if validity is not None:
        manifest["validity"] = validity
    return writer.commit(validity=validity, card=render_card(manifest, task))
