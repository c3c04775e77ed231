"""Report: results.json -> report.md (tables), PNG plots, optional self-contained report.html.

Everything here reads only a :class:`Results` (cells + metrics), so ``benchgen report
RESULTS.json`` re-renders without the dataset or the predictions. matplotlib is imported
lazily with the Agg backend.
"""

from __future__ import annotations

import base64
import html as html_lib
from pathlib import Path

import numpy as np

from benchgen.evaluators.report.plots import floor_of, validity_cells
from benchgen.evaluators.results import Results

PLOTS = "plots"
Table = tuple[str, list[str], list[list]]


def _fmt(x, digits: int = 3) -> str:
    if x is None:
        return "–"
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, float):
        return f"{x:.{digits}f}"
    return str(x)


def _ci(entry: dict) -> str:
    lo, hi = entry.get("ci_low"), entry.get("ci_high")
    return "–" if lo is None or hi is None else f"[{_fmt(lo)}, {_fmt(hi)}]"


def _floor(floors: dict, split: str, row: dict, partial: bool) -> list[str]:
    """Chance, the best shortcut (name and accuracy), with ``partial`` the best partial-depth line, and
    whether the row's lower 95% bound clears the best of them, for one (split, depth) cell, or dashes."""
    f = floors.get((split, int(row["depth"])))
    if f is None:
        return ["–"] * (4 if partial else 3)
    out = [_fmt(f["chance"]), f"{f['baseline']} {_fmt(f['best'])}"]
    if partial:
        out.append(f"{f['partial_baseline']} {_fmt(f['partial'])}" if "partial" in f else "–")
    low = row.get("ci_low")
    return out + ["–" if low is None else _fmt(bool(low > floor_of(f)))]


