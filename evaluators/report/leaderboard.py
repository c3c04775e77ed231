"""Leaderboard: many results.json on one dataset -> a ranked table (Markdown, HTML or CSV).

Results computed on different datasets are refused (their fingerprints differ), so every row
is comparable. Columns: ID, systematic and depth-extrapolation accuracy (95% intervals), depth
horizon (bootstrap interval) and overthinking drop; the HTML page is one static file with a
sortable table and every model's accuracy-by-depth curve on one embedded plot, with chance, the
best shortcut baseline and (p-hop) the best partial-depth line per depth as reference lines. Non-reasoning baselines from ``benchgen
baselines`` (``model.floor: true``) are floor rows (shaded); results passed with ``--baseline`` (or
marked ``model.baseline: true``) are labelled baseline rows; every other result, a trained
``reference:`` model included, is a model row.

Every row shows its coverage (scored / total examples per test split); a results file that left
examples or loop counts unscored is refused unless ``allow_partial``, and then marked partial.
A row's accuracies are taken at its primary loop count: the model's trained T when the results
record it (``model.trained_loops``) and it was swept, else the largest swept; the board says which.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from benchgen.errors import BenchgenError

SORT_KEYS = ("mean", "id", "systematic", "depth", "horizon", "drop")
FORMATS = (".md", ".html", ".csv")


@dataclass
class Row:
    """One model's leaderboard entry (None where a metric was not available)."""

    model: str
    source: str
    baseline: bool
    loops: int | None
    id: dict | None
    systematic: dict | None
    depth: dict | None
    horizon: dict | None
    drop: float | None
    curve: list[dict] = field(default_factory=list)
    id_depths: list[int] = field(default_factory=list)
    rank: int = 0
    floor: bool = False
    loops_source: str = ""   # "trained" or "largest swept" (empty: a model without loops)
    coverage: dict[str, list[int]] = field(default_factory=dict)  # test split -> [scored, total]
    partial: bool = False
    hops_short: int = 0      # > 0: a floor row that is a partial-depth line (the task's algorithm j hops short)

    @property
    def mean(self) -> float | None:
        vals = [m["value"] for m in (self.id, self.systematic, self.depth) if m and m["value"] is not None]
        return float(np.mean(vals)) if vals else None

    def key(self, sort: str) -> float | None:
        if sort == "mean":
            return self.mean
        if sort == "drop":
            return None if self.drop is None else -self.drop  # smaller drop is better
        m = getattr(self, sort)
        return None if m is None else m["value"]


def _acc(entry: dict | None) -> dict | None:
    if not entry or entry.get("accuracy") is None:
        return None
    return {"value": entry["accuracy"], "ci_low": entry.get("ci_low"), "ci_high": entry.get("ci_high")}


def primary_loops(results) -> tuple[int | None, str]:
    """The loop count a row is reported at, and why: the trained T if swept, else the largest swept."""
    loops = sorted(int(x) for x in results.cells["loops"].dropna().unique())
    if not loops:
        return None, ""
    trained = results.model.get("trained_loops", (results.settings or {}).get("trained_loops"))
    if isinstance(trained, int) and not isinstance(trained, bool) and trained in loops:
        return trained, "trained"
    return loops[-1], "largest swept"


def _settings(results, loops: int | None):
    """The results' own metric settings (unknown keys dropped), at ``loops``."""
    import dataclasses

    from benchgen.evaluators.metrics import MetricSettings

    known = {f.name for f in dataclasses.fields(MetricSettings)}
    given = dict(results.settings or {})
    if "seed" in given:  # results.json before 0.1's rename: "seed" was the bootstrap seed
        given.setdefault("bootstrap_seed", given.pop("seed"))
    kept = {k: v for k, v in given.items() if k in known}
    return MetricSettings(**{**kept, "primary_loops": loops})


