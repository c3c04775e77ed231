"""Exit rules compared: accuracy against loops used, per rule and threshold, per split and depth.

For every selected rule (``MetricSettings.exit_rules``; default: every registered rule at its
defaults) and every point of its threshold sweep, each example stops at the rule's T
(:func:`exit_rules.stop_index`); results.json gets, per split and per (split, depth): n, correct,
accuracy with its Wilson 95% interval, mean loops used and the loops-used histogram (counts per
swept T). The oracle (correct if correct at any T, using its first correct T, else the smallest)
is the upper bound; the ``fixed`` rule swept over every T gives the fixed-T points.
"""

from __future__ import annotations

import numpy as np

from benchgen.errors import BenchgenError
from benchgen.evaluators.exit_rules import (
    ExitRule,
    LoopTable,
    MissingColumn,
    get_rule,
    parse_spec,
    rule_names,
    stop_index,
)
from benchgen.evaluators.scoring.score import Scored
from benchgen.stats import wilson


def loop_table(scored: Scored) -> LoopTable:
    """The dense per-(example, loop count) table of a scored sweep."""
    loops, code = scored.loop_codes
    N, L = scored.n_examples, len(loops)
    ex = scored.row_example

    def dense(values: np.ndarray, fill, dtype) -> np.ndarray:
        """Scatter one value per prediction row into an (examples, loops) matrix."""
        out = np.full((N, L), fill, dtype=dtype)
        out[ex, code] = values
        return out

    present = dense(np.ones(len(ex), bool), False, bool)
    return LoopTable(loops=np.asarray(loops), present=present, correct=dense(scored.correct, False, bool),
                     columns={k: dense(v, np.nan, np.float64) for k, v in scored.extras.items()},
                     answer=None if scored.row_answer is None else dense(scored.row_answer, 0, np.uint64))


def _num(x) -> float | None:
    """Plain float for JSON (NaN -> None)."""
    return None if x is None or np.isnan(x) else float(x)


def summarise(scored: Scored, table: LoopTable, idx: np.ndarray, ok: np.ndarray) -> dict:
    """Per split (and per depth): n, correct, accuracy [Wilson], mean loops used, loops-used histogram."""
    covered = table.present.any(axis=1)
    L = len(table.loops)
    depths = scored.depth_codes[0]
    n_d = len(depths)
    g = (scored.example_split.astype(np.int64) * n_d + scored.depth_codes[1])[covered]
    size = len(scored.splits) * n_d
    n = np.bincount(g, minlength=size)
    c = np.bincount(g, weights=ok[covered], minlength=size).round().astype(np.int64)
    used = table.loops[idx[covered]].astype(np.float64)
    lsum = np.bincount(g, weights=used, minlength=size)
    hist = np.bincount(g * L + idx[covered], minlength=size * L).reshape(size, L)

    def entry(nn, cc, ls, hh) -> dict:
        """One summary entry: counts, accuracy with its Wilson interval, mean loops, histogram."""
        lo, hi = wilson(np.array([cc]), np.array([nn]))
        return {"n": int(nn), "correct": int(cc), "accuracy": _num(cc / nn) if nn else None,
                "ci_low": _num(lo[0]), "ci_high": _num(hi[0]), "mean_loops": _num(ls / nn) if nn else None,
                "loops_hist": [int(x) for x in hh]}

    out = {}
    for k, split in enumerate(scored.splits):
        sl = slice(k * n_d, (k + 1) * n_d)
        e = entry(n[sl].sum(), c[sl].sum(), lsum[sl].sum(), hist[sl].sum(axis=0))
        e["by_depth"] = [{"depth": int(depths[j]), **entry(n[sl][j], c[sl][j], lsum[sl][j], hist[sl][j])}
                         for j in np.flatnonzero(n[sl])]
        out[split] = e
    return out


def oracle(scored: Scored, table: LoopTable) -> dict:
    """Upper bound: correct when correct at any swept T, at its first correct T (else the smallest present)."""
    ok = (table.correct & table.present).any(axis=1)
    first_present = np.argmax(table.present, axis=1)
    idx = np.where(ok, np.argmax(table.correct & table.present, axis=1), first_present)
    return {"definition": "correct if correct at some swept T; loops used = the first correct T, else the "
                          "smallest swept T", "per_split": summarise(scored, table, idx, ok)}


def _points(rule: ExitRule, params: dict, table: LoopTable, default_T: int) -> tuple[dict, list[dict]]:
    """The chosen parameter setting and the sweep's settings (ascending in the swept parameter).

    A rule whose swept parameter has no default and no sweep values (``fixed``'s T) is swept over
    every swept loop count, its default being the trained T (else the largest swept)."""
    key = rule.sweep_param
    chosen = dict(params)
    values = list(rule.sweep)
    if not values:
        values = [int(t) for t in table.loops]
        if chosen[key] is None:
            chosen[key] = default_T
    sweep = [dict(params, **{key: v}) for v in sorted(set(values) | {chosen[key]})]
    return chosen, sweep


def _evaluate_rule(rule: ExitRule, params: dict, scored: Scored, table: LoopTable, default_T: int) -> dict:
    """One rule: its chosen setting and every point of its threshold sweep, or why it is not available."""
    chosen, sweep = _points(rule, params, table, default_T)
    base = {"rule": rule.name, "summary": rule.summary, "source": rule.source, "params": chosen,
            "sweep_param": rule.sweep_param}
    points = []
    for p in sweep:
        try:
            may = rule.stop(table, p)
        except MissingColumn as e:
            return {**base, "available": False, "reason": f"not available for these predictions: needs per-loop "
                                                           f"column {e.args[0]!r}"}
        idx = stop_index(table, np.asarray(may, dtype=bool))
        ok = table.correct[np.arange(len(idx)), idx]
        points.append({"params": p, "chosen": p == chosen, "per_split": summarise(scored, table, idx, ok)})
    return {**base, "available": True, "points": points}


def selected_rules(specs: tuple[str, ...] | None) -> list[tuple[ExitRule, dict]]:
    """The rules to compare: the given ``NAME[:k=v,...]`` specs, else every registered rule at its defaults."""
    if specs:
        return [parse_spec(s) for s in specs]
    return [(r, dict(r.params)) for r in map(get_rule, rule_names())]


def exit_rule_metrics(scored: Scored, specs: tuple[str, ...] | None, trained_loops: int | None) -> dict:
    """Every selected rule over its threshold sweep, plus the oracle, for a scored loop sweep."""
    if scored.row_loops is None or len(scored.loops_values) < 2:
        if specs:
            raise BenchgenError("--exit-rule: needs predictions at two or more loop counts (a loop sweep: "
                                "--loops with two or more counts)")
        return {"available": False, "reason": "needs predictions at two or more loop counts"}
    rules = selected_rules(specs)
    table = loop_table(scored)
    loops = table.loops.tolist()
    default_T = trained_loops if trained_loops in loops else loops[-1]
    return {"available": True, "loops": loops, "rule": "each example stops at the first swept T (ascending) where "
            "the rule holds, else at its largest T", "oracle": oracle(scored, table),
            "rules": [_evaluate_rule(r, p, scored, table, default_T) for r, p in rules]}
