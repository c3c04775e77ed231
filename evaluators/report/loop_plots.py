"""PNG plots of how a looped model uses its depth: the compute-accuracy frontier and the probe heatmaps.

- ``compute_accuracy.png``: accuracy against mean loops used, one panel per split (the depth
  extrapolation split first, its title in bold): one curve per exit rule over its threshold sweep
  (its chosen threshold marked), the fixed-T points, and the oracle (upper bound);
- ``probes_heatmap.png``: per depth of the depth-extrapolation split (else the first probed split),
  the share of rows whose top-1 readout is hop j's entity, loops x hop index.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from benchgen.evaluators.report.plots import _pyplot
from benchgen.evaluators.results import Results


def _split_order(splits: list[str], emphasise: str) -> list[str]:
    """Splits with the emphasised one first, others in their order."""
    return sorted(splits, key=lambda s: (s != emphasise, splits.index(s)))


def _xy(points: list[dict], split: str) -> tuple[np.ndarray, np.ndarray]:
    """(mean loops, accuracy) of sweep points on one split, sorted by mean loops."""
    e = [p["per_split"].get(split) for p in points]
    keep = [x for x in e if x and x.get("mean_loops") is not None and x.get("accuracy") is not None]
    xy = np.array(sorted((x["mean_loops"], x["accuracy"]) for x in keep), dtype=float).reshape(-1, 2)
    return xy[:, 0], xy[:, 1]


def plot_compute_accuracy(results: Results, path: Path) -> Path | None:
    """Accuracy vs mean loops used: rules (threshold sweeps), fixed T, oracle; one panel per split."""
    er = results.metrics.get("exit_rules", {})
    if not er.get("available"):
        return None
    depth_split = results.settings.get("depth_split", "test_depth")
    splits = _split_order(list(er["oracle"]["per_split"]), depth_split)
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(splits), figsize=(5.2 * len(splits) + 1.5, 4.4), squeeze=False)
    rules = [r for r in er["rules"] if r["available"] and r["rule"] != "fixed"]
    colors = plt.cm.tab10(np.linspace(0, 1, 10))
    for ax, split in zip(axes[0], splits):
        for i, rule in enumerate(rules):
            x, y = _xy(rule["points"], split)
            ax.plot(x, y, marker=".", lw=1.2, color=colors[i % 10], label=rule["rule"])
            cx, cy = _xy([p for p in rule["points"] if p["chosen"]], split)
            ax.plot(cx, cy, marker="o", ms=7, mfc="none", color=colors[i % 10])
        fixed = next((r for r in er["rules"] if r["rule"] == "fixed" and r["available"]), None)
        if fixed:
            x, y = _xy(fixed["points"], split)
            ax.plot(x, y, ls=":", marker="s", ms=4, color="black", label="fixed T")
        o = er["oracle"]["per_split"][split]
        ax.axhline(o["accuracy"], color="grey", ls="--", lw=0.8)
        ax.plot([o["mean_loops"]], [o["accuracy"]], marker="*", ms=12, color="gold", mec="black", label="oracle")
        ax.set(xlabel="mean loops used", ylabel="accuracy", ylim=(-0.02, 1.02))
        bold = split == depth_split
        ax.set_title(split + (" (depth extrapolation)" if bold else ""), fontweight="bold" if bold else "normal")
        ax.grid(alpha=0.3)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=8, loc="center left", bbox_to_anchor=(1.0, 0.5), title="exit rule")
    fig.suptitle(f"{results.model_name}: compute vs accuracy (circles: chosen thresholds)")
    fig.tight_layout()
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def _heatmap_split(results: Results, per_split: dict) -> str | None:
    """The split the probe heatmaps draw: the depth split when it has cells, else the first that does."""
    depth_split = results.settings.get("depth_split", "test_depth")
    return depth_split if per_split.get(depth_split) else next((s for s, v in per_split.items() if v), None)


def _share_heatmaps(cells: list[dict], loops: list[int], label_axes, colorbar: str, title: str, path: Path) -> Path:
    """One loops x columns heatmap of ``share`` per depth cell; ``label_axes(ax, cell)`` draws the rest."""
    plt = _pyplot()
    ncol = min(3, len(cells))
    nrow = -(-len(cells) // ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(4.2 * ncol + 1, 3.6 * nrow), squeeze=False, constrained_layout=True)
    im = None
    for ax, d in zip(axes.flat, cells):
        grid = np.array([[np.nan if v is None else v for v in row] for row in d["share"]], dtype=float)
        im = ax.imshow(grid, aspect="auto", origin="lower", vmin=0, vmax=1, cmap="magma")
        step = max(1, len(loops) // 8)
        ax.set_yticks(range(0, len(loops), step), [str(t) for t in loops][::step], fontsize=8)
        label_axes(ax, d)
    for ax in list(axes.flat)[len(cells):]:
        ax.set_visible(False)
    fig.colorbar(im, ax=axes.ravel().tolist(), label=colorbar, shrink=0.9)
    fig.suptitle(title)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_probe_heatmaps(results: Results, path: Path) -> Path | None:
    """Per depth: share of rows whose top-1 readout is hop j's entity, loops (rows) x hop (columns)."""
    pr = results.metrics.get("probes", {})
    if not pr.get("available"):
        return None
    split = _heatmap_split(results, pr["per_split"])
    if split is None:
        return None

    def label(ax, d):
        ax.set_xticks(range(len(d["hops"])), [h.replace("hop ", "") if h != "answer" else "ans" for h in d["hops"]],
                      fontsize=8)
        ax.set(xlabel="hop index (entity after j hops)", ylabel="loop t", title=f"{split}, depth {d['depth']}")

    return _share_heatmaps(pr["per_split"][split], pr["loops"], label, "share of rows (top-1 = that entity)",
                           f"{results.model_name}: logit lens at the answer position, per loop", path)


def plot_wavefront_heatmaps(results: Results, path: Path) -> Path | None:
    """Per depth: share of rows whose readout at input position r_j is hop j's entity, loops x positions."""
    wf = results.metrics.get("probes", {}).get("wavefront", {})
    if not wf.get("per_split"):
        return None
    loops = results.metrics["probes"]["loops"]
    split = _heatmap_split(results, wf["per_split"])
    if split is None:
        return None

    def label(ax, d):
        ax.plot(np.arange(len(d["positions"])), [loops.index(j + 1) if j + 1 in loops else np.nan
                                                 for j in range(len(d["positions"]))], "c--", lw=1, label="t = j")
        ax.set_xticks(range(len(d["positions"])), [p.replace("r_", "") for p in d["positions"]], fontsize=8)
        ax.set(xlabel="input position j (token r_j)", ylabel="loop t", title=f"{split}, depth {d['depth']}")

    return _share_heatmaps(wf["per_split"][split], loops, label, "share of rows (readout = entity after hop j)",
                           f"{results.model_name}: readout at every position, per loop (dashed: one hop per loop)",
                           path)


def write_loop_plots(results: Results, plot_dir: Path) -> list[Path]:
    """The plots of this module that apply to ``results``."""
    made = [plot_compute_accuracy(results, plot_dir / "compute_accuracy.png"),
            plot_probe_heatmaps(results, plot_dir / "probes_heatmap.png"),
            plot_wavefront_heatmaps(results, plot_dir / "wavefront_heatmap.png")]
    return [p for p in made if p is not None]