def coverage_of(results, totals: dict[str, int]) -> tuple[dict[str, list[int]], bool]:
    """[scored, total] examples per test split of the board, and whether anything was left unscored."""
    splits = (results.coverage or {}).get("splits") or {}
    cov, partial = {}, not splits
    for split, total in totals.items():
        c = splits.get(split) or {}
        scored = int(c.get("predicted", 0))
        cov[split] = [scored, total]
        partial |= scored < total or bool(c.get("incomplete_sweeps"))
    return cov, partial


def _row(results, source: str, baseline: bool, totals: dict[str, int] | None = None) -> Row:
    from benchgen.evaluators.metrics import depth_extrapolation, per_split

    T, why = primary_loops(results)
    settings = _settings(results, T)
    per = per_split(results.cells, settings)
    ext = depth_extrapolation(results.cells, settings)
    depth = horizon = None
    curve, id_depths = [], []
    id_split = settings.id_split
    if ext.get("available"):
        m = ext.get("mean_extrapolation_accuracy") or {}
        depth = m if m.get("value") is not None else None
        h = ext.get("depth_horizon") or {}
        horizon = h if "value" in h else None
        curve = ext.get("curve") or []
        id_depths = ext.get("id_depths") or []
    over = results.metrics.get("overthinking", {}) or {}
    drop = None
    if over.get("available"):
        drops = [d["drop"] for split, v in over.get("per_split", {}).items() if split.startswith("test")
                 for d in v.get("depths", []) if d.get("drop") is not None]
        drop = float(np.mean(drops)) if drops else None
    cov, partial = coverage_of(results, totals or {})
    floor = bool(results.model.get("floor"))
    return Row(model=results.model_name, source=source,
               baseline=not floor and (baseline or bool(results.model.get("baseline"))),
               loops=T, id=_acc(per.get(id_split)),
               systematic=_acc(per.get("test_systematic")), depth=depth, horizon=horizon, drop=drop,
               curve=curve, id_depths=id_depths, floor=floor, loops_source=why,
               coverage=cov, partial=partial, hops_short=int(results.model.get("hops_short") or 0) if floor else 0)


def expand(path: str | Path) -> list[Path]:
    """A results file, a directory holding results.json, or a ``benchgen baselines`` output
    directory (every ``*/results.json`` in it)."""
    p = Path(path)
    if p.is_dir() and not (p / "results.json").exists():
        found = sorted(p.glob("*/results.json"))
        if found:
            return found
    return [p]


def load_rows(paths: Sequence[str | Path], baselines: Sequence[str | Path] = (),
              allow_partial: bool = False) -> tuple[list[Row], dict]:
    """Read results files (or dirs holding them); refuse mixed dataset fingerprints and, unless
    ``allow_partial``, results that left examples of a test split (or loop counts) unscored."""
    from benchgen.evaluators.results import Results

    entries = [(q, False) for p in paths for q in expand(p)] + [(q, True) for p in baselines for q in expand(p)]
    if not entries:
        raise BenchgenError("leaderboard: no results files given")
    loaded = [(str(p), Results.from_json(p), b) for p, b in entries]
    by_fp: dict[str | None, list[str]] = {}
    for src, r, _ in loaded:
        by_fp.setdefault(r.fingerprint, []).append(src)
    if None in by_fp:
        raise BenchgenError(f"leaderboard: {', '.join(by_fp[None])}: results carry no dataset fingerprint")
    if len(by_fp) > 1:
        groups = "; ".join(f"{fp[:12]}: {', '.join(srcs)}" for fp, srcs in by_fp.items())
        raise BenchgenError(f"leaderboard: results come from different datasets (fingerprints differ) — "
                            f"{groups}. A leaderboard ranks models on one dataset only")
    totals: dict[str, int] = {}  # examples per test split, from any results that scored it
    for _, r, _ in loaded:
        for split, c in ((r.coverage or {}).get("splits") or {}).items():
            if split.startswith("test") and isinstance(c.get("examples"), int):
                totals[split] = max(totals.get(split, 0), c["examples"])
    rows = [_row(r, src, b, totals) for src, r, b in loaded]
    bad = [r for r in rows if r.partial]
    if bad and not allow_partial:
        what = "; ".join(f"{r.source}: {_coverage(r)}" for r in bad)
        raise BenchgenError(f"leaderboard: partial coverage — {what}. Score every example (and every loop "
                            f"count), or pass --allow-partial to show such rows marked partial")
    return rows, dict(loaded[0][1].dataset)


