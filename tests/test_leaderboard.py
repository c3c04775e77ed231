"""Leaderboard: ordering, intervals, overthinking drop, baselines, formats, fingerprint refusal.

Results are produced by the real evaluator from crafted predictions; every expected number is
recomputed here from the dataset rows.
"""

from __future__ import annotations

import base64
import csv
import json
import re

import numpy as np
import pyarrow as pa
import pytest
from click.testing import CliRunner
from fixtures.tasks import khop

from benchgen.cli import main
from benchgen.config import build_config
from benchgen.dataset import load
from benchgen.errors import BenchgenError
from benchgen.evaluators import MetricSettings, evaluate
from benchgen.evaluators.report.leaderboard import leaderboard, load_rows
from benchgen.evaluators.results import Results

TINY = {"structure": "permutation", "num_entities": 16, "num_relations": 4, "out_degree": 4,
        "ood_fraction": 0.2, "train_hops": "2", "test_hops": "3,4", "train_per_hop": 60,
        "valid_per_hop": 6, "test_per_hop": 12, "systematic_per_hop": 12, "seed": 11}
FAST = MetricSettings(bootstrap=200)


def _rows(ds):
    return [r for s in ds.splits if s != "train" for r in ds.table(s).to_pylist()]


def _num(r) -> int:
    return int(r["id"][-9:])


# model -> (loops -> rule deciding whether row r is answered right)
MODELS = {
    "perfect": {None: lambda r: True},
    "half": {None: lambda r: _num(r) % 2 == 0},
    "zero": {None: lambda r: False},
    "overthinker": {1: lambda r: True, 2: lambda r: True, 3: lambda r: _num(r) % 4 != 0},
}


def _predictions(rows, rules) -> pa.Table:
    ids, preds, loops = [], [], []
    for t, ok in rules.items():
        for r in rows:
            ids.append(r["id"])
            preds.append(r["answer"] if ok(r) else "<wrong>")
            loops.append(t)
    return pa.table({"id": ids, "prediction": preds, "loops": pa.array(loops, pa.int32())})


@pytest.fixture(scope="module")
def board(tmp_path_factory):
    root = tmp_path_factory.mktemp("board")
    cfg = build_config(khop.KhopConfig, khop.PRESETS, None, dict(TINY))
    ds = load(khop.generate(cfg, root / "khop", progress=False))
    rows = _rows(ds)
    files = {}
    for name, rules in MODELS.items():
        meta = {"spec": "reference:runs/x"} if name == "overthinker" else {}
        res = evaluate(ds, _predictions(rows, rules), settings=FAST, model_name=name, model_metadata=meta)
        files[name] = res.save(root / name / "results.json")
    other_cfg = build_config(khop.KhopConfig, khop.PRESETS, None, {**TINY, "seed": 12})
    other = load(khop.generate(other_cfg, root / "other", progress=False))
    files["other"] = evaluate(other, _predictions(_rows(other), {None: lambda r: True}), settings=FAST,
                              model_name="other").save(root / "other-res" / "results.json")
    return ds, rows, files, root


def _acc(rows, split, ok):
    sel = [r for r in rows if r["split"] == split]
    return sum(ok(r) for r in sel) / len(sel)


def _expected(rows, rules):
    """(mean of ID/systematic/extrapolation accuracy at the largest loops, overthinking drop)."""
    final = rules[max(rules, key=lambda t: -1 if t is None else t)]
    ext = [d for d in sorted({r["depth"] for r in rows if r["split"] == "test_depth"})]
    ext_acc = np.mean([_acc([r for r in rows if r["depth"] == d], "test_depth", final) for d in ext])
    mean = np.mean([_acc(rows, "test_id", final), _acc(rows, "test_systematic", final), ext_acc])
    drop = None
    if len(rules) > 1:
        drops = []
        for split in ("test_id", "test_systematic", "test_depth"):
            for d in sorted({r["depth"] for r in rows if r["split"] == split}):
                cell = [r for r in rows if r["split"] == split and r["depth"] == d]
                accs = [np.mean([ok(r) for r in cell]) for ok in rules.values()]
                drops.append(max(accs) - accs[-1])
        drop = float(np.mean(drops))
    return mean, drop


