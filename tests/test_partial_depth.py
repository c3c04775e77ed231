"""p-hop partial-depth lines (the find_{p-j} answer, j = 1..4): recomputed by a plain-Python find walk,
measured on phop-small in the ranges issue #21 states, recorded in the validity record outside the audit
rule, and carried into the baselines summary, the report and the leaderboard's depth plot."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pytest
from click.testing import CliRunner
from fixtures.tasks import induction
from test_induction import find_chain

from benchgen.cli import main
from benchgen.config import build_config
from benchgen.dataset import load
from benchgen.evaluators import MetricSettings, evaluate
from benchgen.evaluators.report.leaderboard import depth_figure, load_rows
from benchgen.evaluators.report.plots import reference_lines
from benchgen.evaluators.report.render import render_markdown
from benchgen.pipeline import validity
from benchgen.pipeline.baselines import run_baselines
from benchgen.stats import wilson
from benchgen.tasks.baselines import Context, for_task

SMALL = {"alphabet": 3, "train_hops": "1-5", "train_lengths": "12,16", "held_out": "5x16", "test_hops": "6,7",
         "train_per_cell": 60, "valid_per_cell": 10, "test_per_cell": 40, "seed": 2}
# issue #21's measurement on every split of phop-small: share of rows where find_{p-j} is the answer
RANGES = {1: (0.0, 0.0), 2: (0.49, 0.52), 3: (0.11, 0.15), 4: (0.32, 0.36)}
FAST = MetricSettings(bootstrap=50)


def walk_letter(seq: str, hops: int) -> str:
    """The letter at find_hops(v, n) by the literal find1 of test_induction ("" when hops < 0 or it falls off)."""
    if hops < 0:
        return ""
    chain = find_chain([None, *seq], hops)
    return "" if chain[-1] == 0 or len(chain) < hops + 1 else seq[chain[-1] - 1]


def partial_lines():
    return [b for b in for_task(induction.TASK) if b.partial]


@pytest.fixture(scope="module")
def phop_small(tmp_path_factory):
    cfg = build_config(induction.InductionConfig, induction.PRESETS, "phop-small", {})
    return load(induction.generate(cfg, tmp_path_factory.mktemp("phop") / "phop-small", progress=False))


def test_partial_lines_are_find_p_minus_j(tmp_path):
    """Every prediction equals an independent plain-Python find_{p-j} walk (and the written chain)."""
    cfg = build_config(induction.InductionConfig, induction.PRESETS, None, dict(SMALL))
    ds = load(induction.generate(cfg, tmp_path / "d", progress=False))
    lines = partial_lines()
    assert [b.hops_short for b in lines] == [1, 2, 3, 4] and all(b.cheap for b in lines)
    ctx = Context(ds)
    for split in ("test_id", "test_depth"):
        t = ds.table(split)
        rows = t.to_pylist()
        for b in lines:
            got = b.predict(ctx, t).to_pylist()
            for r, g in zip(rows, got):
                seq, p = r["prompt"].split("|")[1], r["depth"]
                assert g == walk_letter(seq, p - b.hops_short)
                if p >= b.hops_short:  # the generator's own chain: a second route to the same letter
                    assert g == seq[r["chain_positions"][p - b.hops_short] - 1]


def test_phop_small_shares_and_audit(phop_small):
    """On every split of phop-small the shares land in the stated ranges (point and Wilson interval); the
    record's counts are the plain-Python walk's; p-2 is far above chance yet the audit passes."""
    rec = phop_small.manifest["validity"]
    assert rec["partial_lines"] == [f"partial_p-{j}" for j in RANGES] and "partial_p-2" not in rec["baselines"]
    for split, entries in rec["splits"].items():
        t = phop_small.table(split, columns=["prompt", "depth", "answer"]).to_pydict()
        for e in entries:
            sel = [i for i, d in enumerate(t["depth"]) if d == e["depth"]]
            assert set(e["partial"]) == set(rec["partial_lines"]) and not set(e["partial"]) & set(e["correct"])
            for j, (lo, hi) in RANGES.items():
                hits = sum(walk_letter(t["prompt"][i].split("|")[1], e["depth"] - j) == t["answer"][i] for i in sel)
                assert e["partial"][f"partial_p-{j}"] == hits
                share = hits / len(sel)
                w_lo, w_hi = (float(x[0]) for x in wilson(np.array([hits]), np.array([len(sel)])))
                assert lo <= share <= hi and w_lo <= hi and w_hi >= lo, (split, e["depth"], j, share)
            best = e["best_partial"]
            assert best["baseline"] == "partial_p-2" and best["accuracy"] > e["chance"] + 0.2
            assert best["ci_low"] <= best["accuracy"] <= best["ci_high"]
            assert e["best"]["accuracy"] < 0.3  # the shortcut floor stays near chance
    assert validity.problems(rec) == [] and validity.audit(phop_small) == []
    card = (phop_small.path / "README.md").read_text()
    assert "best partial-depth line" in card and "partial_p-2 0.50" in card and "never fail the audit" in card


def test_partial_lines_in_report_summary_and_leaderboard(phop_small, tmp_path):
    """The report judges each depth against the best line (an exact model clears it, a model two hops short
    does not); the baselines summary and the leaderboard's depth plot carry the partial-depth line."""
    floors = tmp_path / "floors"
    run_baselines(phop_small, floors, only=["partial_p-2", "partial_p-3", "last_letter"], splits=["test_depth"],
                  bootstrap=20)
    summary = json.loads((floors / "summary.json").read_text())
    (cell,) = summary["splits"]["test_depth"]
    assert cell["best"]["baseline"] == "last_letter" and cell["best_partial"]["baseline"] == "partial_p-2"
    assert "best partial-depth line" in (floors / "summary.md").read_text()
    truth = phop_small.table("test_depth", columns=["id", "answer"])
    short = pa.parquet.read_table(floors / "partial_p-2" / "predictions.parquet")
    for name, preds in (("exact", truth.rename_columns(["id", "prediction"])), ("short", short)):
        res = evaluate(phop_small, preds, splits=["test_depth"], settings=FAST, model_name=name)
        (tmp_path / name).mkdir()
        (tmp_path / name / "results.json").write_text(res.dumps())
        md = render_markdown(res)
        row = next(x for x in md.splitlines() if x.startswith("| test_depth | 16 |"))
        assert "partial_p-2 0.505" in row and row.endswith("| yes |" if name == "exact" else "| no |")
    rows, dataset = load_rows([tmp_path / "exact" / "results.json", floors])
    ref = reference_lines(dataset)
    assert ref[16]["partial"] == pytest.approx(cell["best_partial"]["accuracy"], abs=1e-6)
    fig = depth_figure(rows, ref)
    drawn = {ln.get_label(): ln.get_ydata() for ln in fig.axes[0].get_lines()}
    (label,) = [k for k in drawn if k.startswith("best partial-depth line")]
    assert sorted(ref) == [8, 10, 12, 16] and list(drawn[label]) == [ref[d]["partial"] for d in sorted(ref)]
    labels = {r.model: r for r in rows}
    assert labels["baseline:partial_p-2"].hops_short == 2 and labels["baseline:last_letter"].hops_short == 0
    out = tmp_path / "board.md"
    r = CliRunner().invoke(main, ["leaderboard", str(tmp_path / "exact" / "results.json"), str(floors),
                                  "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert "baseline:partial_p-2 (partial-depth line)" in out.read_text()
