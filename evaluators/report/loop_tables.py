"""Report tables for how a looped model uses its depth: exit rules, saturation fit, per-loop probes.

Each function reads only ``results.metrics`` and returns (title, headers, rows) tables in the
shape :func:`benchgen.evaluators.report.render.tables` uses.
"""

from __future__ import annotations

from benchgen.evaluators.results import Results

Table = tuple[str, list[str], list[list]]


def _f(x, digits: int = 3) -> str:
    """A number for a table cell (dash when missing)."""
    if x is None:
        return "–"
    return f"{x:.{digits}f}" if isinstance(x, float) else str(x)


def _ci(e: dict) -> str:
    """A Wilson / bootstrap interval for a table cell."""
    lo, hi = e.get("ci_low"), e.get("ci_high")
    return "–" if lo is None or hi is None else f"[{lo:.3f}, {hi:.3f}]"


def _params(p: dict) -> str:
    """Rule parameters as k=v text."""
    return ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in p.items())


def exit_rule_tables(results: Results) -> list[Table]:
    """The chosen setting of every rule per split (with the oracle), then each rule's threshold sweep."""
    er = results.metrics.get("exit_rules", {})
    if not er.get("available"):
        return []
    rows, sweep, missing = [], [], []
    for split, o in er["oracle"]["per_split"].items():
        rows.append(["oracle (upper bound)", "", split, o["n"], _f(o["accuracy"]), _ci(o), _f(o["mean_loops"], 2)])
    for rule in er["rules"]:
        if not rule["available"]:
            missing.append([rule["rule"], rule["reason"]])
            continue
        for p in rule["points"]:
            for split, e in p["per_split"].items():
                line = [rule["rule"], _params(p["params"]), split, e["n"], _f(e["accuracy"]), _ci(e),
                        _f(e["mean_loops"], 2)]
                sweep.append(line)
                if p["chosen"]:
                    rows.append(line)
    head = ["rule", "parameters", "split", "n", "accuracy", "95% CI", "mean loops"]
    out = [("Exit rules at their chosen thresholds (each example stops at the first T the rule allows)", head, rows),
           ("Exit rules: threshold sweep", head, sweep)]
    if missing:
        out.append(("Exit rules not available", ["rule", "why"], missing))
    return out


def saturation_tables(results: Results) -> list[Table]:
    """a, tau and fit error per split and depth, and the drop after the peak with its interval."""
    sat = results.metrics.get("saturation", {})
    if not sat.get("available"):
        return []
    rows = []
    for split, depths in sat["per_split"].items():
        for d in depths:
            fit = d.get("fit")
            drop = d["drop"]
            rows.append([split, d["depth"], d["peak_loops"], _f(d["peak"]),
                         _f(fit["a"]) if fit else "no fit", _f(fit["tau"], 2) if fit else d.get("reason", ""),
                         _f(fit["rmse"]) if fit else "–", _f(drop["value"]), _ci(drop)])
    return [(f"Saturation with loops: {sat['model']}", ["split", "depth", "peak T", "peak", "a (plateau)", "tau",
                                                         "fit RMSE", "drop after peak", "95% CI"], rows)]


def probe_tables(results: Results) -> list[Table]:
    """Per split and depth, the loop at which each hop's entity is most often the top-1 readout."""
    pr = results.metrics.get("probes", {})
    if not pr.get("available"):  # said for k-hop data (never a silent empty table); other tasks have no chain
        applies = pr.get("reason") and not pr["reason"].startswith("needs a k-hop")
        return [("Per-loop probes (logit lens)", ["status"], [[pr["reason"]]])] if applies else []
    loops = pr["loops"]
    rows = []
    for split, depths in pr["per_split"].items():
        for d in depths:
            for j, hop in enumerate(d["hops"]):
                col = [r[j] if r[j] is not None else -1.0 for r in d["share"]]
                best = max(range(len(col)), key=col.__getitem__)
                rows.append([split, d["depth"], hop, loops[best], _f(col[best])])
    return [(f"Per-loop probes: {pr['definition']} (peak loop and share per hop)",
             ["split", "depth", "hop", "loop with the highest share", "share"], rows)]


def wavefront_tables(results: Results) -> list[Table]:
    """Per split, depth and input position r_j: the first loop at which hop j's entity is the readout there
    in at least half the rows, and the share at loop t = j (one hop per loop predicts j)."""
    wf = results.metrics.get("probes", {}).get("wavefront", {})
    if not wf.get("per_split"):
        return []
    loops = results.metrics["probes"]["loops"]
    rows = []
    for split, depths in wf["per_split"].items():
        for d in depths:
            for c, (name, first) in enumerate(zip(d["positions"], d["first_loop_over_half"])):
                at_j = d["share"][loops.index(c + 1)][c] if c + 1 in loops else None
                rows.append([split, d["depth"], name, "never" if first is None else first, _f(at_j)])
    return [(f"Per-position probes (wavefront): {wf['definition']}",
             ["split", "depth", "position", "first loop with share >= 0.5", "share at loop t = j"], rows)]


def loop_tables(results: Results) -> list[Table]:
    """Every table of this module, in report order."""
    return exit_rule_tables(results) + saturation_tables(results) + probe_tables(results) + wavefront_tables(results)
