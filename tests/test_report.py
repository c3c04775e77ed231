"""results.json round trip, atomic output directory, report tables, plots and HTML."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from fixtures.toy import toy_dataset

from benchgen.errors import BenchgenError
from benchgen.evaluators import Results, evaluate, oracle_predictions, rerender, write_outputs
from benchgen.evaluators.report.render import render_markdown, summary_lines

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def sweep_results(tmp_path_factory):
    d = toy_dataset(tmp_path_factory.mktemp("r") / "toy", {"test_id": [1, 1, 2, 2], "test_depth": [3, 3, 4, 4]})
    p = oracle_predictions(d, loops=[1, 2, 3], noise=0.3, noise_seed=3)
    p = p.append_column("margin", pa.array(np.arange(p.num_rows, dtype=float)))
    return evaluate(d, p, model_name="toy-model", model_metadata={"params": "1M"})


def test_results_json_round_trip(sweep_results, tmp_path):
    r = sweep_results
    data = r.to_json()
    assert data["schema_version"] == 1
    assert set(data) >= {"schema_version", "benchgen_version", "dataset", "model", "normalization", "coverage",
                         "cells", "metrics", "settings"}
    assert set(data["metrics"]) == {"primary_loops", "per_split", "depth_curve", "depth_extrapolation",
                                    "overthinking", "margins", "halting", "oracle_best_loop",
                                    "depth_reach", "t_first", "exit_rules", "saturation", "probes"}
    assert data["model"] == {"name": "toy-model", "params": "1M"}
    assert len(data["dataset"]["fingerprint"]) == 64 and data["dataset"]["task"] == "toy"
    assert set(data["cells"][0]) == {"split", "depth", "loops", "n", "correct", "accuracy", "ci_low", "ci_high"}
    path = r.save(tmp_path / "results.json")
    back = Results.from_json(path)
    assert back.to_json() == data
    pd.testing.assert_frame_equal(back.cells, r.cells)
    assert json.loads(path.read_text()) == data
    assert back.accuracy("test_id") == r.metrics["per_split"]["test_id"]["accuracy"]
    # cells are the ground truth: per-split accuracy at the primary loops re-derives from them
    T = data["metrics"]["primary_loops"]
    sel = back.cells[(back.cells.split == "test_depth") & (back.cells.loops == T)]
    assert sel.correct.sum() / sel.n.sum() == data["metrics"]["per_split"]["test_depth"]["accuracy"]


def test_results_without_loops_round_trip(tmp_path):
    d = toy_dataset(tmp_path / "t", {"test_id": [1, 2]})
    r = evaluate(d, oracle_predictions(d))
    back = Results.from_json(r.save(tmp_path / "r.json"))
    assert back.to_json() == r.to_json()
    assert back.cells["loops"].isna().all()


def test_from_json_errors(tmp_path, sweep_results):
    with pytest.raises(BenchgenError, match="does not exist"):
        Results.from_json(tmp_path / "none.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(BenchgenError, match="bad.json: corrupt JSON"):
        Results.from_json(tmp_path / "bad.json")
    data = sweep_results.to_json()
    with pytest.raises(BenchgenError, match="schema_version 99 is not supported"):
        Results.from_json({**data, "schema_version": 99})
    with pytest.raises(BenchgenError, match="missing key 'schema_version'"):
        Results.from_json({k: v for k, v in data.items() if k != "schema_version"})
    with pytest.raises(BenchgenError, match="missing key 'cells'"):
        Results.from_json({k: v for k, v in data.items() if k != "cells"})
    with pytest.raises(BenchgenError, match="malformed 'cells'"):
        Results.from_json({**data, "cells": [{"split": "x"}]})


def test_write_outputs_plots_html_and_atomicity(sweep_results, tmp_path):
    out = write_outputs(sweep_results, tmp_path / "eval", html=True)
    names = {p.name for p in out.iterdir()}
    assert names == {"results.json", "report.md", "report.html", "plots", ".benchgen.json"}
    pngs = sorted(p.name for p in (out / "plots").iterdir())
    assert pngs == ["accuracy_vs_depth.png", "compute_accuracy.png", "depth_loops_heatmap.png",
                    "margin_vs_iteration.png"]
    for p in (out / "plots").iterdir():
        data = p.read_bytes()
        assert data.startswith(PNG) and len(data) > 5000
    md = (out / "report.md").read_text()
    for heading in ("Accuracy per split", "Depth extrapolation", "Accuracy by depth", "Overthinking",
                    "Oracle best loop", "Logit margin", "plots/depth_loops_heatmap.png"):
        assert heading in md
    assert md.count("| test_depth | 3 |") >= 1
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 4 and "<table>" in html
    assert Results.from_json(out / "results.json").to_json() == sweep_results.to_json()
    with pytest.raises(BenchgenError, match="already exists and holds a benchgen results directory"):
        write_outputs(sweep_results, out)
    write_outputs(sweep_results, out, overwrite=True, plots=False)
    assert not (out / "plots").exists() and not (out / "report.html").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp leftovers


def test_rerender_and_no_loops_plots(sweep_results, tmp_path):
    path = sweep_results.save(tmp_path / "x" / "results.json")
    written = rerender(path, html=True)
    assert {p.name for p in written} == {"report.md", "report.html", "accuracy_vs_depth.png", "compute_accuracy.png",
                                         "depth_loops_heatmap.png", "margin_vs_iteration.png"}
    assert all(p.exists() and p.stat().st_size > 0 for p in written)
    d = toy_dataset(tmp_path / "t", {"test_id": [1, 2]})
    flat = evaluate(d, oracle_predictions(d))
    out = write_outputs(flat, tmp_path / "flat")
    assert sorted(p.name for p in (out / "plots").iterdir()) == ["accuracy_vs_depth.png"]
    md = render_markdown(flat)
    assert "Overthinking" not in md and "| test_id | – | 2 | 1.000 |" in md
    assert summary_lines(flat)[1].split()[:3] == ["test_id", "accuracy", "1.000"]


def test_plots_with_zero_and_full_accuracy_cells(tmp_path):
    """Cells at accuracy 0 and 1 (Wilson bounds exactly at p) must plot without error."""
    from benchgen.evaluators.scoring.score import wilson

    lo, hi = wilson(np.array([0, 12]), np.array([12, 12]))
    assert lo[0] == 0.0 and hi[1] == 1.0 and hi[0] > 0 and lo[1] < 1
    d = toy_dataset(tmp_path / "z", {"test_id": [1, 1, 2, 2], "test_depth": [3, 3, 3]})
    p = oracle_predictions(d).to_pandas()
    p.loc[p["id"].str.contains("test_depth"), "prediction"] = "wrong"
    r = evaluate(d, pa.Table.from_pandas(p, preserve_index=False))
    assert r.metrics["per_split"]["test_depth"]["accuracy"] == 0.0
    out = write_outputs(r, tmp_path / "out")
    assert (out / "plots" / "accuracy_vs_depth.png").read_bytes().startswith(PNG)