def test_ordering_values_and_baselines(board, tmp_path):
    ds, rows, files, _ = board
    out = [tmp_path / "b.md", tmp_path / "b.csv", tmp_path / "b.html"]
    res = CliRunner().invoke(main, ["leaderboard", *[str(files[m]) for m in ("zero", "half", "overthinker")],
                                    "--baseline", str(files["perfect"].parent),
                                    *[a for o in out for a in ("--out", str(o))]])
    assert res.exit_code == 0, res.output
    expected = {m: _expected(rows, rules) for m, rules in MODELS.items()}
    order = sorted(MODELS, key=lambda m: (-expected[m][0], m))
    with open(tmp_path / "b.csv", newline="") as f:
        table = list(csv.DictReader(f))
    assert [r["model"] for r in table] == order
    assert [int(r["rank"]) for r in table] == [1, 2, 3, 4]
    by = {r["model"]: r for r in table}
    for m in MODELS:
        mean, drop = expected[m]
        final = MODELS[m][max(MODELS[m], key=lambda t: -1 if t is None else t)]
        assert float(by[m]["id"]) == pytest.approx(_acc(rows, "test_id", final))
        assert float(by[m]["systematic"]) == pytest.approx(_acc(rows, "test_systematic", final))
        eps = 1e-12  # Wilson bounds carry float rounding at 0 and 1
        assert float(by[m]["id_ci_low"]) - eps <= float(by[m]["id"]) <= float(by[m]["id_ci_high"]) + eps
        assert float(by[m]["id_ci_high"]) - float(by[m]["id_ci_low"]) > 0.05  # a real interval
        if drop is None:
            assert by[m]["overthinking_drop"] == ""
        else:
            assert float(by[m]["overthinking_drop"]) == pytest.approx(drop)
            assert drop > 0
    # baselines: only those passed with --baseline; a reference:... model ("overthinker") is a model
    assert {m for m, r in by.items() if r["baseline"] == "1"} == {"perfect"}
    assert by["perfect"]["depth_horizon"] == str(max(r["depth"] for r in rows))
    md = (tmp_path / "b.md").read_text()
    md_rows = [line for line in md.splitlines() if re.match(r"\| \d+ \|", line)]
    assert [line.split("|")[2].strip().replace(" (baseline)", "") for line in md_rows] == order
    assert "[" in md_rows[0]  # intervals are shown
    html = (tmp_path / "b.html").read_text()
    assert html.count('<tr class="') == 4 and "<script>" in html and "addEventListener('click'" in html
    png = base64.b64decode(re.search(r'src="data:image/png;base64,([^"]+)"', html).group(1))
    assert png.startswith(b"\x89PNG")
    assert [m for m in re.findall(r'<td data-sort="[^"]*">([^<]+)</td>', html) if m.split(" (")[0] in MODELS][:4] \
        == [m + (" (baseline)" if m == "perfect" else "") for m in order]


def test_sort_keys(board, tmp_path):
    _, rows, files, _ = board
    paths = [files[m] for m in MODELS]
    ranked = leaderboard(paths, [tmp_path / "d.csv"], sort="drop")
    assert ranked[0].model == "overthinker"  # the only model with a sweep; others have no drop
    ranked = leaderboard(paths, [tmp_path / "s.md"], sort="systematic")
    accs = [r.systematic["value"] for r in ranked]
    assert accs == sorted(accs, reverse=True)
    with pytest.raises(BenchgenError, match=r"--sort 'speed'"):
        leaderboard(paths, [tmp_path / "x.md"], sort="speed")


