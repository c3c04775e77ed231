"""Benchmark validity: can a non-reasoning baseline solve a test split? Measured at ``generate``
(recorded in manifest.json and the dataset card) and re-measured by ``benchgen audit``.

For every test split and depth the cheap baselines of the task (``tasks/<task>/baselines.py`` and
the common ones of ``tasks/baselines.py``, fitted on train only) are scored by exact match against ``chance`` = 1 / (number of distinct answers in
that (split, depth) cell), the expected accuracy of a uniform guess over the answers the cell
actually uses. A cell fails when

- on a held-out split (test_systematic, test_depth, test_interp) any baseline other than train
  lookup beats chance by more than max(MARGIN, the half-width of its Wilson 95% interval), or
- on any test split the train lookup (identical train prompt -> its answer) does.

Partial-depth lines (``Baseline.hops_short`` > 0: the task's algorithm stopped j hops short, e.g. the
p-hop find_{p-j} answer) are partial reasoning, not shortcuts: each cell records them (``partial``,
``best_partial``) so depth claims can be judged against them, but they are outside the rule above.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from benchgen.stats import wilson
from benchgen.task import Task
from benchgen.tasks.baselines import CHANCE, LOOKUP, PARTIAL, Context, for_task, sorted_codes, unique_sorted

HELD_OUT = ("test_systematic", "test_depth", "test_interp")
MARGIN = 0.05
RULE = (f"fails when a baseline other than train_lookup beats chance by more than max({MARGIN}, its "
        f"Wilson 95% half-width) on {', '.join(HELD_OUT)}, or train_lookup does on any test split")


def _r(x: float) -> float:
    return round(float(x), 6)


def measure(ds, task: Task) -> dict | None:
    """Score the task's cheap baselines on every test split; None when there is nothing to score."""
    if "train" not in ds.splits:
        return None
    splits = [s for s in ds.splits if s.startswith("test")]
    if not splits:
        return None
    everything = for_task(task)
    chosen = [b for b in everything if b.cheap]
    rows = pa.concat_tables([ds.table(s) for s in splits])
    split_code = np.repeat(np.arange(len(splits)), [ds.manifest["splits"][s]["rows"] for s in splits])
    depth = rows.column("depth").to_numpy().astype(np.int64)
    depth_values, depth_code = np.unique(depth, return_inverse=True)
    n_cells = len(splits) * len(depth_values)
    group = split_code * len(depth_values) + depth_code
    n = np.bincount(group, minlength=n_cells)
    _, answer_code = sorted_codes(rows.column("answer").combine_chunks())
    distinct = unique_sorted(group * (int(answer_code.max()) + 1) + answer_code) // (int(answer_code.max()) + 1)
    n_answers = np.bincount(distinct, minlength=n_cells)
    ctx = Context(ds)
    answer = rows.column("answer")
    correct = np.zeros((len(chosen), n_cells), dtype=np.int64)
    for i, b in enumerate(chosen):
        hit = pc.equal(b.predict(ctx, rows), answer).to_numpy(zero_copy_only=False)
        correct[i] = np.bincount(group, weights=hit, minlength=n_cells).round().astype(np.int64)
    lo, hi = wilson(correct, np.broadcast_to(n, correct.shape))
    names = [b.name for b in chosen]

    def best_of(i: int, g: int) -> dict:
        return {"baseline": names[i], "correct": int(correct[i, g]), "accuracy": _r(correct[i, g] / n[g]),
                "ci_low": _r(lo[i, g]), "ci_high": _r(hi[i, g])}

    out_splits: dict[str, list[dict]] = {}
    for g in np.flatnonzero(n):
        s, d = divmod(int(g), len(depth_values))
        dv = int(depth_values[d])
        acc = correct[:, g] / n[g]
        # shortcuts that apply here: not the lookup, not a partial-depth line, not the task at this depth
        ok = np.array([b.name != LOOKUP and not b.partial and b.applies(dv) for b in chosen])
        best = int(np.flatnonzero(ok)[np.argmax(acc[ok])]) if ok.any() else names.index(LOOKUP)
        entry = {"depth": dv, "n": int(n[g]), "answers": int(n_answers[g]),
                 "chance": _r(1.0 / n_answers[g]), "best": best_of(best, g),
                 "correct": {nm: int(c) for nm, c, b in zip(names, correct[:, g], chosen)
                             if b.applies(dv) and not b.partial}}
        part = np.array([b.partial and b.applies(dv) for b in chosen])
        if part.any():  # partial reasoning: recorded beside the shortcuts, outside the audit rule
            entry["partial"] = {names[i]: int(correct[i, g]) for i in np.flatnonzero(part)}
            entry["best_partial"] = best_of(int(np.flatnonzero(part)[np.argmax(acc[part])]), g)
        out_splits.setdefault(splits[s], []).append(entry)
    partial = [b.name for b in chosen if b.partial]
    return {"chance": CHANCE, "rule": RULE, "margin": MARGIN, "held_out": list(HELD_OUT),
            "baselines": [b.name for b in chosen if not b.partial],
            **({"partial_lines": partial, "partial_note": PARTIAL} if partial else {}),
            "not_run": {b.name: ("random guess: chance is given analytically" if b.name == "chance"
                                 else "costly: run `benchgen baselines`") for b in everything if not b.cheap},
            "splits": out_splits}


