"""Write an evaluation's outputs: results.json, report.md, plots (and report.html) in one directory.

Lives apart from ``results`` (the data) and ``report`` (the rendering) so neither imports the
other's module at call time: results <- report <- outputs, no cycle.
"""

from __future__ import annotations

from pathlib import Path

from benchgen.evaluators.report import render_into
from benchgen.evaluators.results import RESULTS, Results

from benchgen.atomic import atomic_dir


def write_outputs(results: Results, outdir: str | Path, *, html: bool = False, plots: bool = True,
                  overwrite: bool = False, predictions=None) -> Path:
    """Write results.json, report.md, plots/*.png (and report.html) into ``outdir`` atomically.

    Everything is built in a temporary directory beside ``outdir`` (marked as a benchgen results
    directory) and moved into place, so an interrupted run never leaves a half-written results
    directory and ``--overwrite`` never replaces anything but a results directory. A predictions
    table, when given, is written inside as ``predictions.parquet`` (with the dataset fingerprint).
    """
    with atomic_dir(outdir, overwrite, kind="results") as tmp:
        (tmp / RESULTS).write_text(results.dumps(), encoding="utf-8")
        render_into(results, tmp, html=html, plots=plots)
        if predictions is not None:
            from benchgen.evaluators.predictions import write_predictions

            write_predictions(predictions, tmp / "predictions.parquet", fingerprint=results.fingerprint)
    return Path(outdir)