def test_refuses_mixed_fingerprints(board, tmp_path):
    _, _, files, _ = board
    res = CliRunner().invoke(main, ["leaderboard", str(files["half"]), str(files["other"]),
                                    "--out", str(tmp_path / "b.md")])
    assert res.exit_code == 2
    assert "different datasets (fingerprints differ)" in res.output
    assert str(files["half"]) in res.output and str(files["other"]) in res.output
    assert not (tmp_path / "b.md").exists()


def test_bad_inputs(board, tmp_path):
    _, _, files, _ = board
    with pytest.raises(BenchgenError, match=r"unknown format '.pdf'"):
        leaderboard([files["half"]], [tmp_path / "b.pdf"])
    with pytest.raises(BenchgenError, match=r"no results files given"):
        load_rows([])
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"hello": 1}))
    with pytest.raises(BenchgenError, match=r"bad.json: missing key 'schema_version'"):
        leaderboard([files["half"], bad], [tmp_path / "b.md"])
    with pytest.raises(BenchgenError, match=r"does not exist"):
        leaderboard([tmp_path / "missing.json"], [tmp_path / "b.md"])


def test_reference_model_run_is_a_model_row(board, tmp_path):
    """A real reference-model run, evaluated through --model reference:RUN, is a model like any other (issue 22,
    item 4): not labelled baseline, not shaded like the floors; floors are `benchgen baselines` rows."""
    ds, _, files, root = board
    run = CliRunner().invoke(main, ["train", "--data", str(ds.path), "--preset", "cpu-khop-looped", "--steps", "2",
                                    "--out", str(tmp_path / "run"), "--no-progress", "--device", "cpu"])
    assert run.exit_code == 0, run.output
    ev = CliRunner().invoke(main, ["evaluate", str(ds.path), "--model", f"reference:{tmp_path / 'run'}",
                                   "--loops", "1,2", "--no-progress", "--no-plots", "--bootstrap", "50",
                                   "--out", str(tmp_path / "ev")])
    assert ev.exit_code == 0, ev.output
    rows = leaderboard([files["half"], tmp_path / "ev"], [tmp_path / "b.csv"])
    ref = [r for r in rows if r.source == str(tmp_path / "ev")]
    assert len(ref) == 1 and not ref[0].baseline and not ref[0].floor and ref[0].loops == 2
    assert ref[0].drop is not None
    assert not [r for r in rows if r.model == "half"][0].baseline
    from benchgen.pipeline.baselines import run_baselines

    run_baselines(ds, tmp_path / "floors", only=["majority"], bootstrap=20)
    res = CliRunner().invoke(main, ["leaderboard", str(files["half"]), str(tmp_path / "ev"), str(tmp_path / "floors"),
                                    "--out", str(tmp_path / "b.html"), "--out", str(tmp_path / "b.md")])
    assert res.exit_code == 0, res.output
    name = ref[0].model
    assert f"{name} (baseline)" not in res.output and "baseline:majority (floor)" in res.output
    html = (tmp_path / "b.html").read_text()
    classes = dict((m.split(" (")[0], c) for c, m in re.findall(r'<tr class="(\w+)"><td[^>]*>\d+</td><td[^>]*>([^<]+)<', html))
    assert classes == {name: "model", "half": "model", "baseline:majority": "floor"}, classes
    assert "| baseline:majority (floor) |" in (tmp_path / "b.md").read_text()