def rank(rows: list[Row], sort: str = "mean") -> list[Row]:
    """Best first by ``sort`` (missing values last, ties by model name); sets ``Row.rank``."""
    if sort not in SORT_KEYS:
        raise BenchgenError(f"--sort {sort!r}: expected one of {', '.join(SORT_KEYS)}")
    ordered = sorted(rows, key=lambda r: (r.key(sort) is None, -(r.key(sort) or 0.0), r.model, r.source))
    for i, r in enumerate(ordered, 1):
        r.rank = i
    return ordered


# --- rendering --------------------------------------------------------------------------------
def _pct(m: dict | None, ci: bool = True) -> str:
    if not m or m.get("value") is None:
        return "—"
    s = f"{100 * m['value']:.1f}"
    if ci and m.get("ci_low") is not None and m.get("ci_high") is not None:
        s += f" [{100 * m['ci_low']:.1f}, {100 * m['ci_high']:.1f}]"
    return s


def _horizon(m: dict | None) -> str:
    if not m or m.get("value") is None:
        return "—" if not m else "none"
    s = str(m["value"])
    if m.get("ci_low") is not None or m.get("ci_high") is not None:
        lo = "none" if m.get("ci_low") is None else m["ci_low"]
        hi = "none" if m.get("ci_high") is None else m["ci_high"]
        s += f" [{lo}, {hi}]"
    return s


def _drop(v: float | None) -> str:
    return "—" if v is None else f"{100 * v:.1f}"


HEADERS = ["rank", "model", "loops", "ID acc % [95% CI]", "systematic acc % [95% CI]",
           "depth-extrapolation acc % [95% CI]", "depth horizon [95% CI]", "overthinking drop (pts)",
           "coverage (scored/total)"]


def _label(r: Row) -> str:
    kind = (" (partial-depth line)" if r.hops_short else " (floor)") if r.floor else " (baseline)" if r.baseline else ""
    return r.model + kind + (" (partial)" if r.partial else "")


def _loops(r: Row) -> str:
    return "—" if r.loops is None else f"{r.loops} ({r.loops_source})"


def _coverage(r: Row) -> str:
    if not r.coverage:
        return "—"
    return ", ".join(f"{split} {a}/{b}" for split, (a, b) in r.coverage.items())


def _cells(r: Row, coverage: bool = True) -> list[str]:
    return [str(r.rank), _label(r), _loops(r), _pct(r.id), _pct(r.systematic),
            _pct(r.depth), _horizon(r.horizon), _drop(r.drop), *([_coverage(r)] if coverage else [])]


def common_coverage(rows: list[Row]) -> str | None:
    """The coverage of every row when all are complete and alike (then said once, not per row), else None."""
    texts = {_coverage(r) for r in rows}
    if len(texts) != 1 or any(r.partial for r in rows) or not rows[0].coverage:
        return None
    return ", ".join(f"{split} {total}" for split, (_, total) in rows[0].coverage.items())


def _headers(rows: list[Row]) -> list[str]:
    """The table's headers (without coverage when it is said once)."""
    return HEADERS if common_coverage(rows) is None else HEADERS[:-1]