def problems(record: dict | None) -> list[str]:
    """One line per failing (split, depth) cell, naming the baseline, its accuracy and chance."""
    if not record:
        return []
    out = []
    for split, entries in record["splits"].items():
        for e in entries:
            names = [nm for nm in e["correct"] if split in HELD_OUT or nm == LOOKUP]
            if not names or not split.startswith("test"):
                continue
            c = np.array([e["correct"][nm] for nm in names], dtype=np.float64)
            lo, hi = wilson(c, np.full(len(c), e["n"]))
            acc = c / e["n"]
            allowed = np.maximum(MARGIN, (hi - lo) / 2)
            excess = acc - e["chance"] - allowed
            worst = int(np.argmax(excess))
            if excess[worst] > 0:
                out.append(f"validity: split '{split}' depth {e['depth']}: baseline '{names[worst]}' scores "
                           f"{acc[worst]:.3f} [{lo[worst]:.3f}, {hi[worst]:.3f}] vs chance {e['chance']:.3f} "
                           f"(n={e['n']}; allowed excess {allowed[worst]:.3f}): the split can be solved "
                           f"without the reasoning it is meant to need")
    return out


def audit(ds, task: Task | None = None) -> list[str]:
    """Re-measure the baselines on the files and report every failing cell (``task``: the dataset's own)."""
    from benchgen import registry

    return problems(measure(ds, task or registry.get_task(ds.task)))


def audit_safely(ds, task: Task) -> list[str]:
    """:func:`audit`, turning a dataset too broken to score (other audit lines say why) into one line."""
    try:
        return audit(ds, task)
    except (ValueError, IndexError, KeyError, pa.ArrowException) as e:
        return [f"validity: baselines could not be scored on these files ({type(e).__name__}: {e})"]


def _acc(best: dict) -> str:
    """``accuracy [ci_low, ci_high]`` of a recorded best baseline."""
    return f"{best['accuracy']:.3f} [{best['ci_low']:.3f}, {best['ci_high']:.3f}]"


def card_section(record: dict | None) -> list[str]:
    """Markdown lines for the dataset card: chance and the best shortcut per test split and depth."""
    if not record:
        return []
    partial = record.get("partial_lines") or []
    lines = ["## Validity", "",
             "Non-reasoning baselines fitted on train, scored per test split and depth "
             f"(`benchgen baselines DIR --out OUT` runs all of them). Chance = {record['chance']}; "
             f"the audit {record['rule']}.", "",
             "| split | depth | n | chance | best shortcut baseline | accuracy [95% CI] | train lookup |"
             + (" best partial-depth line [95% CI] |" if partial else ""),
             "|---|---|---|---|---|---|---|" + ("---|" if partial else "")]
    for split, entries in record["splits"].items():
        for e in entries:
            b = e["best"]
            look = e["correct"].get("train_lookup")
            lines.append(f"| {split} | {e['depth']} | {e['n']} | {e['chance']:.4f} | {b['baseline']} | "
                         f"{_acc(b)} | " + ("–" if look is None else f"{look / e['n']:.3f}") + " |"
                         + ("" if not partial else " – |" if "best_partial" not in e
                            else f" {e['best_partial']['baseline']} {_acc(e['best_partial'])} |"))
    if partial:
        lines += ["", f"Partial-depth lines ({', '.join(f'`{x}`' for x in partial)}) are "
                  + record.get("partial_note", PARTIAL) + "."]
    if record.get("not_run"):
        lines += ["", "Not run at generate time: " + "; ".join(f"`{k}` ({v})" for k, v in record["not_run"].items())
                  + "."]
    return lines + [""]
