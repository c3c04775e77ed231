"""CLI: predict-oracle -> evaluate -> report, end to end, and the error paths (exit code 2)."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from fixtures.toy import toy_dataset

from benchgen.cli import main


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    return toy_dataset(tmp_path_factory.mktemp("cli") / "toy",
                       {"train": [1, 2], "test_id": [1, 1, 2, 2] * 3, "test_depth": [3, 3, 4, 4] * 3})


@pytest.mark.parametrize("ext", ["parquet", "jsonl", "csv"])
def test_oracle_scores_one(toy, tmp_path, ext):
    r = run("predict-oracle", toy, "--out", tmp_path / f"p.{ext}")
    assert r.exit_code == 0, r.output
    assert "wrote 24 predictions" in r.output  # every split but train
    r = run("evaluate", toy, "--predictions", tmp_path / f"p.{ext}", "--model-name", "oracle",
            "--out", tmp_path / "ev", "--no-plots")
    assert r.exit_code == 0, r.output
    assert "test_depth       accuracy 1.000" in r.output
    assert f"wrote {tmp_path / 'ev'}: report.md, results.json" in r.output  # no plots/ claimed under --no-plots
    res = json.loads((tmp_path / "ev" / "results.json").read_text())
    assert res["model"]["name"] == "oracle"
    assert {s: e["accuracy"] for s, e in res["metrics"]["per_split"].items()} == {"test_id": 1.0, "test_depth": 1.0}
    assert all(c["accuracy"] == 1.0 for c in res["cells"])


def test_sweep_noise_html_and_report(toy, tmp_path):
    preds = tmp_path / "noisy.parquet"
    r = run("predict-oracle", toy, "--out", preds, "--noise", "0.25", "--loops", "1-3", "--noise-seed", "5")
    assert r.exit_code == 0, r.output
    t = pq.read_table(preds)
    assert t.num_rows == 72 and sorted(set(t.column("loops").to_pylist())) == [1, 2, 3]
    r = run("evaluate", toy, "--predictions", preds, "--out", tmp_path / "ev", "--html", "--tau", "0.5",
            "--delta", "0.1", "--model-meta", "params=1M", "--splits", "test_id,test_depth")
    assert r.exit_code == 0, r.output
    res = json.loads((tmp_path / "ev" / "results.json").read_text())
    total = sum(c["correct"] for c in res["cells"])
    assert total == 72 - 18  # exactly round(0.25 * 72) rows corrupted
    assert res["model"] == {"name": "noisy", "params": "1M", "predictions": str(preds)}
    assert res["settings"]["tau"] == 0.5 and res["metrics"]["overthinking"]["delta"] == 0.1
    assert res["metrics"]["overthinking"]["available"] and res["metrics"]["oracle_best_loop"]["available"]
    assert (tmp_path / "ev" / "report.html").stat().st_size > 0
    (tmp_path / "ev" / "report.md").unlink()
    r = run("report", tmp_path / "ev" / "results.json")
    assert r.exit_code == 0, r.output
    assert (tmp_path / "ev" / "report.md").exists() and "wrote" in r.output


def test_allow_missing_reports_coverage(toy, tmp_path):
    p = tmp_path / "part.jsonl"
    pa_table = pa.table({"id": [f"toy/test_id/{i:09d}" for i in range(6)], "prediction": ["<e_0>"] * 6})
    from benchgen.evaluators import write_predictions

    write_predictions(pa_table, p)
    r = run("evaluate", toy, "--predictions", p, "--out", tmp_path / "a")
    assert r.exit_code == 2 and "6 of 12 examples in split 'test_id' have no prediction" in r.output
    r = run("evaluate", toy, "--predictions", p, "--out", tmp_path / "a", "--allow-missing", "--no-plots")
    assert r.exit_code == 0, r.output
    assert "coverage 0.500" in r.output
    res = json.loads((tmp_path / "a" / "results.json").read_text())
    assert res["coverage"]["splits"]["test_id"]["coverage"] == 0.5 and res["coverage"]["allow_missing"] is True


def test_cli_errors(toy, tmp_path):
    good = tmp_path / "p.parquet"
    assert run("predict-oracle", toy, "--out", good).exit_code == 0
    cases = [
        (["evaluate", toy, "--out", tmp_path / "e"], "give exactly one of --predictions FILE"),
        (["evaluate", tmp_path / "nope", "--predictions", good, "--out", tmp_path / "e"], "does not exist"),
        (["evaluate", toy, "--predictions", tmp_path / "x.txt", "--out", tmp_path / "e"], "unknown extension"),
        (["evaluate", toy, "--predictions", good, "--splits", "bogus", "--out", tmp_path / "e"], "split 'bogus'"),
        (["evaluate", toy, "--predictions", good, "--model-meta", "novalue", "--out", tmp_path / "e"], "KEY=VALUE"),
        (["evaluate", toy, "--predictions", good, "--tau", "2", "--out", tmp_path / "e"], "tau: must be in"),
        (["predict-oracle", toy, "--out", good], "already exists"),
        (["predict-oracle", toy, "--out", tmp_path / "q.parquet", "--loops", "3-1"], "option 'loops'"),
        (["predict-oracle", toy, "--out", tmp_path / "q.parquet", "--noise", "2"], "--noise"),
        (["report", tmp_path / "missing.json"], "does not exist"),
    ]
    for args, message in cases:
        r = run(*args)
        assert r.exit_code == 2, (args, r.output)
        assert "error:" in r.output and message in r.output, (args, r.output)
    bad = tmp_path / "bad.csv"
    bad.write_text("id,prediction\ntoy/test_id/000000000,<e_0>\nnot/an/id,x\n")
    r = run("evaluate", toy, "--predictions", bad, "--out", tmp_path / "e")
    assert r.exit_code == 2 and "not in dataset" in r.output and "'not/an/id'" in r.output
    assert run("evaluate", toy, "--predictions", good, "--out", tmp_path / "e", "--no-plots").exit_code == 0
    r = run("evaluate", toy, "--predictions", good, "--out", tmp_path / "e")
    assert r.exit_code == 2 and "--overwrite" in r.output
    assert run("evaluate", toy, "--predictions", good, "--out", tmp_path / "e", "--overwrite",
               "--no-plots").exit_code == 0


def test_khop_generate_oracle_evaluate(tmp_path):
    r = run("generate", "khop", "--num-entities", 40, "--num-relations", 4, "--out-degree", 4,
            "--structure", "permutation", "--train-hops", "2", "--test-hops", "3-4", "--train-per-hop", 200,
            "--valid-per-hop", 10, "--test-per-hop", 20, "--systematic-per-hop", 10, "--no-progress",
            "--out", tmp_path / "khop")
    assert r.exit_code == 0, r.output
    assert run("predict-oracle", tmp_path / "khop", "--out", tmp_path / "o.parquet", "--loops", "1-2").exit_code == 0
    r = run("evaluate", tmp_path / "khop", "--predictions", tmp_path / "o.parquet", "--out", tmp_path / "ev",
            "--no-plots")
    assert r.exit_code == 0, r.output
    res = json.loads((tmp_path / "ev" / "results.json").read_text())
    assert res["dataset"]["task"] == "khop"
    assert set(res["metrics"]["per_split"]) >= {"valid", "test_id", "test_depth"}
    assert all(e["accuracy"] == 1.0 for e in res["metrics"]["per_split"].values())
    de = res["metrics"]["depth_extrapolation"]
    assert de["extrapolated_depths"] == [3, 4] and de["depth_horizon"]["value"] == 4 and de["gap"]["value"] == 0.0