def _intro(dataset: dict, sort: str, n: int, rows: list[Row] | None = None) -> str:
    once = common_coverage(rows or [])
    cov = (f" Every row scored every example: {once}." if once else "")
    return (f"Dataset: task `{dataset.get('task')}`, fingerprint `{str(dataset.get('fingerprint'))[:16]}`; "
            f"{n} model(s), ranked by {sort}. Accuracies in percent with 95% intervals (Wilson for a split, "
            "bootstrap for derived numbers), at each model's trained loop count when its results record "
            "it, else at the largest swept (the loops column says which); overthinking drop = mean over "
            "test depths of peak minus final accuracy across the loops sweep (— when no sweep). Floor rows "
            "are non-reasoning baselines fitted on train (`benchgen baselines`); depth horizon = the deepest depth "
            "up to which every depth reaches tau (the results' own tau)." + cov
            + (" Partial-depth-line rows are the task's own algorithm stopped j hops short of the depth "
               "(partial reasoning, not a shortcut): a depth claim must clear them too." if any(
                   r.hops_short for r in rows or []) else ""))


def md_cell(text: str) -> str:
    """One Markdown table cell from untrusted text: no line breaks, no raw HTML, pipes escaped."""
    flat = " ".join(str(text).split())
    return html.escape(flat, quote=False).replace("|", "\\|")


def csv_cell(value):
    """Neutralise spreadsheet formulas (text starting with = + - @, tab or CR gets a leading quote);
    round floats to 4 decimals (the intervals' own precision)."""
    if isinstance(value, str) and value and value[0] in "=+-@\t\r":
        return "'" + value
    if isinstance(value, float):
        return round(value, 4)
    return value


def render_markdown(rows: list[Row], dataset: dict, sort: str) -> str:
    heads, cov = _headers(rows), common_coverage(rows) is None
    lines = ["# benchgen leaderboard", "", md_cell(_intro(dataset, sort, len(rows), rows)).replace("\\|", "|"), "",
             "| " + " | ".join(heads) + " |", "|" + "---|" * len(heads)]
    lines += ["| " + " | ".join(md_cell(c) for c in _cells(r, cov)) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def render_csv(rows: list[Row]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    cols = ["rank", "model", "baseline", "source", "loops"]
    for m in ("id", "systematic", "depth_extrapolation", "depth_horizon"):
        cols += [m, f"{m}_ci_low", f"{m}_ci_high"]
    w.writerow(cols + ["overthinking_drop", "loops_source", "floor", "partial", "coverage"])
    for r in rows:
        vals: list = [r.rank, r.model, int(r.baseline), r.source, "" if r.loops is None else r.loops]
        for m in (r.id, r.systematic, r.depth, r.horizon):
            vals += ["" if not m or m.get(k) is None else m[k] for k in ("value", "ci_low", "ci_high")]
        vals += ["" if r.drop is None else r.drop, r.loops_source, int(r.floor), int(r.partial), _coverage(r)]
        w.writerow([csv_cell(v) for v in vals])
    return buf.getvalue()


def _floor_lines(rows: list[Row]) -> dict[int, dict]:
    """Best shortcut floor row and best partial-depth line per depth (when the dataset's validity record
    is not at hand)."""
    out: dict[int, dict] = {}
    for r in rows:
        if not r.floor or r.model.endswith(("train_lookup", ":chance")):
            continue
        key = "partial" if r.hops_short else "best"
        for c in r.curve:
            cell = out.setdefault(c["depth"], {})
            if c.get("accuracy") is not None and c["accuracy"] > cell.get(key, -1.0) and c["depth"] >= r.hops_short:
                cell[key] = c["accuracy"]
                cell["partial_baseline" if r.hops_short else "baseline"] = r.model
    return out


def depth_plot_png(rows: list[Row], reference: dict[int, dict] | None = None) -> bytes | None:
    """All models' accuracy-by-depth curves (95% bands) on one plot, with chance, the best shortcut
    baseline and (p-hop) the best partial-depth line per depth as reference lines, as PNG bytes."""
    fig = depth_figure(rows, reference)
    if fig is None:
        return None
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None}, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def depth_figure(rows: list[Row], reference: dict[int, dict] | None = None):
    """The matplotlib figure :func:`depth_plot_png` renders (None when no row has a depth curve)."""
    if not any(r.curve for r in rows):
        return None
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    from benchgen.evaluators.report.plots import MARKERS, draw_reference_lines, spread

    fig, ax = plt.subplots(figsize=(7.5, 4.2), dpi=110)
    id_max = None
    drawn = [r for r in rows if r.curve and not r.floor]  # floors: the best-shortcut reference line
    for k, r in enumerate(drawn):
        d = np.array([c["depth"] for c in r.curve], dtype=float) + spread(k, len(drawn))
        a = np.array([np.nan if c["accuracy"] is None else c["accuracy"] for c in r.curve], dtype=float)
        lo = np.array([np.nan if c.get("ci_low") is None else c["ci_low"] for c in r.curve], dtype=float)
        hi = np.array([np.nan if c.get("ci_high") is None else c["ci_high"] for c in r.curve], dtype=float)
        line, = ax.plot(d, a, marker=MARKERS[k % len(MARKERS)], ms=4, ls="--" if r.baseline else "-",
                        label=r.model + (" (baseline)" if r.baseline else ""))
        ax.fill_between(d, lo, hi, color=line.get_color(), alpha=0.12, lw=0)
        if r.id_depths:
            id_max = max(id_max or 0, max(r.id_depths))
    draw_reference_lines(ax, reference or _floor_lines(rows))
    if id_max is not None:
        ax.axvline(id_max + 0.5, color="grey", lw=0.8, ls=":")
        ax.text(id_max + 0.6, 1.02, "extrapolation →", fontsize=8, color="grey", va="bottom")
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("depth")
    ax.set_ylabel("accuracy")
    ax.set_ylim(-0.02, 1.08)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)  # outside the data
    return fig