# --- coverage, primary loops, floor rows (issue #15) -------------------------------------------------
def test_partial_coverage_is_refused_unless_allowed(board, tmp_path):
    ds, rows, files, _ = board
    deep = max(r["depth"] for r in rows if r["split"] == "test_depth")
    kept = [r for r in rows if not (r["split"] == "test_depth" and r["depth"] == deep)]
    part = evaluate(ds, _predictions(kept, {None: lambda r: True}), allow_missing=True, settings=FAST,
                    model_name="partial").save(tmp_path / "partial" / "results.json")
    n_depth = sum(r["split"] == "test_depth" for r in rows)
    n_kept = sum(r["split"] == "test_depth" for r in kept)
    with pytest.raises(BenchgenError, match=rf"partial coverage — .*partial.*test_depth {n_kept}/{n_depth}"):
        leaderboard([files["half"], part], [tmp_path / "b.md"])
    res = CliRunner().invoke(main, ["leaderboard", str(files["half"]), str(part), "--out", str(tmp_path / "b.md")])
    assert res.exit_code == 2 and "--allow-partial" in res.output and not (tmp_path / "b.md").exists()
    ranked = leaderboard([files["half"], part], [tmp_path / "b.md", tmp_path / "b.csv"], allow_partial=True)
    by = {r.model: r for r in ranked}
    assert by["partial"].partial and not by["half"].partial
    assert by["partial"].coverage["test_depth"] == [n_kept, n_depth]
    n_id, n_sys = (sum(r["split"] == s for r in rows) for s in ("test_id", "test_systematic"))
    assert by["half"].coverage == {"test_id": [n_id, n_id], "test_systematic": [n_sys, n_sys],
                                   "test_depth": [n_depth, n_depth]}
    md = (tmp_path / "b.md").read_text()
    assert "partial (partial)" in md and f"test_depth {n_kept}/{n_depth}" in md
    with open(tmp_path / "b.csv", newline="") as f:
        assert {r["model"]: r["partial"] for r in csv.DictReader(f)} == {"partial": "1", "half": "0"}


@pytest.mark.parametrize("trained,loops,source", [(2, 2, "trained"), (None, 3, "largest swept"),
                                                  (5, 3, "largest swept")])
def test_primary_loops_is_the_trained_count_when_known(board, tmp_path, trained, loops, source):
    ds, rows, _, _ = board
    rules = {1: lambda r: False, 2: lambda r: True, 3: lambda r: _num(r) % 2 == 0}
    meta = {} if trained is None else {"trained_loops": trained}
    path = evaluate(ds, _predictions(rows, rules), settings=FAST, model_name="m",
                    model_metadata=meta).save(tmp_path / "m" / "results.json")
    (row,) = leaderboard([path], [tmp_path / "b.md"])
    assert (row.loops, row.loops_source) == (loops, source)
    assert row.id["value"] == pytest.approx(_acc(rows, "test_id", rules[loops]))
    assert row.systematic["value"] == pytest.approx(_acc(rows, "test_systematic", rules[loops]))
    assert f"| {loops} ({source}) |" in (tmp_path / "b.md").read_text()


def test_floor_rows_and_reference_lines(board, tmp_path):
    from benchgen.evaluators.report.plots import reference_lines
    from benchgen.pipeline.baselines import run_baselines

    ds, _, files, _ = board
    run_baselines(ds, tmp_path / "floors", only=["majority", "first_hop", "chance"], bootstrap=20)
    res = CliRunner().invoke(main, ["leaderboard", str(files["half"]), str(tmp_path / "floors"),
                                    "--out", str(tmp_path / "b.html"), "--out", str(tmp_path / "b.md")])
    assert res.exit_code == 0, res.output
    assert "baseline:majority (floor)" in res.output and "baseline:first_hop (floor)" in res.output
    assert "| baseline:chance (floor) |" in (tmp_path / "b.md").read_text()
    lines = reference_lines(Results.from_json(files["half"]).dataset)
    cells = {e["depth"]: e for s in ("test_id", "test_depth") for e in ds.manifest["validity"]["splits"][s]}
    assert lines == {d: {"chance": e["chance"], "best": e["best"]["accuracy"], "baseline": e["best"]["baseline"]}
                     for d, e in cells.items()}
    assert 'src="data:image/png;base64,' in (tmp_path / "b.html").read_text()
