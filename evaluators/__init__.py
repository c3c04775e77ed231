"""Evaluators: predictions -> cells (split, depth, loops) -> metrics -> results.json -> report.

Public API (the CLI's ``evaluate`` / ``report`` / ``predict-oracle`` call exactly these)::

    from benchgen.evaluators import evaluate, write_outputs, Results
    results = evaluate("data/khop", "preds.parquet", model_name="my-model")
    write_outputs(results, "eval/my-model", html=True)
    Results.from_json("eval/my-model/results.json")
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from benchgen.evaluators.metrics import MetricSettings, compute_metrics
from benchgen.evaluators.models.oracle import oracle_predictions
from benchgen.evaluators.report.outputs import rerender, write_outputs
from benchgen.evaluators.report.render import render_html, render_markdown
from benchgen.evaluators.results import SCHEMA_VERSION, Results
from benchgen.evaluators.scoring.predictions import (
    load_predictions,
    read_predictions,
    validate_predictions,
    write_predictions,
)
from benchgen.evaluators.scoring.score import Normalization, Scored, cells, resolve_dataset, score

__all__ = [
    "evaluate", "Results", "MetricSettings", "Normalization", "Scored", "SCHEMA_VERSION",
    "score", "cells", "compute_metrics", "load_predictions", "read_predictions",
    "validate_predictions", "write_predictions", "oracle_predictions", "write_outputs",
    "render_markdown", "render_html", "rerender",
]


def evaluate(dataset, predictions, *, splits: list[str] | None = None, allow_missing: bool = False,
             normalization: Normalization | None = None, settings: MetricSettings | None = None,
             model_name: str | None = None, model_metadata: dict | None = None) -> Results:
    """Score ``predictions`` (path, arrow table or DataFrame) on ``dataset`` (path or Dataset).

    Returns :class:`Results` with the dataset fingerprint, model name/metadata, normalisation,
    coverage, cells (split, depth, loops) and all metrics.
    """
    ds = resolve_dataset(dataset)
    settings = settings or MetricSettings()
    meta = model_metadata or {}
    if settings.trained_loops is None and isinstance(meta.get("trained_loops"), int):
        settings = dataclasses.replace(settings, trained_loops=meta["trained_loops"],
                                       loop_sampling=settings.loop_sampling or meta.get("loop_sampling"))
    normalization = normalization or Normalization()
    scored = score(ds, predictions, splits=splits, allow_missing=allow_missing, normalization=normalization)
    table = cells(scored)
    metrics = compute_metrics(table, scored, settings)
    from benchgen.evaluators.probes import probe_metrics

    metrics["probes"] = probe_metrics(ds, predictions, scored.splits)
    if model_name is None:
        model_name = Path(predictions).stem if isinstance(predictions, (str, Path)) else "model"
    model = {"name": model_name, **(model_metadata or {})}
    if isinstance(predictions, (str, Path)):
        model.setdefault("predictions", str(predictions))
    coverage = dict(scored.coverage)
    norm = coverage.pop("normalization")
    dataset_info = {"task": ds.task, "fingerprint": ds.fingerprint, "path": str(ds.path if getattr(ds, "in_memory", False) else ds.path.resolve()),
                    "seed": ds.manifest.get("seed"), "benchgen_version": ds.manifest.get("benchgen_version"),
                    "config": ds.config}
    return Results(dataset=dataset_info, model=model, normalization=norm, coverage=coverage,
                   cells=table, metrics=metrics, settings=settings.to_json())