def tables(results: Results) -> list[Table]:
    """The report's tables as (title, headers, rows), shared by the markdown and HTML renderers."""
    m = results.metrics
    out: list[Table] = []
    cov = results.coverage.get("splits", {})
    out.append(("Coverage", ["split", "examples", "predicted", "missing", "coverage"],
                [[s, c.get("examples"), c.get("predicted"), c.get("missing"), _fmt(c.get("coverage"))]
                 for s, c in cov.items()]))
    ps = m.get("per_split", {})
    with_loops = any("best_loops" in e for e in ps.values())
    head = ["split", "loops", "n", "accuracy", "95% CI"] + (["best loops", "best accuracy"] if with_loops else [])
    out.append(("Accuracy per split", head, [
        [s, _fmt(e.get("loops")), e["n"], _fmt(e["accuracy"]), _ci(e)]
        + ([_fmt(e.get("best_loops")), _fmt(e.get("best_accuracy"))] if with_loops else [])
        for s, e in ps.items()]))
    de = m.get("depth_extrapolation", {})
    if de.get("available"):
        rows = [[name.replace("_", " "), _fmt(de[key]["value"]), _ci(de[key])] for name, key in (
            ("mean_extrapolation_accuracy", "mean_extrapolation_accuracy"),
            (f"depth horizon (tau={de['tau']}): the deepest depth up to which every depth reaches tau",
             "depth_horizon"),
            ("id_accuracy", "id_accuracy"), ("gap (ID - extrapolation)", "gap"))]
        out.append((f"Depth extrapolation (bootstrap {de['bootstrap']['resamples']}, "
                    f"seed {de['bootstrap']['seed']})", ["metric", "value", "95% CI"], rows))
        if de.get("by_loops"):
            out.append(("Depth extrapolation by loops", ["loops", "mean extrapolation acc", "horizon",
                                                          "ID acc", "gap"],
                        [[b["loops"], _fmt(b["mean_extrapolation_accuracy"]), _fmt(b["depth_horizon"]),
                          _fmt(b["id_accuracy"]), _fmt(b["gap"])] for b in de["by_loops"]]))
    floors = validity_cells(results.dataset)  # chance, the best shortcut (and partial line) per (split, depth)
    partial = any("partial" in f for f in floors.values())
    out.append(("Accuracy by depth (chance = 1 / distinct answers in the cell; best shortcut = the best "
                "non-reasoning baseline" + ("; best partial-depth line = the best answer of the task's own "
                                            "algorithm stopped j hops short (partial reasoning)" if partial else "")
                + ", from the dataset's validity record; above floor = the 95% lower bound clears the best of "
                "them)",
                ["split", "depth", "n", "accuracy", "95% CI", "chance", "best shortcut",
                 *(["best partial-depth line"] if partial else []), "above floor"],
                [[s, r["depth"], r["n"], _fmt(r["accuracy"]), _ci(r), *_floor(floors, s, r, partial)]
                 for s, rows in m.get("depth_curve", {}).items() for r in rows]))
    ot = m.get("overthinking", {})
    if ot.get("available"):
        out.append((f"Overthinking (delta={ot['delta']}, tau={ot['tau']})",
                    ["split", "depth", "best loops", "peak", "final", "drop", "onset", "loops needed"],
                    [[s, d["depth"], d.get("best_loops", d.get("t_star")), _fmt(d["peak"]), _fmt(d["final"]), _fmt(d["drop"]),
                      _fmt(d["onset"]), _fmt(d["loops_needed"])]
                     for s, e in ot["per_split"].items() for d in e["depths"]]))
        if ot.get("regime"):
            out.append(("Overthinking: how to read it", ["training regime"], [[ot["regime"]]]))
    dr = m.get("depth_reach", {})
    if dr.get("available"):
        source = dr.get("loops_source", "trained")
        none = "none (no depth reaches tau)"
        out.append((f"Depth learned vs reached (tau={dr['tau']}; learned at T={dr['trained_loops']}, {source}: "
                    f"{none if dr['depth_learned'] is None else dr['depth_learned']}; reached at each depth's best T: "
                    f"{none if dr['depth_reached'] is None else dr['depth_reached']})",
                    ["depth", "n", f"acc at T={dr['trained_loops']}", "95% CI", "best T", "acc at best T",
                     "95% CI (best)"],
                    [[r["depth"], r["n"], _fmt(r["accuracy_at_trained"]),
                      _ci({"ci_low": r["ci_low_at_trained"], "ci_high": r["ci_high_at_trained"]}),
                      r["best_loops"], _fmt(r["accuracy_at_best"]),
                      _ci({"ci_low": r["ci_low_at_best"], "ci_high": r["ci_high_at_best"]})]
                     for r in dr["per_depth"]]))
    tf = m.get("t_first", {})
    if tf.get("available"):
        out.append(("First correct iteration (t_first, LTG's t*)", ["split", "depth", "n", "t_first", "never correct"],
                    [[s, r["depth"], r["n"], _fmt(r["t_first"], 2), _fmt(r["never_correct"])]
                     for s, rows in tf["per_split"].items() for r in rows]))
    ha = m.get("halting", {})
    if ha.get("available"):
        out.append((f"Halting (KL < {ha['epsilon']}, entropy < {ha['entropy_threshold']})",
                    ["split", "n", "accuracy", "95% CI", "mean loops", "halted early", "accuracy at primary loops"],
                    [[s, e["n"], _fmt(e["accuracy"]), _ci(e), _fmt(e["mean_loops"], 2), _fmt(e["halted_early"]),
                      _fmt(ps.get(s, {}).get("accuracy"))] for s, e in ha["per_split"].items()]))
    ob = m.get("oracle_best_loop", {})
    if ob.get("available"):
        out.append(("Oracle best loop (upper bound for adaptive halting)",
                    ["split", "n", "oracle accuracy", "95% CI", "accuracy at primary loops"],
                    [[s, e["n"], _fmt(e["accuracy"]), _ci(e), _fmt(ps.get(s, {}).get("accuracy"))]
                     for s, e in ob["per_split"].items()]))
    mg = m.get("margins", {})
    if mg.get("available"):
        loops = mg["loops"]
        out.append(("Logit margin (target - best other) by iteration",
                    ["split", "depth", *[f"T={t}" if t is not None else "margin" for t in loops], "peak T"],
                    [[s, r["depth"], *[_fmt(v) for v in r["mean_margin"]], _fmt(r["peak_loops"])]
                     for s, rows in mg["per_split"].items() for r in rows]))
    from benchgen.evaluators.report.loop_tables import loop_tables

    return out + loop_tables(results)


def _header_lines(results: Results) -> list[tuple[str, str]]:
    d, mo = results.dataset, results.model
    meta = ", ".join(f"{k}={v}" for k, v in mo.items() if k != "name")
    norm = results.normalization
    return [("Model", f"{results.model_name}" + (f" ({meta})" if meta else "")),
            ("Dataset", f"{d.get('task')} at {d.get('path')} (fingerprint {str(d.get('fingerprint'))[:16]})"),
            ("Normalisation", ", ".join(f"{k}={v}" for k, v in norm.items())),
            ("Primary loops", _fmt(results.metrics.get("primary_loops"))),
            ("benchgen", f"{results.benchgen_version}, results schema {results.schema_version}")]


