"""Metrics derived from cells (per split, depth curve, depth extrapolation, overthinking) and from
per-row outcomes (margins, halting, oracle best loop).

Definitions (DESIGN.md "Evaluation"):

- depth horizon: largest depth d such that accuracy >= tau at every depth up to d, on the
  extrapolation curve (test_id and test_depth pooled by depth);
- mean extrapolation accuracy: mean over test_depth depths of the per-depth accuracy;
- gap: test_id accuracy minus mean extrapolation accuracy;
- overthinking, per (split, depth) over the loops sweep: best_loops = argmax accuracy (smallest
  on ties), peak, final (accuracy at the largest T), drop = peak - final, onset = first T >
  best_loops with accuracy < peak - delta, loops_needed = smallest T with accuracy >= tau; the
  summary states whether the model was trained at a fixed T (a decline past a fixed trained T is
  a train/test mismatch, not overthinking) or a sampled T;
- t_first (LTG's t*), per (split, depth): mean over examples of the first swept T whose top-1
  prediction is correct, over the examples correct at some T, plus the share never correct;
- depth learned vs depth reached (LTG): on the extrapolation curve, the depth horizon at the
  trained T (learned) and the horizon of the per-depth best accuracy, each depth at its own best
  T (reached);
- halting: per example stop at the first T (ascending) with kl_prev < epsilon and
  entropy < h, else at its largest T;
- oracle best loop: an example counts as correct if it is correct at any loop count.

Intervals: Wilson 95% per cell; derived numbers get a stratified bootstrap. Resampling the
n per-example outcomes of a cell with replacement gives a Binomial(n, correct/n) count, so
the bootstrap draws those counts directly (same distribution, no per-example arrays).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from benchgen.errors import BenchgenError
from benchgen.evaluators.scoring.score import Scored, wilson

EPS = 1e-9  # tolerance on threshold comparisons (accuracies are ratios of integers)


@dataclass(frozen=True)
class MetricSettings:
    """Thresholds and bootstrap settings; recorded in results.json."""

    tau: float = 0.9               # accuracy threshold for depth horizon and loops-needed
    delta: float = 0.05            # overthinking onset tolerance below the peak
    bootstrap: int = 1000          # bootstrap resamples for derived numbers
    bootstrap_seed: int = 0        # seed of the bootstrap resampling (not the data's seed)
    halt_kl: float = 0.01          # halting rule: KL(p_t || p_{t-1}) < halt_kl ...
    halt_entropy: float = 3.0      # ... and entropy < halt_entropy (Loop-Think-Generalize)
    primary_loops: int | None = None  # loops used for per-split / depth metrics (None: largest)
    trained_loops: int | None = None  # T the model was trained at (None: the primary loops)
    loop_sampling: str | None = None  # "fixed" or "sampled" T in training (None: unknown)
    id_split: str = "test_id"
    depth_split: str = "test_depth"
    exit_rules: tuple[str, ...] | None = None  # NAME[:k=v,...] rules to compare (None: every rule, defaults)

    def __post_init__(self) -> None:
        if not 0.0 <= self.tau <= 1.0:
            raise BenchgenError(f"tau: must be in [0, 1], got {self.tau}")
        if not 0.0 <= self.delta <= 1.0:
            raise BenchgenError(f"delta: must be in [0, 1], got {self.delta}")
        if self.bootstrap < 0:
            raise BenchgenError(f"bootstrap: must be >= 0, got {self.bootstrap}")

    def to_json(self) -> dict:
        return asdict(self)


def _num(x) -> float | None:
    """Plain float for JSON (NaN -> None)."""
    if x is None:
        return None
    x = float(x)
    return None if np.isnan(x) else x


def _interval(value, samples: np.ndarray) -> dict:
    samples = samples[~np.isnan(samples)] if samples.size else samples
    if samples.size == 0 or value is None:
        return {"value": _num(value), "ci_low": None, "ci_high": None}
    lo, hi = np.percentile(samples, [2.5, 97.5])
    return {"value": _num(value), "ci_low": _num(lo), "ci_high": _num(hi)}


def _never_degenerate(entry: dict, lo: float, hi: float) -> dict:
    """A bootstrap interval of zero width (every cell at accuracy 0 or 1: the parametric resamples never
    vary) claims certainty from a finite sample; use the Wilson interval of the pooled counts instead
    (for a difference, the difference of the two Wilson intervals), and say so."""
    if entry["ci_low"] is None or entry["ci_low"] != entry["ci_high"] or not np.isfinite([lo, hi]).all():
        return entry
    return {**entry, "ci_low": _num(min(lo, entry["value"])), "ci_high": _num(max(hi, entry["value"])),
            "ci_method": "wilson (the bootstrap was degenerate)"}


def has_loops(cells: pd.DataFrame) -> bool:
    return bool(cells["loops"].notna().any())


def loops_values(cells: pd.DataFrame) -> list[int]:
    return sorted(int(x) for x in cells["loops"].dropna().unique())


def primary_loops(cells: pd.DataFrame, settings: MetricSettings) -> int | None:
    """The loop count per-split and depth metrics are reported at (None: model without loops)."""
    if not has_loops(cells):
        return None
    values = loops_values(cells)
    if settings.primary_loops is None:
        return values[-1]
    if settings.primary_loops not in values:
        raise BenchgenError(f"primary_loops: {settings.primary_loops} is not among the predicted loop "
                            f"counts {values}")
    return int(settings.primary_loops)


def at_loops(cells: pd.DataFrame, loops: int | None) -> pd.DataFrame:
    return cells if loops is None else cells[cells["loops"] == loops]


def _acc_entry(n: int, c: int) -> dict:
    lo, hi = wilson(np.array([c]), np.array([n]))
    return {"n": int(n), "correct": int(c), "accuracy": _num(c / n) if n else None,
            "ci_low": _num(lo[0]), "ci_high": _num(hi[0])}


def per_split(cells: pd.DataFrame, settings: MetricSettings) -> dict:
    """Per split: accuracy at the primary loops (Wilson CI); with a sweep, accuracy per loops."""
    T = primary_loops(cells, settings)
    out = {}
    for split in dict.fromkeys(cells["split"]):
        sc = cells[cells["split"] == split]
        sel = at_loops(sc, T)
        entry = {"loops": T, **_acc_entry(int(sel["n"].sum()), int(sel["correct"].sum()))}
        if T is not None:
            g = sc.groupby("loops", sort=True)[["n", "correct"]].sum()
            acc = g["correct"] / g["n"]
            entry["by_loops"] = [{"loops": int(t), "accuracy": _num(a)} for t, a in acc.items()]
            best = acc.idxmax()
            entry["best_loops"], entry["best_accuracy"] = int(best), _num(acc[best])
        out[split] = entry
    return out


def depth_curve(cells: pd.DataFrame, settings: MetricSettings) -> dict:
    """Per split: accuracy by depth at the primary loops."""
    T = primary_loops(cells, settings)
    sel = at_loops(cells, T)
    out = {}
    for split in dict.fromkeys(cells["split"]):
        sc = sel[sel["split"] == split].sort_values("depth")
        out[split] = [{"depth": int(r.depth), "n": int(r.n), "correct": int(r.correct),
                       "accuracy": _num(r.accuracy), "ci_low": _num(r.ci_low), "ci_high": _num(r.ci_high)}
                      for r in sc.itertuples()]
    return out


def _horizon_index(acc: np.ndarray, tau: float) -> np.ndarray:
    """Index of the last depth before the first one below tau (-1: the first depth fails)."""
    ok = acc >= tau - EPS
    return np.where(ok.all(axis=-1), acc.shape[-1], np.argmin(ok, axis=-1)) - 1


def depth_extrapolation(cells: pd.DataFrame, settings: MetricSettings) -> dict:
    """Mean extrapolation accuracy, depth horizon at tau and ID-minus-extrapolation gap."""
    T = primary_loops(cells, settings)
    id_s, ext_s = settings.id_split, settings.depth_split
    base = {"tau": settings.tau, "loops": T, "id_split": id_s, "extrapolation_split": ext_s,
            "bootstrap": {"resamples": settings.bootstrap, "seed": settings.bootstrap_seed,
                          "method": "stratified by (split, depth) cell"}}
    splits = set(cells["split"])
    if ext_s not in splits:
        return {"available": False, "reason": f"split '{ext_s}' was not scored", **base}
    summary = _extrapolation_summary(at_loops(cells, T), settings, bootstrap=settings.bootstrap)
    out = {"available": True, **base, **summary}
    if T is not None and len(loops_values(cells)) > 1:
        out["by_loops"] = []
        for t in loops_values(cells):
            s = _extrapolation_summary(at_loops(cells, t), settings, bootstrap=0)
            out["by_loops"].append({"loops": t, **{k: s[k]["value"] for k in
                                    ("mean_extrapolation_accuracy", "depth_horizon", "id_accuracy", "gap")}})
    return out


def _extrapolation_summary(sel: pd.DataFrame, settings: MetricSettings, bootstrap: int) -> dict:
    id_s, ext_s = settings.id_split, settings.depth_split
    sel = sel[sel["split"].isin([id_s, ext_s])]
    n = sel["n"].to_numpy(np.int64)
    c = sel["correct"].to_numpy(np.int64)
    is_ext = (sel["split"] == ext_s).to_numpy()
    is_id = ~is_ext
    depth = sel["depth"].to_numpy(np.int64)
    curve_depths, curve_code = np.unique(depth, return_inverse=True)
    ext_depths, ext_code = np.unique(depth[is_ext], return_inverse=True)
    rng = np.random.default_rng(settings.bootstrap_seed)
    draws = [c[None, :].astype(np.float64)]  # row 0: the observed counts
    if bootstrap:
        with np.errstate(invalid="ignore", divide="ignore"):
            p = np.where(n > 0, c / np.maximum(n, 1), 0.0)
        draws.append(rng.binomial(n[None, :], p[None, :], size=(bootstrap, len(n))).astype(np.float64))
    C = np.concatenate(draws)  # (1 + B, cells)

    M_curve = np.zeros((len(n), len(curve_depths)))
    M_curve[np.arange(len(n)), curve_code] = 1.0
    M_ext = np.zeros((len(n), len(ext_depths)))
    M_ext[np.flatnonzero(is_ext), ext_code] = 1.0
    with np.errstate(invalid="ignore", divide="ignore"):
        curve_acc = (C @ M_curve) / (n @ M_curve)
        ext_acc = (C @ M_ext) / (n @ M_ext)
        mean_ext = ext_acc.mean(axis=1)
        id_n = n[is_id].sum()
        id_acc = C[:, is_id].sum(axis=1) / id_n if id_n else np.full(len(C), np.nan)
        gap = id_acc - mean_ext
    h_idx = _horizon_index(curve_acc, settings.tau)
    horizon = _horizon_out(h_idx, curve_depths)
    curve_n = (n @ M_curve).astype(np.int64)
    curve_c = (c @ M_curve).astype(np.int64)
    lo, hi = wilson(curve_c, curve_n)
    ext_set = set(ext_depths.tolist())
    (e_lo, e_hi), (i_lo, i_hi) = (wilson(np.array([c[m].sum()]), np.array([n[m].sum()])) for m in (is_ext, is_id))
    mean_interval = _never_degenerate(_interval(mean_ext[0], mean_ext[1:]), e_lo[0], e_hi[0])
    id_interval = _never_degenerate(_interval(id_acc[0] if id_n else None, id_acc[1:]), i_lo[0], i_hi[0])
    curve = [{"depth": int(d), "n": int(nn), "correct": int(cc), "accuracy": _num(cc / nn),
              "ci_low": _num(a), "ci_high": _num(b), "extrapolated": int(d) in ext_set}
             for d, nn, cc, a, b in zip(curve_depths, curve_n, curve_c, lo, hi)]
    return {
        "id_depths": sorted(set(depth[is_id].tolist())),
        "extrapolated_depths": ext_depths.tolist(),
        "curve": curve,
        "mean_extrapolation_accuracy": mean_interval,
        "depth_horizon": horizon,
        "id_accuracy": id_interval,
        "gap": _never_degenerate(_interval(gap[0] if id_n else None, gap[1:]), i_lo[0] - e_hi[0], i_hi[0] - e_lo[0]),
    }


def _horizon_out(h_idx: np.ndarray, depths: np.ndarray) -> dict:
    def depth_of(i) -> int | None:
        return None if i < 0 else int(depths[int(i)])

    out = {"value": depth_of(h_idx[0]), "ci_low": None, "ci_high": None}
    if len(h_idx) > 1:
        lo, hi = np.quantile(h_idx[1:], [0.025, 0.975], method="inverted_cdf")
        out["ci_low"], out["ci_high"] = depth_of(lo), depth_of(hi)
    return out


def training_regime(settings: MetricSettings) -> str:
    """One line on how to read a decline past the best T, given how T was set in training."""
    T = settings.trained_loops
    if settings.loop_sampling == "fixed":
        return (f"trained at a fixed T={T}: accuracy falling past T={T} is a train/test mismatch "
                "(the block never ran that long in training), not overthinking")
    if settings.loop_sampling == "sampled":
        return (f"trained with a sampled T (stated trained T={T}): a decline past the T range seen in training "
                "is still partly a mismatch; within it, a decline is overthinking")
    return "training T unknown: a decline past the best T may be a train/test mismatch, not overthinking"


def overthinking(cells: pd.DataFrame, settings: MetricSettings) -> dict:
    """Per (split, depth) over the loops sweep: best_loops, peak, final, drop, onset, loops-needed."""
    base = {"delta": settings.delta, "tau": settings.tau, "trained_loops": settings.trained_loops,
            "loop_sampling": settings.loop_sampling, "regime": training_regime(settings)}
    values = loops_values(cells)
    if len(values) < 2:
        return {"available": False, "reason": "needs predictions at two or more loop counts", **base}
    out = {"available": True, "loops": values, **base, "per_split": {}}
    for split in dict.fromkeys(cells["split"]):
        sc = cells[cells["split"] == split]
        grid = sc.pivot_table(index="depth", columns="loops", values="accuracy", aggfunc="first")
        grid = grid.reindex(columns=values).sort_index()
        A = grid.to_numpy(np.float64)  # (depths, loops), NaN where a cell is missing
        depths = []
        for d, row in zip(grid.index, A):
            have = ~np.isnan(row)
            if not have.any():
                continue
            ts = np.array(values)[have]
            acc = row[have]
            i_star = int(np.argmax(acc))
            peak, final = acc[i_star], acc[-1]
            later = np.flatnonzero(acc[i_star + 1:] < peak - settings.delta - EPS)
            reach = np.flatnonzero(acc >= settings.tau - EPS)
            depths.append({
                "depth": int(d), "best_loops": int(ts[i_star]), "peak": _num(peak), "final": _num(final),
                "final_loops": int(ts[-1]), "drop": _num(peak - final),
                "onset": int(ts[i_star + 1 + later[0]]) if len(later) else None,
                "loops_needed": int(ts[reach[0]]) if len(reach) else None,
                "accuracy_by_loops": [_num(a) for a in row],
            })
        drops = np.array([e["drop"] for e in depths], dtype=np.float64)
        out["per_split"][split] = {
            "depths": depths,
            "mean_drop": _num(drops.mean()) if len(drops) else None,
            "max_drop": _num(drops.max()) if len(drops) else None,
            "depths_with_onset": [e["depth"] for e in depths if e["onset"] is not None],
        }
    return out


def depth_reach(cells: pd.DataFrame, settings: MetricSettings) -> dict:
    """LTG's depth learned (horizon at the trained T) vs depth reached (horizon at each depth's best T)."""
    values = loops_values(cells)
    base = {"tau": settings.tau, "id_split": settings.id_split, "extrapolation_split": settings.depth_split}
    if len(values) < 2:
        return {"available": False, "reason": "needs predictions at two or more loop counts", **base}
    T = settings.trained_loops if settings.trained_loops is not None else primary_loops(cells, settings)
    if T not in values:
        return {"available": False, "reason": f"trained loops {T} is not among the swept loops {values}", **base}
    sel = cells[cells["split"].isin([settings.id_split, settings.depth_split])]
    if sel.empty:
        return {"available": False, "reason": "neither the ID nor the extrapolation split was scored", **base}
    g = sel.groupby(["depth", "loops"], sort=True)[["n", "correct"]].sum().reset_index()
    n = g.pivot(index="depth", columns="loops", values="n").reindex(columns=values)
    c = g.pivot(index="depth", columns="loops", values="correct").reindex(columns=values)
    N, C = n.to_numpy(np.float64), c.to_numpy(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        A = C / N  # (depths, loops), NaN where a cell is missing
    depths = n.index.to_numpy(np.int64)
    best = np.nanargmax(np.where(np.isnan(A), -1.0, A), axis=1)
    rows = np.arange(len(depths))
    j = values.index(T)
    acc_t, acc_b = A[:, j], A[rows, best]
    learned = _horizon_index(np.nan_to_num(acc_t, nan=-1.0)[None, :], settings.tau)[0]
    reached = _horizon_index(np.nan_to_num(acc_b, nan=-1.0)[None, :], settings.tau)[0]
    lo_t, hi_t = wilson(np.nan_to_num(C[:, j]).astype(np.int64), np.nan_to_num(N[:, j]).astype(np.int64))
    lo_b, hi_b = wilson(np.nan_to_num(C[rows, best]).astype(np.int64), np.nan_to_num(N[rows, best]).astype(np.int64))
    ok_t, ok_b = acc_t >= settings.tau - EPS, acc_b >= settings.tau - EPS
    return {"available": True, **base, "trained_loops": int(T), "loop_sampling": settings.loop_sampling,
            "loops_source": "trained" if settings.trained_loops is not None else "largest swept (training T unknown)",
            "depth_learned": None if learned < 0 else int(depths[learned]),
            "depth_reached": None if reached < 0 else int(depths[reached]),
            "deepest_at_trained_loops": int(depths[ok_t].max()) if ok_t.any() else None,
            "deepest_at_best_loops": int(depths[ok_b].max()) if ok_b.any() else None,
            "per_depth": [{"depth": int(d), "n": int(np.nan_to_num(N[i, j])),
                           "accuracy_at_trained": _num(acc_t[i]), "ci_low_at_trained": _num(lo_t[i]),
                           "ci_high_at_trained": _num(hi_t[i]), "best_loops": int(values[best[i]]),
                           "accuracy_at_best": _num(acc_b[i]), "ci_low_at_best": _num(lo_b[i]),
                           "ci_high_at_best": _num(hi_b[i])} for i, d in enumerate(depths)]}


# -- metrics that need per-row outcomes ---------------------------------------------------------

def _example_groups(scored: Scored) -> tuple[np.ndarray, np.ndarray, int]:
    """Dense (split, depth) group code per scored example, the depth values and the depth count."""
    depth_values = scored.depth_codes[0]
    return scored.example_group, depth_values, len(depth_values)


def _summarise_examples(scored: Scored, covered: np.ndarray, correct: np.ndarray,
                        loops: np.ndarray | None = None) -> dict:
    """Per split (and per depth): n, accuracy (Wilson CI) and mean loops over covered examples."""
    group, depth_values, n_d = _example_groups(scored)
    size = len(scored.splits) * n_d
    g = group[covered]
    n = np.bincount(g, minlength=size)
    c = np.bincount(g, weights=correct[covered], minlength=size)
    lsum = np.bincount(g, weights=loops[covered], minlength=size) if loops is not None else None
    out = {}
    for k, split in enumerate(scored.splits):
        sl = slice(k * n_d, (k + 1) * n_d)
        nn, cc = int(n[sl].sum()), int(round(c[sl].sum()))
        entry = _acc_entry(nn, cc)
        if lsum is not None:
            entry["mean_loops"] = _num(lsum[sl].sum() / nn) if nn else None
        rows = []
        for j in np.flatnonzero(n[sl]):
            r = {"depth": int(depth_values[j]), "n": int(n[sl][j]), "accuracy": _num(c[sl][j] / n[sl][j])}
            if lsum is not None:
                r["mean_loops"] = _num(lsum[sl][j] / n[sl][j])
            rows.append(r)
        entry["by_depth"] = rows
        out[split] = entry
    return out


def t_first(scored: Scored) -> dict:
    """LTG's t*: per (split, depth), mean first swept T whose top-1 is correct, and the share never correct."""
    if scored.row_loops is None or len(scored.loops_values) < 2:
        return {"available": False, "reason": "needs predictions at two or more loop counts"}
    ex, loops = scored.row_example, scored.row_loops.astype(np.int64)
    big = np.iinfo(np.int64).max
    first = np.full(scored.n_examples, big, dtype=np.int64)
    np.minimum.at(first, ex, np.where(scored.correct, loops, big))
    covered = np.bincount(ex, minlength=scored.n_examples) > 0
    ever = covered & (first != big)
    group, depth_values, n_d = _example_groups(scored)
    size = len(scored.splits) * n_d
    n = np.bincount(group[covered], minlength=size)
    n_ever = np.bincount(group[ever], minlength=size)
    s = np.bincount(group[ever], weights=first[ever].astype(np.float64), minlength=size)
    out = {"available": True, "loops": scored.loops_values,
           "definition": "mean over examples correct at some swept T of the first such T; never_correct = "
                         "share of examples wrong at every swept T", "per_split": {}}
    for k, split in enumerate(scored.splits):
        sl = slice(k * n_d, (k + 1) * n_d)
        out["per_split"][split] = [
            {"depth": int(depth_values[jj]), "n": int(n[sl][jj]),
             "t_first": _num(s[sl][jj] / n_ever[sl][jj]) if n_ever[sl][jj] else None,
             "never_correct": _num(1 - n_ever[sl][jj] / n[sl][jj])}
            for jj in np.flatnonzero(n[sl])]
    return out


