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
import tempfile
from pathlib import Path

import numpy as np
from benchgen.evaluators.results import Results, _atomic_write_text

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
                    ["split", "depth", "T*", "peak", "final", "drop", "onset", "loops needed"],
                    [[s, d["depth"], d["t_star"], _fmt(d["peak"]), _fmt(d["final"]), _fmt(d["drop"]),
                      _fmt(d["onset"]), _fmt(d["loops_needed"])]
                     for s, e in ot["per_split"].items() for d in e["depths"]]))
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


def render_html(results: Results, plot_paths: list[Path] | None = None) -> str:
    """A self-contained HTML report (tables + plots embedded as base64 PNG)."""
    esc = html_lib.escape
    parts = ["<!doctype html><html><head><meta charset='utf-8'>",
             f"<title>{esc(results.model_name)} — benchgen report</title>",
             "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto}"
             "table{border-collapse:collapse;margin-bottom:1.5em}td,th{border:1px solid #ccc;"
             "padding:3px 8px;text-align:right}th{background:#f3f3f3}img{max-width:100%}</style>",
             "</head><body>", f"<h1>Evaluation report: {esc(results.model_name)}</h1><ul>"]
    parts += [f"<li><b>{esc(k)}</b>: {esc(v)}</li>" for k, v in _header_lines(results)] + ["</ul>"]
    for title, head, rows in tables(results):
        parts.append(f"<h2>{esc(title)}</h2><table><tr>" + "".join(f"<th>{esc(h)}</th>" for h in head) + "</tr>")
        parts += ["<tr>" + "".join(f"<td>{esc(_fmt(c))}</td>" for c in r) + "</tr>" for r in rows]
        parts.append("</table>")
    for p in plot_paths or []:
        data = base64.b64encode(Path(p).read_bytes()).decode()
        parts.append(f"<h2>{esc(Path(p).stem.replace('_', ' '))}</h2><img src='data:image/png;base64,{data}'>")
    parts.append("</body></html>")
    return "\n".join(parts)


# -- plots ---------------------------------------------------------------------------------

def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


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
    de = results.metrics.get("depth_extrapolation", {})
    if de.get("available") and de.get("tau") is not None:
        ax.axhline(de["tau"], color="grey", lw=0.8, ls="--", label=f"tau={de['tau']}")
    T = results.metrics.get("primary_loops")
    ax.set(xlabel="depth", ylabel="accuracy", ylim=(-0.02, 1.02),
           title=f"{results.model_name}: accuracy vs depth" + (f" (loops={T})" if T is not None else ""))
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_depth_loops_heatmap(results: Results, path: Path) -> Path | None:
    cells = results.cells
    if not cells["loops"].notna().any() or cells["loops"].nunique() < 2:
        return None
    plt = _pyplot()
    splits = list(dict.fromkeys(cells["split"]))
    fig, axes = plt.subplots(1, len(splits), figsize=(4.2 * len(splits) + 1, 4.5), squeeze=False)
    im = None
    for ax, split in zip(axes[0], splits):
        sc = cells[cells["split"] == split]
        grid = sc.pivot_table(index="depth", columns="loops", values="accuracy", aggfunc="first").sort_index()
        im = ax.imshow(grid.to_numpy(np.float64), aspect="auto", origin="lower", vmin=0, vmax=1, cmap="viridis")
        ax.set_xticks(range(grid.shape[1]), [str(c) for c in grid.columns], fontsize=7)
        ax.set_yticks(range(grid.shape[0]), [str(i) for i in grid.index], fontsize=7)
        ax.set(xlabel="loops", ylabel="depth", title=split)
    fig.colorbar(im, ax=axes[0].tolist(), label="accuracy")
    fig.suptitle(f"{results.model_name}: accuracy by depth x loops")
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
        ax.legend(fontsize=6, ncol=2)
    fig.suptitle(f"{results.model_name}: margin vs iteration")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
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
    target.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".report.tmp-", dir=target))
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
                _atomic_write_text(dest, p.read_text())
            final.append(dest)
        return final
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
