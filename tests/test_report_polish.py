"""Report and leaderboard polish (issue 22, item 11): intervals never wrap mid-number, coverage said
once when every row is complete, series at one depth offset with distinct markers, the depth-reach
heading agrees with its table about the training T, the horizon defined, chance and the best
shortcut beside every accuracy by depth."""

from __future__ import annotations

import json

import pytest
from test_safety import TINY, cli

from benchgen.dataset import load
from benchgen.evaluators.report.plots import MARKERS, spread


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    root = tmp_path_factory.mktemp("polish")
    assert cli("generate", "khop", *TINY, "--seed", "5", "--out", root / "d")[0] == 0
    for noise in ("0.1", "0.4"):
        assert cli("predict-oracle", root / "d", "--noise", noise, "--loops", "1-3", "--out",
                   root / f"p{noise}.parquet")[0] == 0
        code, _, err, _ = cli("evaluate", root / "d", "--predictions", root / f"p{noise}.parquet", "--model-name",
                              f"m{noise}", "--out", root / f"e{noise}", "--bootstrap", "50")
        assert code == 0, err
    return root


def test_report_tables_show_chance_best_shortcut_and_define_the_horizon(evaluated):
    md = (evaluated / "e0.1" / "report.md").read_text()
    validity = load(evaluated / "d").manifest["validity"]["splits"]
    lines = md.splitlines()
    start = lines.index("| split | depth | n | accuracy | 95% CI | chance | best shortcut | above floor |")
    assert lines[start - 2].startswith("## Accuracy by depth (chance = 1 / distinct answers in the cell")
    end = lines.index("", start)
    rows = [line.split(" | ") for line in lines[start + 2:end]]
    checked = 0
    for e in validity["test_depth"]:
        row = next(r for r in rows if r[0] == "| test_depth" and r[1] == str(e["depth"]))
        assert row[5] == f"{e['chance']:.3f}" and row[6] == f"{e['best']['baseline']} {e['best']['accuracy']:.3f}"
        low = float(row[4].strip("[]").split(",")[0])  # the depth claim: its lower bound clears the best floor
        assert row[7] == ("yes |" if low > max(e["chance"], e["best"]["accuracy"]) else "no |")
        checked += 1
    assert checked == len(validity["test_depth"]) > 0
    assert "the deepest depth up to which every depth reaches tau" in md
    results = json.loads((evaluated / "e0.1" / "results.json").read_text())
    assert results["model"].get("trained_loops") is None
    heading = next(line for line in md.splitlines() if line.startswith("## Depth learned vs reached"))
    assert "largest swept (training T unknown)" in heading and "trained T" not in heading
    assert "| acc at T=3 |" in md


def test_leaderboard_says_coverage_once_and_never_wraps_numbers(evaluated, tmp_path):
    outs = [tmp_path / "b.md", tmp_path / "b.html"]
    code, _, err, _ = cli("leaderboard", evaluated / "e0.1", evaluated / "e0.4", *[a for o in outs for a in ("--out", o)])
    assert code == 0, err
    md, page = outs[0].read_text(), outs[1].read_text()
    assert "coverage (scored/total)" not in md and "coverage (scored/total)" not in page
    assert "Every row scored every example: test_id" in md
    assert "table.board td { white-space: nowrap;" in page
    # one partial row: coverage per row again
    code, _, err, _ = cli("predict-oracle", evaluated / "d", "--splits", "test_id", "--out", tmp_path / "part.parquet")
    assert code == 0, err
    code, _, err, _ = cli("evaluate", evaluated / "d", "--predictions", tmp_path / "part.parquet", "--allow-missing",
                          "--out", tmp_path / "part")
    assert code == 0, err
    code, _, err, _ = cli("leaderboard", evaluated / "e0.1", tmp_path / "part", "--allow-partial",
                          "--out", tmp_path / "p.md")
    assert code == 0, err
    assert "coverage (scored/total)" in (tmp_path / "p.md").read_text()


def test_series_at_one_depth_are_offset_with_distinct_markers():
    for k in (2, 3, 5, 8):
        offsets = [spread(i, k) for i in range(k)]
        assert len(set(offsets)) == k and abs(sum(offsets)) < 1e-12 and max(map(abs, offsets)) < 0.25
    assert spread(0, 1) == 0.0 and len(set(MARKERS)) == len(MARKERS) >= 6