_SORT_JS = """
document.querySelectorAll('table.board th').forEach(function (th, col) {
  th.addEventListener('click', function () {
    var body = th.closest('table').tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    var asc = th.dataset.dir !== 'asc';
    th.closest('tr').querySelectorAll('th').forEach(function (h) { delete h.dataset.dir; });
    th.dataset.dir = asc ? 'asc' : 'desc';
    rows.sort(function (a, b) {
      var x = a.cells[col].dataset.sort, y = b.cells[col].dataset.sort;
      var nx = parseFloat(x), ny = parseFloat(y);
      var c = (isNaN(nx) || isNaN(ny)) ? String(x).localeCompare(String(y)) : nx - ny;
      if (x === '') c = 1; else if (y === '') c = -1; else if (!asc) c = -c;
      return c;
    });
    rows.forEach(function (r) { body.appendChild(r); });
  });
});
"""


def render_html(rows: list[Row], dataset: dict, sort: str) -> str:
    def sort_val(v) -> str:
        return "" if v is None else str(v)

    body = []
    per_row = common_coverage(rows) is None
    for r in rows:
        cov = min((a / b for a, b in r.coverage.values() if b), default=None)
        keys = [r.rank, r.model, r.loops, *(None if m is None else m.get("value")
                                          for m in (r.id, r.systematic, r.depth, r.horizon)), r.drop, cov]
        tds = "".join(f'<td data-sort="{html.escape(sort_val(k))}">{html.escape(c)}</td>'
                      for k, c in zip(keys, _cells(r, per_row)))
        body.append(f'<tr class="{"floor" if r.floor else "baseline" if r.baseline else "model"}">{tds}</tr>')
    heads = "".join(f'<th title="click to sort">{html.escape(h)}</th>' for h in _headers(rows))
    from benchgen.evaluators.report.plots import reference_lines

    png = depth_plot_png(rows, reference_lines(dataset))
    intro = re.sub(r"`([^`]*)`", r"<code>\1</code>", html.escape(_intro(dataset, sort, len(rows), rows)))  # no backticks
    img = (f'<img alt="accuracy by depth, all models" src="data:image/png;base64,'
           f'{base64.b64encode(png).decode()}">' if png else "<p>No depth curves in these results.</p>")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>benchgen leaderboard</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; color: #222; }}