def summary_lines(results: Results) -> list[str]:
    """A few lines for the terminal: per-split accuracy and the headline derived metrics."""
    m = results.metrics
    lines = [f"model {results.model_name} on {results.dataset.get('task')} "
             f"(fingerprint {str(results.fingerprint)[:16]}), loops={_fmt(m.get('primary_loops'))}"]
    for s, e in m.get("per_split", {}).items():
        cov = results.coverage.get("splits", {}).get(s, {}).get("coverage")
        lines.append(f"  {s:<16} accuracy {_fmt(e['accuracy'])} {_ci(e)}  n={e['n']}"
                     + (f"  coverage {_fmt(cov)}" if cov is not None and cov < 1 else ""))
    de = m.get("depth_extrapolation", {})
    if de.get("available"):
        lines.append(f"  depth extrapolation: mean {_fmt(de['mean_extrapolation_accuracy']['value'])}, "
                     f"horizon(tau={de['tau']}) {_fmt(de['depth_horizon']['value'])}, "
                     f"gap {_fmt(de['gap']['value'])}")
    ot = m.get("overthinking", {})
    if ot.get("available"):
        worst = {s: e["max_drop"] for s, e in ot["per_split"].items()}
        lines.append("  overthinking max drop: " + ", ".join(f"{s} {_fmt(v)}" for s, v in worst.items()))
    return lines


def render_markdown(results: Results, plot_files: list[str] | None = None) -> str:
    lines = [f"# Evaluation report: {results.model_name}", ""]
    lines += [f"- **{k}**: {v}" for k, v in _header_lines(results)] + [""]
    for title, head, rows in tables(results):
        lines += [f"## {title}", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        lines += ["| " + " | ".join(_fmt(c) for c in r) + " |" for r in rows] + [""]
    if plot_files:
        lines += ["## Plots", ""] + [f"![{Path(p).stem}]({p})" for p in plot_files] + [""]
    return "\n".join(lines)


PLOT_TITLES = {"accuracy_vs_depth": "Accuracy vs depth", "depth_loops_heatmap": "Accuracy by depth × loops",
               "margin_vs_iteration": "Logit margin vs iteration", "compute_accuracy": "Compute vs accuracy (exit rules)",
               "probes_heatmap": "Per-loop probes (logit lens)",
               "wavefront_heatmap": "Per-position probes (wavefront)"}


def _code(escaped: str) -> str:
    """Markdown `code` spans as HTML <code> (input already HTML-escaped): no literal backticks."""
    import re

    return re.sub(r"`([^`]*)`", r"<code>\1</code>", escaped)


def _is_text(value) -> bool:
    """A table cell that is words (left-aligned), not a number, interval or dash."""
    import re

    if value is None or isinstance(value, (int, float, np.integer, np.floating)):
        return False
    return not re.fullmatch(r"[-+–]?[\d.,\s\[\]–-]*(e[-+]?\d+)?%?|yes|no|nan", str(value).strip())


def render_html(results: Results, plot_paths: list[Path] | None = None) -> str:
    """A self-contained HTML report (tables + plots embedded as base64 PNG)."""
    esc = html_lib.escape
    parts = ["<!doctype html><html lang='en'><head><meta charset='utf-8'>",
             f"<title>{esc(results.model_name)} — benchgen report</title>",
             "<style>body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;color:#222}"
             "table{border-collapse:collapse;margin-bottom:1.5em;font-size:14px}td,th{border:1px solid #ccc;"
             "padding:3px 8px;text-align:right;font-variant-numeric:tabular-nums}th{background:#f3f3f3}"
             "td.text,th.text{text-align:left}img{width:100%;height:auto}</style>",
             "</head><body>", f"<h1>Evaluation report: {esc(results.model_name)}</h1><ul>"]
    parts += [f"<li><b>{esc(k)}</b>: {_code(esc(v))}</li>" for k, v in _header_lines(results)] + ["</ul>"]
    for title, head, rows in tables(results):
        text = [bool(rows) and all(_is_text(r[i]) for r in rows if i < len(r)) for i in range(len(head))]
        cls = [" class='text'" if t else "" for t in text]
        parts.append(f"<h2>{_code(esc(title))}</h2><table><tr>"
                     + "".join(f"<th{c}>{esc(h)}</th>" for h, c in zip(head, cls)) + "</tr>")
        parts += ["<tr>" + "".join(f"<td{c}>{esc(_fmt(v))}</td>" for v, c in zip(r, cls)) + "</tr>" for r in rows]
        parts.append("</table>")
    for p in plot_paths or []:
        data = base64.b64encode(Path(p).read_bytes()).decode()
        name = PLOT_TITLES.get(Path(p).stem, Path(p).stem.replace("_", " "))
        parts.append(f"<h2>{esc(name)}</h2><img alt='{esc(name)}' src='data:image/png;base64,{data}'>")
    parts.append("</body></html>")
    return "\n".join(parts)