def oracle_best_loop(scored: Scored) -> dict:
    """Upper bound for adaptive halting: an example is correct if correct at any loop count."""
    if scored.row_loops is None or len(scored.loops_values) < 2:
        return {"available": False, "reason": "needs predictions at two or more loop counts"}
    n_ex = scored.n_examples
    covered = np.bincount(scored.row_example, minlength=n_ex) > 0
    any_correct = np.bincount(scored.row_example, weights=scored.correct, minlength=n_ex) > 0
    return {"available": True, "per_split": _summarise_examples(scored, covered, any_correct)}


def halting(scored: Scored, settings: MetricSettings) -> dict:
    """Accuracy and mean loops when each example stops at the first T with low KL and entropy."""
    base = {"epsilon": settings.halt_kl, "entropy_threshold": settings.halt_entropy,
            "rule": "stop at the first loops T (ascending) with kl_prev < epsilon and entropy < "
                    "entropy_threshold, else at the largest T"}
    if scored.row_loops is None or len(scored.loops_values) < 2:
        return {"available": False, "reason": "needs predictions at two or more loop counts", **base}
    missing = [c for c in ("kl_prev", "entropy") if c not in scored.extras]
    if missing:
        return {"available": False, "reason": f"needs column(s) {', '.join(missing)}", **base}
    ex, loops = scored.row_example, scored.row_loops.astype(np.int64)
    n_ex = scored.n_examples
    with np.errstate(invalid="ignore"):
        stop_here = (scored.extras["kl_prev"] < settings.halt_kl) & (scored.extras["entropy"] < settings.halt_entropy)
    big = np.iinfo(np.int64).max
    first_stop = np.full(n_ex, big, dtype=np.int64)
    np.minimum.at(first_stop, ex, np.where(stop_here, loops, big))
    last = np.full(n_ex, -1, dtype=np.int64)
    np.maximum.at(last, ex, loops)
    covered = last >= 0
    stop = np.where(first_stop == big, last, first_stop)
    at_stop = loops == stop[ex]
    halted_correct = np.zeros(n_ex, dtype=bool)
    halted_correct[ex[at_stop]] = scored.correct[at_stop]
    halted_early = covered & (first_stop != big)
    out = {"available": True, **base,
           "per_split": _summarise_examples(scored, covered, halted_correct, stop.astype(np.float64))}
    for k, split in enumerate(scored.splits):
        sel = covered & (scored.example_split == k)
        out["per_split"][split]["halted_early"] = _num(halted_early[sel].mean()) if sel.any() else None
    return out


