"""``benchgen baselines``: score every non-reasoning baseline of a task through the evaluator.

Each baseline (``tasks/baselines.py`` and ``tasks/<task>/baselines.py``, fitted on train only) predicts every row of the scored
splits; the predictions go through the same ``evaluate`` as any model, and land in
``OUT/<baseline>/`` as ``results.json``, ``report.md`` and ``predictions.parquet``, marked
``model.floor`` so ``benchgen leaderboard`` shows them as floor rows. ``OUT/summary.json`` and
``OUT/summary.md`` hold the table split x depth -> chance, the best shortcut baseline and (tasks that
have them) the best partial-depth line.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from benchgen import registry
from benchgen.atomic import atomic_dir
from benchgen.errors import BenchgenError
from benchgen.evaluators import MetricSettings, evaluate
from benchgen.evaluators.report.outputs import render_into
from benchgen.evaluators.results import RESULTS
from benchgen.evaluators.scoring.predictions import write_predictions
from benchgen.evaluators.scoring.score import resolve_dataset
from benchgen.pipeline.validity import CHANCE
from benchgen.stats import wilson
from benchgen.tasks.baselines import LOOKUP, PARTIAL, Context, for_task, sorted_codes

SUMMARY = "summary.json"


@dataclass
class BaselineRun:
    """What one ``benchgen baselines`` call produced (for the CLI to print)."""

    out: Path
    names: list[str]
    summary: dict
    seconds: float


def select(task: str, only: list[str] | None):
    """The task's baselines, optionally only the named ones (error names the unknown one)."""
    every = for_task(registry.get_task(task))
    if not only:
        return every
    known = {b.name: b for b in every}
    for name in only:
        if name not in known:
            raise BenchgenError(f"--only {name!r}: not a {task} baseline (expected one of {', '.join(known)})")
    return [known[n] for n in dict.fromkeys(only)]


def _summary(ds, cells_by_name: dict, chosen) -> dict:
    """Per scored split and depth: n, chance, every baseline's accuracy, the best shortcut."""
    by_name = {b.name: b for b in chosen}
    first = next(iter(cells_by_name.values()))
    out: dict = {"chance": CHANCE, "splits": {}}
    if any(b.partial for b in chosen):
        out["partial_note"] = PARTIAL
    for split in dict.fromkeys(first["split"]):
        answers = ds.table(split, columns=["depth", "answer"])
        depth = answers.column("depth").to_numpy().astype(np.int64)
        _, code = sorted_codes(answers.column("answer").combine_chunks())
        rows = []
        for d in sorted(set(depth.tolist())):
            n = int((depth == d).sum())
            correct = {}
            for name, cells in cells_by_name.items():
                sel = cells[(cells["split"] == split) & (cells["depth"] == d)]
                correct[name] = int(sel["correct"].sum())
            entry = {"depth": d, "n": n, "chance": 1.0 / len(np.unique(code[depth == d])),
                     "accuracy": {k: c / n for k, c in correct.items()}}
            applies = [k for k in correct if k not in (LOOKUP, "chance") and by_name[k].applies(d)]
            for key, names in (("best", [k for k in applies if not by_name[k].partial]),
                               ("best_partial", [k for k in applies if by_name[k].partial])):
                if names:
                    best = max(names, key=lambda k: correct[k])  # first on ties
                    lo, hi = wilson(np.array([correct[best]]), np.array([n]))
                    entry[key] = {"baseline": best, "accuracy": correct[best] / n, "ci_low": float(lo[0]),
                                  "ci_high": float(hi[0])}
            rows.append(entry)
        out["splits"][split] = rows
    return out


def summary_markdown(summary: dict) -> str:
    """The summary as a Markdown table (split, depth, n, chance, best shortcut and its accuracy, and the
    best partial-depth line when the task has them)."""
    partial = "partial_note" in summary
    lines = ["# Non-reasoning baselines", "", f"Chance = {summary['chance']}.", "",
             "| split | depth | n | chance | best shortcut baseline | accuracy [95% CI] |"
             + (" best partial-depth line | accuracy [95% CI] |" if partial else ""),
             "|---|---|---|---|---|---|" + ("---|---|" if partial else "")]
    for split, rows in summary["splits"].items():
        for e in rows:
            cols = [best_text(e.get("best"), " | ")] + ([best_text(e.get("best_partial"), " | ")] if partial else [])
            lines.append(f"| {split} | {e['depth']} | {e['n']} | {e['chance']:.4f} | " + " | ".join(cols) + " |")
    if partial:
        lines += ["", f"Partial-depth lines are {summary['partial_note']}."]
    return "\n".join(lines) + "\n"


def best_text(best: dict | None, sep: str = " ") -> str:
    """``name<sep>accuracy [ci_low, ci_high]`` of a summary's best baseline, dashes when there is none."""
    if best is None:
        return f"–{sep}–"
    return f"{best['baseline']}{sep}{best['accuracy']:.3f} [{best['ci_low']:.3f}, {best['ci_high']:.3f}]"


def run_baselines(dataset, out: str | Path, *, only: list[str] | None = None, splits: list[str] | None = None,
                  overwrite: bool = False, plots: bool = False, bootstrap: int = 200) -> BaselineRun:
    """Fit every baseline on train, score it on ``splits`` (default: all but train), write ``out``."""
    start = time.perf_counter()
    ds = resolve_dataset(dataset)
    chosen = select(ds.task, only)
    if "train" not in ds.splits:
        raise BenchgenError(f"dataset {ds.path}: no 'train' split (baselines are fitted on train)")
    splits = splits or [s for s in ds.splits if s != "train"]
    for s in splits:
        if s not in ds.splits:
            raise BenchgenError(f"--splits {s!r}: not in dataset {ds.path} (has: {', '.join(ds.splits)})")
    rows = pa.concat_tables([ds.table(s) for s in splits])
    ctx = Context(ds)
    settings = MetricSettings(bootstrap=bootstrap)
    cells_by_name = {}
    with atomic_dir(out, overwrite, kind="results") as tmp:
        for b in chosen:
            preds = pa.table({"id": rows.column("id"), "prediction": b.predict(ctx, rows)})
            meta = {"baseline": True, "floor": True, "fitted_on": "train", "description": b.description,
                    **({"hops_short": b.hops_short} if b.partial else {})}
            results = evaluate(ds, preds, splits=splits, settings=settings, model_name=f"baseline:{b.name}",
                               model_metadata=meta)
            sub = tmp / b.name
            sub.mkdir()
            (sub / RESULTS).write_text(results.dumps(), encoding="utf-8")
            render_into(results, sub, plots=plots)
            write_predictions(preds, sub / "predictions.parquet", fingerprint=ds.fingerprint)
            cells_by_name[b.name] = results.cells
        summary = _summary(ds, cells_by_name, chosen)
        summary = {"dataset": {"task": ds.task, "fingerprint": ds.fingerprint, "path": str(ds.path)},
                   "baselines": {b.name: b.description for b in chosen}, **summary}
        (tmp / SUMMARY).write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")
        (tmp / "summary.md").write_text(summary_markdown(summary), encoding="utf-8")
    return BaselineRun(out=Path(out), names=[b.name for b in chosen], summary=summary,
                       seconds=time.perf_counter() - start)
