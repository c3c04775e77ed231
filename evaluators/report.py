"""Report: results.json -> report.md (tables), PNG plots, optional self-contained report.html.

Everything here reads only a :class:`Results` (cells + metrics), so ``benchgen report
RESULTS.json`` re-renders without the dataset or the predictions. matplotlib is imported
lazily with the Agg backend.
"""

from __future__ import annotations

import base64
import html as html_lib
import os
import shutil
from pathlib import Path

import numpy as np
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
            (f"depth_horizon (tau={de['tau']})", "depth_horizon"),
            ("id_accuracy", "id_accuracy"), ("gap (ID - extrapolation)", "gap"))]
        out.append((f"Depth extrapolation (bootstrap {de['bootstrap']['resamples']}, "
                    f"seed {de['bootstrap']['seed']})", ["metric", "value", "95% CI"], rows))
        if de.get("by_loops"):
            out.append(("Depth extrapolation by loops", ["loops", "mean extrapolation acc", "horizon",
                                                          "ID acc", "gap"],
                        [[b["loops"], _fmt(b["mean_extrapolation_accuracy"]), _fmt(b["depth_horizon"]),
                          _fmt(b["id_accuracy"]), _fmt(b["gap"])] for b in de["by_loops"]]))
    out.append(("Accuracy by depth", ["split", "depth", "n", "accuracy", "95% CI"],
                [[s, r["depth"], r["n"], _fmt(r["accuracy"]), _ci(r)]
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
        out.append((f"Depth learned vs reached (tau={dr['tau']}; learned at trained T={dr['trained_loops']}: "
                     f"{_fmt(dr['depth_learned'])}; reached at each depth's best T: {_fmt(dr['depth_reached'])})",
                    ["depth", "n", "acc at trained T", "95% CI", "best T", "acc at best T", "95% CI (best)"],
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
    return out


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
               "margin_vs_iteration": "Logit margin vs iteration"}


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


# -- plots ---------------------------------------------------------------------------------

def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def reference_lines(dataset: dict) -> dict[int, dict]:
    """Chance and the best shortcut baseline per depth, from the dataset's validity record
    (``dataset["validity"]``, else manifest.json at ``dataset["path"]`` if its fingerprint matches).

    A depth found in several test splits takes test_depth's, then test_interp's, then test_id's cell.
    """
    import json

    validity = dataset.get("validity")
    if validity is None and dataset.get("path"):
        try:
            manifest = json.loads((Path(dataset["path"]) / "manifest.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        if not isinstance(manifest, dict) or manifest.get("fingerprint") != dataset.get("fingerprint"):
            return {}
        validity = manifest.get("validity")
    splits = validity.get("splits") if isinstance(validity, dict) else None
    if not isinstance(splits, dict):
        return {}
    rank = {"test_depth": 3, "test_interp": 2, "test_id": 1}
    out: dict[int, dict] = {}
    for split in sorted(splits, key=lambda s: rank.get(s, 0)):
        for e in splits[split] if isinstance(splits[split], list) else []:
            try:
                out[int(e["depth"])] = {"chance": float(e["chance"]), "best": float(e["best"]["accuracy"]),
                                        "baseline": str(e["best"]["baseline"])}
            except (KeyError, TypeError, ValueError):
                continue
    return out


def draw_reference_lines(ax, lines: dict[int, dict]) -> None:
    """Chance (grey dotted) and the best shortcut baseline (black dash-dot) per depth."""
    if not lines:
        return
    d = np.array(sorted(lines), dtype=float)
    chance = np.array([lines[int(k)].get("chance", np.nan) for k in d], dtype=float)
    best = np.array([lines[int(k)].get("best", np.nan) for k in d], dtype=float)
    if not np.isnan(chance).all():
        ax.plot(d, chance, color="grey", lw=1.0, ls=":", marker="_", label="chance")
    if not np.isnan(best).all():
        ax.plot(d, best, color="black", lw=1.0, ls="-.", marker="x", ms=4, label="best shortcut baseline")


def plot_accuracy_vs_depth(results: Results, path: Path) -> Path | None:
    curves = results.metrics.get("depth_curve", {})
    if not any(curves.values()):
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for split, rows in curves.items():
        if not rows:
            continue
        d = np.array([r["depth"] for r in rows], dtype=float)
        a = np.array([r["accuracy"] for r in rows], dtype=float)
        lo = np.array([r["ci_low"] for r in rows], dtype=float)
        hi = np.array([r["ci_high"] for r in rows], dtype=float)
        ax.errorbar(d, a, yerr=[np.maximum(a - lo, 0), np.maximum(hi - a, 0)], marker="o", capsize=3, label=split)
    draw_reference_lines(ax, reference_lines(results.dataset))
    de = results.metrics.get("depth_extrapolation", {})
    if de.get("available") and de.get("tau") is not None:
        ax.axhline(de["tau"], color="grey", lw=0.8, ls="--", label=f"tau={de['tau']}")
    T = results.metrics.get("primary_loops")
    ax.set(xlabel="depth", ylabel="accuracy", ylim=(-0.02, 1.02),
           title=f"{results.model_name}: accuracy vs depth" + (f" (loops={T})" if T is not None else ""))
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)  # outside the data
    ax.grid(alpha=0.3)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def plot_depth_loops_heatmap(results: Results, path: Path) -> Path | None:
    cells = results.cells
    if not cells["loops"].notna().any() or cells["loops"].nunique() < 2:
        return None
    plt = _pyplot()
    splits = list(dict.fromkeys(cells["split"]))
    ncol = min(2, len(splits))  # two panels a row: about 1100 px wide, the report's page width
    nrow = -(-len(splits) // ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(5.2 * ncol + 1.2, 3.9 * nrow), squeeze=False,
                             constrained_layout=True)
    im = None
    for ax, split in zip(axes.flat, splits):
        sc = cells[cells["split"] == split]
        grid = sc.pivot_table(index="depth", columns="loops", values="accuracy", aggfunc="first").sort_index()
        values = grid.to_numpy(np.float64)
        im = ax.imshow(values, aspect="auto", origin="lower", vmin=0, vmax=1, cmap="viridis")
        step_x, step_y = max(1, grid.shape[1] // 16), max(1, grid.shape[0] // 16)  # <= 16 ticks a side
        ax.set_xticks(range(0, grid.shape[1], step_x), [str(c) for c in grid.columns][::step_x], fontsize=9)
        ax.set_yticks(range(0, grid.shape[0], step_y), [str(i) for i in grid.index][::step_y], fontsize=9)
        if values.size <= 160:  # small grids: print each accuracy in its cell
            for (i, j), v in np.ndenumerate(values):
                if not np.isnan(v):
                    ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=8,
                            color="black" if v > 0.6 else "white")
        ax.set_xlabel("loops", fontsize=10)
        ax.set_ylabel("depth", fontsize=10)
        ax.set_title(split, fontsize=11)
    for ax in list(axes.flat)[len(splits):]:
        ax.set_visible(False)
    fig.colorbar(im, ax=axes.ravel().tolist(), label="accuracy", shrink=0.9)
    fig.suptitle(f"{results.model_name}: accuracy by depth × loops", fontsize=12)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_margins(results: Results, path: Path) -> Path | None:
    mg = results.metrics.get("margins", {})
    if not mg.get("available") or len(mg["loops"]) < 2:
        return None
    plt = _pyplot()
    splits = [s for s, rows in mg["per_split"].items() if rows]
    fig, axes = plt.subplots(1, len(splits), figsize=(4.5 * len(splits) + 1, 4.2), squeeze=False)
    loops = np.array(mg["loops"], dtype=float)
    for ax, split in zip(axes[0], splits):
        rows = mg["per_split"][split]
        colors = plt.cm.plasma(np.linspace(0, 0.9, len(rows)))
        for r, col in zip(rows, colors):
            ax.plot(loops, np.array(r["mean_margin"], dtype=float), color=col, marker=".", label=f"d={r['depth']}")
        ax.axhline(0, color="grey", lw=0.8)
        ax.set(xlabel="loops (iteration)", ylabel="mean logit margin", title=split)
    by_label = {}  # one legend for every panel, outside the data
    for ax in axes[0]:
        by_label.update({lab: h for h, lab in zip(*ax.get_legend_handles_labels()) if lab not in by_label})
    fig.legend(by_label.values(), by_label.keys(), fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5),
               title="depth")
    fig.suptitle(f"{results.model_name}: margin vs iteration")
    fig.tight_layout()
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def write_plots(results: Results, plot_dir: Path) -> list[Path]:
    plot_dir.mkdir(parents=True, exist_ok=True)
    made = [plot_accuracy_vs_depth(results, plot_dir / "accuracy_vs_depth.png"),
            plot_depth_loops_heatmap(results, plot_dir / "depth_loops_heatmap.png"),
            plot_margins(results, plot_dir / "margin_vs_iteration.png")]
    return [p for p in made if p is not None]


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