def margins(scored: Scored) -> dict:
    """Mean logit margin (target minus best other) per (split, depth, loops)."""
    if "margin" not in scored.extras:
        return {"available": False, "reason": "needs column margin"}
    m = scored.extras["margin"]
    have = ~np.isnan(m)
    _, depth_values, n_d = _example_groups(scored)
    loops_out = scored.loop_codes[0].tolist() if scored.row_loops is not None else [None]
    n_l = len(loops_out)
    key = scored.row_cell_key if have.all() else scored.row_cell_key[have]
    size = len(scored.splits) * n_d * n_l
    n = np.bincount(key, minlength=size).reshape(len(scored.splits), n_d, n_l)
    s = np.bincount(key, weights=m if have.all() else m[have], minlength=size).reshape(len(scored.splits), n_d, n_l)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = s / n
    out = {"available": True, "loops": loops_out, "per_split": {}}
    for k, split in enumerate(scored.splits):
        rows = []
        for j in np.flatnonzero(n[k].sum(axis=1)):
            curve = mean[k, j]
            rows.append({"depth": int(depth_values[j]), "n": [int(x) for x in n[k, j]],
                         "mean_margin": [_num(x) for x in curve],
                         "peak_loops": (loops_out[int(np.nanargmax(curve))]
                                        if not np.isnan(curve).all() else None)})
        out["per_split"][split] = rows
    return out


def compute_metrics(cells: pd.DataFrame, scored: Scored | None, settings: MetricSettings) -> dict:
    """All metrics: those derived from cells, and (given ``scored``) those needing per-row data."""
    out = {
        "primary_loops": primary_loops(cells, settings),
        "per_split": per_split(cells, settings),
        "depth_curve": depth_curve(cells, settings),
        "depth_extrapolation": depth_extrapolation(cells, settings),
        "overthinking": overthinking(cells, settings),
        "depth_reach": depth_reach(cells, settings),
    }
    from benchgen.evaluators.saturation import saturation

    out["saturation"] = saturation(cells, scored, delta=settings.delta, bootstrap=settings.bootstrap,
                                   seed=settings.bootstrap_seed)
    if scored is not None:
        out["margins"] = margins(scored)
        out["halting"] = halting(scored, settings)
        out["oracle_best_loop"] = oracle_best_loop(scored)
        out["t_first"] = t_first(scored)
        from benchgen.evaluators.compute_accuracy import exit_rule_metrics

        out["exit_rules"] = exit_rule_metrics(scored, settings.exit_rules, settings.trained_loops)
    return out
