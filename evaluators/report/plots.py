"""PNG plots of a results.json: accuracy vs depth (with chance and the best shortcut), the
depth x loops heatmap, margins per iteration. matplotlib is imported lazily with the Agg backend."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from benchgen.evaluators.results import Results

PLOTS = "plots"


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def validity_cells(dataset: dict) -> dict[tuple[str, int], dict]:
    """Chance and the best shortcut baseline per (test split, depth), from the dataset's validity record
    (``dataset["validity"]``, else manifest.json at ``dataset["path"]`` if its fingerprint matches)."""
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
    out: dict[tuple[str, int], dict] = {}
    for split, entries in splits.items():
        for e in entries if isinstance(entries, list) else []:
            try:
                cell = {"chance": float(e["chance"]), "best": float(e["best"]["accuracy"]),
                        "baseline": str(e["best"]["baseline"])}
                if isinstance(e.get("best_partial"), dict):  # partial reasoning (p-hop: j hops short of p)
                    cell.update(partial=float(e["best_partial"]["accuracy"]),
                                partial_baseline=str(e["best_partial"]["baseline"]))
                out[(str(split), int(e["depth"]))] = cell
            except (KeyError, TypeError, ValueError):
                continue
    return out


def floor_of(cell: dict | None) -> float | None:
    """The line a depth claim must clear: the best of chance, the best shortcut and the best
    partial-depth line of a :func:`validity_cells` cell (None without a cell)."""
    if not cell:
        return None
    return max(cell.get(k, float("-inf")) for k in ("chance", "best", "partial"))


def reference_lines(dataset: dict) -> dict[int, dict]:
    """Chance and the best shortcut baseline per depth (:func:`validity_cells`). A depth found in several
    test splits takes test_depth's, then test_interp's, then test_id's cell."""
    rank = {"test_depth": 3, "test_interp": 2, "test_id": 1}
    cells = validity_cells(dataset)
    return {d: cells[(s, d)] for s, d in sorted(cells, key=lambda k: rank.get(k[0], 0))}


MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")


def spread(i: int, k: int, width: float = 0.18) -> float:
    """Horizontal offset of series ``i`` of ``k`` at one x (points at the same depth stay visible)."""
    return 0.0 if k < 2 else (i - (k - 1) / 2) * width / (k - 1)


REFERENCE_STYLES = {  # key of a reference cell -> how its line is drawn and labelled
    "chance": {"color": "grey", "lw": 1.0, "ls": ":", "marker": "_", "label": "chance"},
    "best": {"color": "black", "lw": 1.0, "ls": "-.", "marker": "x", "ms": 4, "label": "best shortcut baseline"},
    "partial": {"color": "tab:brown", "lw": 1.0, "ls": "--", "marker": "+", "ms": 5,
                "label": "best partial-depth line (j hops short; partial reasoning)"},
}


def reference_series(lines: dict[int, dict]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The reference lines a depth plot draws: key -> (depths, values), for each key some depth has."""
    d = np.array(sorted(lines), dtype=float)
    out = {}
    for key in REFERENCE_STYLES:
        v = np.array([lines[int(k)].get(key, np.nan) for k in d], dtype=float)
        if len(v) and not np.isnan(v).all():
            out[key] = (d, v)
    return out


def draw_reference_lines(ax, lines: dict[int, dict]) -> None:
    """Chance (grey dotted), the best shortcut baseline (black dash-dot) and, where the dataset records
    them, the best partial-depth line (brown dashed) per depth."""
    for key, (d, v) in reference_series(lines or {}).items():
        ax.plot(d, v, **REFERENCE_STYLES[key])


def plot_accuracy_vs_depth(results: Results, path: Path) -> Path | None:
    curves = results.metrics.get("depth_curve", {})
    if not any(curves.values()):
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    drawn = [split for split, rows in curves.items() if rows]
    for split, rows in curves.items():
        if not rows:
            continue
        k = drawn.index(split)
        d = np.array([r["depth"] for r in rows], dtype=float) + spread(k, len(drawn))
        a = np.array([r["accuracy"] for r in rows], dtype=float)
        lo = np.array([r["ci_low"] for r in rows], dtype=float)
        hi = np.array([r["ci_high"] for r in rows], dtype=float)
        ax.errorbar(d, a, yerr=[np.maximum(a - lo, 0), np.maximum(hi - a, 0)], marker=MARKERS[k % len(MARKERS)],
                    capsize=3, label=split)
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
    from benchgen.evaluators.report.loop_plots import write_loop_plots

    return [p for p in made if p is not None] + write_loop_plots(results, plot_dir)
