"""Saturation of accuracy with test-time loops: accuracy(T) ~ a - b * exp(-T / tau), per split and depth.

The fit uses the swept T up to the peak (the best T; the rise Parcae reports for test-time
looping), by least squares weighted by each cell's n: for every tau on a log grid, (a, b) is a
weighted linear fit in exp(-T / tau); the tau with the smallest weighted squared error wins.
Reported: a (the plateau), b, tau (loops for the gap to shrink by e), the fit's RMSE over the
fitted points, and their number. No fit (with the reason) when the curve does not rise (peak
minus accuracy at the first T below ``delta``), when fewer than 3 loop counts reach the peak, or
when the best tau sits on the grid's edge (not identified by the data). Past the peak, the
overthinking drop = peak - accuracy at the largest T, with a 95% bootstrap interval over examples
(paired: resampled as the 2x2 table of correct-at-peak x correct-at-final counts).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from benchgen.evaluators.scoring.score import Scored

TAU_GRID = np.geomspace(0.05, 1000.0, 600)


def fit_saturating(T: np.ndarray, acc: np.ndarray, n: np.ndarray) -> dict:
    """Weighted least-squares fit of acc ~ a - b exp(-T/tau) over ``TAU_GRID`` (b > 0)."""
    w = n / n.sum()
    X = np.exp(-T[None, :] / TAU_GRID[:, None])               # (grid, points)
    xm, ym = X @ w, acc @ w
    cov = (X - xm[:, None]) ** 2 @ w
    with np.errstate(invalid="ignore", divide="ignore"):
        slope = ((X - xm[:, None]) * (acc - ym)[None, :]) @ w / cov  # acc = a + slope * x, so b = -slope
    a = ym - slope * xm
    resid = acc[None, :] - (a[:, None] + slope[:, None] * X)
    sse = (resid ** 2) @ w
    sse = np.where((slope < 0) & np.isfinite(sse), sse, np.inf)
    i = int(np.argmin(sse))
    if not np.isfinite(sse[i]):
        return {"fit": None, "reason": "no rising exponential fits these points"}
    if i in (0, len(TAU_GRID) - 1):
        return {"fit": None, "reason": f"tau not identified: the best fit sits at the grid edge (tau={TAU_GRID[i]:.3g}), "
                                      "so the rise is not a saturating exponential (e.g. a step at the hop count)"}
    rmse = float(np.sqrt(np.mean(resid[i] ** 2)))
    return {"fit": {"a": float(a[i]), "b": float(-slope[i]), "tau": float(TAU_GRID[i]), "rmse": rmse,
                    "points": int(len(T)), "loops": [int(t) for t in T]}}


def _drop_interval(scored: Scored, table, group: int, i_peak: int, i_final: int,
                   resamples: int, seed: int) -> tuple[float | None, float | None]:
    """95% bootstrap interval of (correct at peak T) - (correct at final T) over the group's examples."""
    if resamples <= 0:
        return None, None
    rows = np.flatnonzero((scored.example_group == group) & table.present[:, i_peak] & table.present[:, i_final])
    if not len(rows):
        return None, None
    p, f = table.correct[rows, i_peak], table.correct[rows, i_final]
    counts = np.array([(p & ~f).sum(), (~p & f).sum(), (p == f).sum()], dtype=np.float64)
    draws = np.random.default_rng(seed).multinomial(len(rows), counts / len(rows), size=resamples)
    diff = (draws[:, 0] - draws[:, 1]) / len(rows)
    lo, hi = np.percentile(diff, [2.5, 97.5])
    return float(lo), float(hi)


def saturation(cells: pd.DataFrame, scored: Scored | None, *, delta: float, bootstrap: int, seed: int) -> dict:
    """Per split and depth: the saturating fit up to the peak, and the drop after it with its interval."""
    loops = sorted(int(x) for x in cells["loops"].dropna().unique())
    base = {"model": "accuracy(T) = a - b * exp(-T / tau), fitted up to the peak (n-weighted least squares)",
            "rise_threshold": delta, "bootstrap": {"resamples": bootstrap, "seed": seed}}
    if len(loops) < 2:
        return {"available": False, "reason": "needs predictions at two or more loop counts", **base}
    out = {"available": True, "loops": loops, **base, "per_split": {}}
    depth_values = None if scored is None else scored.depth_codes[0].tolist()
    table = None
    if scored is not None and scored.row_loops is not None:
        from benchgen.evaluators.compute_accuracy import loop_table

        table = loop_table(scored)
    for split in dict.fromkeys(cells["split"]):
        sc = cells[(cells["split"] == split) & cells["loops"].notna()].sort_values(["depth", "loops"])
        rows = []
        for depth, g in sc.groupby("depth", sort=True):
            T = g["loops"].to_numpy(np.float64)
            acc, n = g["accuracy"].to_numpy(np.float64), g["n"].to_numpy(np.float64)
            i_peak = int(np.argmax(acc))
            entry = {"depth": int(depth), "peak_loops": int(T[i_peak]), "peak": float(acc[i_peak]),
                     "first": float(acc[0]), "final_loops": int(T[-1]), "final": float(acc[-1])}
            if acc[i_peak] - acc[0] < delta:
                entry.update(fit=None, reason=f"accuracy does not rise (peak - first = {acc[i_peak] - acc[0]:.3f} "
                                              f"< {delta})")
            elif i_peak + 1 < 3:
                entry.update(fit=None, reason="fewer than 3 loop counts up to the peak")
            else:
                entry.update(fit_saturating(T[:i_peak + 1], acc[:i_peak + 1], n[:i_peak + 1]))
            drop = {"value": float(acc[i_peak] - acc[-1]), "ci_low": None, "ci_high": None}
            if table is not None and int(depth) in depth_values and split in scored.splits:
                group = scored.splits.index(split) * len(depth_values) + depth_values.index(int(depth))
                ix = [table.loops.tolist().index(int(t)) for t in (T[i_peak], T[-1])]
                drop["ci_low"], drop["ci_high"] = _drop_interval(scored, table, group, *ix, bootstrap, seed)
            entry["drop"] = drop
            rows.append(entry)
        out["per_split"][split] = rows
    return out