table.board {{ border-collapse: collapse; font-size: 14px; }}
table.board th, table.board td {{ border: 1px solid #ccc; padding: 4px 8px; text-align: right; }}
table.board td {{ white-space: nowrap; font-variant-numeric: tabular-nums; }}
table.board td:nth-child(2), table.board th:nth-child(2),
table.board td:last-child, table.board th:last-child {{ text-align: left; }}
code {{ background: #f3f3f3; padding: 0 3px; border-radius: 3px; }}
table.board th {{ background: #f3f3f3; cursor: pointer; user-select: none; }}
table.board th[data-dir=asc]::after {{ content: " ▲"; }}
table.board th[data-dir=desc]::after {{ content: " ▼"; }}
tr.floor td {{ background: #f4f4f4; color: #555; font-style: italic; }}
tr.baseline td {{ font-style: italic; }}
img {{ max-width: 100%; margin-top: 1.5em; }}
</style></head><body>
<h1>benchgen leaderboard</h1>
<p>{intro}</p>
<table class="board"><thead><tr>{heads}</tr></thead>
<tbody>
{chr(10).join(body)}
</tbody></table>
<h2>Accuracy by depth</h2>
{img}
<script>{_SORT_JS}</script>
</body></html>
"""


def _is_board(path: Path) -> bool:
    """Whether an existing file is a board benchgen wrote (only those are replaced)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            head = f.read(4096)
    except OSError:
        return False
    return (head.startswith("# benchgen leaderboard") or "<title>benchgen leaderboard</title>" in head
            or head.startswith("rank,model,"))


def _atomic_write(path: Path, data: str) -> None:
    """Write one board file through the one atomic-write helper; never replaces a file benchgen did not write."""
    from benchgen.atomic import safe_out_path, write_file

    path = safe_out_path(path)
    if path.is_file() and not _is_board(path):
        raise BenchgenError(f"--out {path}: exists and is not a benchgen leaderboard; refusing to replace it")
    write_file(path, data)


def leaderboard(results: Sequence[str | Path], outs: Sequence[str | Path], *,
                baselines: Sequence[str | Path] = (), sort: str = "mean", allow_partial: bool = False,
                overwrite: bool = False) -> list[Row]:
    """Rank ``results`` (+ ``baselines``) on one dataset and write each of ``outs`` (.md/.html/.csv);
    partial-coverage results are refused unless ``allow_partial`` (then marked). An existing board is
    replaced only with ``overwrite`` (as every command's --out), and a file benchgen did not write never."""
    outs = [Path(o) for o in outs]
    if not outs:
        raise BenchgenError("--out: give at least one output file (.md, .html or .csv)")
    for o in outs:
        if o.suffix.lower() not in FORMATS:
            raise BenchgenError(f"--out {o}: unknown format {o.suffix or '(none)'!r} (expected .md, .html or .csv)")
        if o.is_file() and not _is_board(o):  # checked for every --out before writing any
            raise BenchgenError(f"--out {o}: exists and is not a benchgen leaderboard; refusing to replace it")
        if o.exists() and not overwrite:
            raise BenchgenError(f"--out {o}: already exists (pass --overwrite to replace it)")
    rows, dataset = load_rows(results, baselines, allow_partial=allow_partial)
    rows = rank(rows, sort)
    for o in outs:
        fmt = o.suffix.lower()
        text = (render_markdown(rows, dataset, sort) if fmt == ".md"
                else render_html(rows, dataset, sort) if fmt == ".html" else render_csv(rows))
        _atomic_write(o, text)
    return rows
