"""Write an evaluation's outputs: results.json, report.md, plots (and report.html) in one directory,
and re-render them from a results.json (``benchgen report``)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from benchgen.atomic import atomic_dir
from benchgen.evaluators.report.plots import PLOTS, write_plots
from benchgen.evaluators.report.render import render_html, render_markdown
from benchgen.evaluators.results import RESULTS, Results


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
            from benchgen.evaluators.scoring.predictions import write_predictions

            write_predictions(predictions, tmp / "predictions.parquet", fingerprint=results.fingerprint)
    return Path(outdir)


def render_into(results: Results, outdir: Path, *, html: bool = False, plots: bool = True) -> list[Path]:
    """Write report.md, plots/ and (optionally) report.html into a directory being built."""
    outdir = Path(outdir)
    pngs = write_plots(results, outdir / PLOTS) if plots else []
    rel = [f"{PLOTS}/{p.name}" for p in pngs]
    (outdir / "report.md").write_text(render_markdown(results, rel))
    written = [outdir / "report.md", *pngs]
    if html:
        (outdir / "report.html").write_text(render_html(results, pngs))
        written.append(outdir / "report.html")
    return written


def rerender(results_path: str | Path, out: str | Path | None = None, *, html: bool = False,
             plots: bool = True) -> list[Path]:
    """Re-render report.md / plots / report.html from a results.json (next to it by default).

    Files are built in a temporary directory, then each is moved into place (the plots folder
    is swapped as a whole), so a failure never leaves a half-written report.
    """
    results = Results.from_json(results_path)
    src = Path(results_path)
    target = Path(out) if out is not None else (src if src.is_dir() else src.parent)
    from benchgen.atomic import check_target, kind_of, new_temp_dir, write_file, write_marker

    if out is not None:  # never write report files or swap plots/ inside a directory benchgen did not write
        check_target(target, True, "--out", kind="report", accept=("results",))
    target.mkdir(parents=True, exist_ok=True)
    if kind_of(target) is None:
        write_marker(target, "report")

    tmp = new_temp_dir(target / "report")  # umask modes (mkdtemp would make plots/ 0700)
    try:
        written = render_into(results, tmp, html=html, plots=plots)
        final = []
        if (tmp / PLOTS).exists():
            old = target / f".{PLOTS}.old-{os.getpid()}"
            if (target / PLOTS).exists():
                (target / PLOTS).rename(old)
            (tmp / PLOTS).rename(target / PLOTS)
            shutil.rmtree(old, ignore_errors=True)
        for p in written:
            dest = target / p.relative_to(tmp)
            if p.parent.name != PLOTS:
                write_file(dest, p.read_text())
            final.append(dest)
        return final
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
