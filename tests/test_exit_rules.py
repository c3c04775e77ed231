"""Exit rules and the compute-accuracy comparison (#20): each rule on a constructed per-loop table with
a known answer, the results.json numbers recomputed by a per-example loop, bad input, a plugin
rule, and the saturation fit."""

from __future__ import annotations

import json
import math

import numpy as np
import pyarrow as pa
import pytest
from click.testing import CliRunner
from fixtures.toy import metric_cells, toy_dataset

from benchgen import registry
from benchgen.cli import main
from benchgen.errors import BenchgenError
from benchgen.evaluators import MetricSettings, evaluate, write_predictions
from benchgen.evaluators.exit_rules import LoopTable, MissingColumn, get_rule, parse_spec, stop_index
from benchgen.evaluators.saturation import saturation

LOOPS = np.array([1, 2, 4, 8])
NAN = np.nan


def _table(present=None, answer=None, **cols) -> LoopTable:
    n = len(next(iter(cols.values()))) if cols else len(answer)
    pres = np.ones((n, 4), bool) if present is None else np.array(present)
    return LoopTable(loops=LOOPS, present=pres, correct=np.zeros((n, 4), bool),
                     columns={k: np.array(v, dtype=float) for k, v in cols.items()},
                     answer=None if answer is None else np.array(answer, dtype=np.uint64))


def _stops(spec: str, table: LoopTable) -> list[int]:
    rule, params = parse_spec(spec)
    return stop_index(table, np.asarray(rule.stop(table, params))).tolist()


@pytest.mark.parametrize("spec, table, expected", [
    # LTG: KL(p_T || p_prev) < 0.01 and entropy < 3 together; row 1 never (falls back to its last T)
    ("kl-entropy", _table(kl_prev=[[NAN, .5, .005, .001], [NAN, .002, .5, .5]],
                          entropy=[[4, 2.5, 2, .1], [4, 3.5, 2, 1]]), [2, 3]),
    ("kl", _table(kl_from_prev=[[.1, 1e-4, 0, 0], [.1, .1, 4e-4, 0]]), [1, 2]),
    ("minp-kl:eps=1e-3", _table(minp_kl=[[1e-2, 1e-4, 0, 0], [1, 1, 1, 1]]), [1, 3]),
    ("entropy", _table(entropy=[[1, .6, .4, .1], [.2, 1, 1, 1]]), [2, 0]),
    # |H_T - H_prev| < 1e-3; nothing before the first swept T
    ("entropy-diff", _table(entropy=[[5, 4.9995, 3, 2.9995], [0, 0, 0, 0]]), [1, 1]),
    ("latent-diff", _table(latent_diff=[[NAN, .5, .02, .01], [NAN, .5, .5, .5]]), [2, 3]),
    ("confidence:q=0.9", _table(confidence=[[.5, .95, .99, 1], [.5, .5, .5, .89]]), [1, 3]),
    # the answer unchanged over k consecutive loop-count changes (Huginn's argmax-stability)
    ("stable-argmax:k=2", _table(answer=[[1, 2, 2, 2], [1, 1, 2, 2]]), [3, 3]),
    ("stable-argmax:k=1", _table(answer=[[1, 2, 2, 2], [1, 1, 2, 2]]), [2, 1]),
    ("fixed:T=4", _table(entropy=[[0, 0, 0, 0], [0, 0, 0, 0]]), [2, 2]),
    # an example missing its last loop count falls back to its largest present T
    ("entropy", _table(present=[[1, 1, 1, 0], [1, 1, 1, 1]], entropy=[[9, 9, 9, NAN], [9, 9, 9, 9]]), [2, 3]),
])
def test_each_rule_on_a_constructed_table(spec, table, expected):
    assert _stops(spec, table) == expected


def test_a_rule_without_its_column_is_not_available():
    rule, params = parse_spec("latent-diff")
    with pytest.raises(MissingColumn):
        rule.stop(_table(entropy=[[1, 1, 1, 1]]), params)


@pytest.mark.parametrize("spec, message", [
    ("nope", r"--exit-rule nope: unknown rule \(expected one of"),
    ("kl:eps=nan", r"kl:eps=nan: expected a finite number >= 0"),
    ("kl:eps=-1", r"kl:eps=-1: expected a finite number >= 0"),
    ("stable-argmax:k=0", r"stable-argmax:k=0: expected an integer >= 1"),
    ("stable-argmax:k=1.5", r"k=1.5: expected an integer >= 1"),
    ("kl:h=1", r"expected kl:KEY=VALUE with KEY one of eps"),
])
def test_bad_rule_specs(spec, message):
    with pytest.raises(BenchgenError, match=message):
        parse_spec(spec)


# --- compute-accuracy numbers, recomputed by a per-example loop -----------------------------------
SWEEP = [1, 2, 3, 5]


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """A toy dataset (two splits, two depths each) and a predictions file at loops 1,2,3,5 with random
    statistics and answers that settle with T."""
    root = tmp_path_factory.mktemp("rules")
    ds = toy_dataset(root / "toy", {"test_id": [1, 2] * 15, "test_depth": [3, 4] * 15})
    rng = np.random.default_rng(7)
    from benchgen.dataset import load

    rows = [r for s in ("test_id", "test_depth") for r in load(ds).table(s).to_pylist()]
    recs = []
    for r in rows:
        settle = rng.integers(1, 6)
        for t in SWEEP:
            good = t >= settle and rng.random() < 0.9
            recs.append({"id": r["id"], "loops": t, "prediction": r["answer"] if good else f"<e_{t % 3}>",
                         "entropy": float(rng.random() * 2), "kl_from_prev": float(rng.random() * 0.3),
                         "kl_prev": None if t == 1 else float(rng.random() * 0.05), "margin": float(rng.normal())})
    preds = root / "preds.parquet"
    write_predictions(pa.Table.from_pylist(recs), preds)
    return ds, preds, rows, recs


def _independent(rows, recs, accept) -> dict:
    """Per split and (split, depth): n, correct, mean loops, loops histogram, by walking each example."""
    by_id: dict = {}
    for p in recs:
        by_id.setdefault(p["id"], []).append(p)
    out: dict = {}
    for r in rows:
        seq = sorted(by_id[r["id"]], key=lambda p: p["loops"])
        chosen = next((p for i, p in enumerate(seq) if accept(seq, i)), seq[-1])
        for key in (r["split"], (r["split"], r["depth"])):
            e = out.setdefault(key, {"n": 0, "correct": 0, "loops": 0, "hist": [0] * len(SWEEP)})
            e["n"] += 1
            e["correct"] += chosen["prediction"] == r["answer"]
            e["loops"] += chosen["loops"]
            e["hist"][SWEEP.index(chosen["loops"])] += 1
    return out


def _wilson(c: int, n: int) -> tuple[float, float]:
    z, p = 1.959963984540054, c / n
    mid, half = (p + z * z / (2 * n)), z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return (mid - half) / (1 + z * z / n), (mid + half) / (1 + z * z / n)


ACCEPT = {
    "kl:eps=0.1": lambda s, i: s[i]["kl_from_prev"] < 0.1,
    "entropy-diff:delta=0.3": lambda s, i: i > 0 and abs(s[i]["entropy"] - s[i - 1]["entropy"]) < 0.3,
    "stable-argmax:k=1": lambda s, i: i > 0 and s[i]["prediction"] == s[i - 1]["prediction"],
    "kl-entropy:eps=0.02,h=1": lambda s, i: s[i]["kl_prev"] is not None and s[i]["kl_prev"] < 0.02
    and s[i]["entropy"] < 1,
    "fixed:T=3": lambda s, i: s[i]["loops"] == 3,
}


def test_compute_accuracy_numbers_recomputed_independently(sweep):
    ds, preds, rows, recs = sweep
    res = evaluate(ds, preds, settings=MetricSettings(exit_rules=tuple(ACCEPT), bootstrap=0))
    er = res.metrics["exit_rules"]
    assert er["available"] and er["loops"] == SWEEP
    for spec, rule in zip(ACCEPT, er["rules"]):
        chosen = [p for p in rule["points"] if p["chosen"]]
        assert len(chosen) == 1, spec
        want = _independent(rows, recs, ACCEPT[spec])
        for split, e in chosen[0]["per_split"].items():
            w = want[split]
            assert (e["n"], e["correct"], e["loops_hist"]) == (w["n"], w["correct"], w["hist"]), spec
            assert e["mean_loops"] == pytest.approx(w["loops"] / w["n"])
            assert (e["ci_low"], e["ci_high"]) == pytest.approx(_wilson(w["correct"], w["n"]))
            for d in e["by_depth"]:
                wd = want[(split, d["depth"])]
                assert (d["n"], d["correct"], d["loops_hist"]) == (wd["n"], wd["correct"], wd["hist"]), spec
    # the oracle: correct if correct at some T, at its first correct T (else the smallest T)
    answers = {r["id"]: r["answer"] for r in rows}
    for split, e in er["oracle"]["per_split"].items():
        first = [min((p["loops"] for p in recs if p["id"] == r["id"] and p["prediction"] == answers[r["id"]]),
                     default=None) for r in rows if r["split"] == split]
        assert e["correct"] == sum(f is not None for f in first)
        assert e["mean_loops"] == pytest.approx(np.mean([SWEEP[0] if f is None else f for f in first]))


def test_threshold_sweep_is_ordered_and_the_fixed_points_are_the_cells(sweep):
    ds, preds, _, _ = sweep
    res = evaluate(ds, preds, settings=MetricSettings(bootstrap=0))
    rules = {r["rule"]: r for r in res.metrics["exit_rules"]["rules"]}
    assert set(rules) >= {"kl-entropy", "kl", "minp-kl", "entropy", "entropy-diff", "latent-diff", "stable-argmax",
                          "confidence", "fixed"}
    assert not rules["latent-diff"]["available"] and "latent_diff" in rules["latent-diff"]["reason"]
    kl = [p["params"]["eps"] for p in rules["kl"]["points"]]
    assert kl == sorted(kl) and 5e-4 in kl
    cells = json.loads(res.dumps())["cells"]
    for p in rules["fixed"]["points"]:
        for split, e in p["per_split"].items():
            T = p["params"]["T"]
            got = sum(c["correct"] for c in cells if c["split"] == split and c["loops"] == T)
            assert e["correct"] == got and e["mean_loops"] == T


@pytest.mark.parametrize("args, message", [
    (["--exit-rule", "nope"], r"unknown rule"),
    (["--exit-rule", "kl:eps=nan"], r"expected a finite number >= 0"),
    (["--exit-rule", "entropy:h=-0.5"], r"expected a finite number >= 0"),
    (["--exit-rule", "stable-argmax:k=0"], r"expected an integer >= 1"),
    (["--exit-rule", "fixed:T=4"], r"T is not among the swept loops \[1, 2, 3, 5\]"),
])
def test_bad_exit_rules_via_cli_write_nothing(sweep, tmp_path, args, message):
    import re

    ds, preds, _, _ = sweep
    r = CliRunner().invoke(main, ["evaluate", str(ds), "--predictions", str(preds), *args, "--out", str(tmp_path / "o")])
    assert r.exit_code == 2 and len(r.output.strip().splitlines()) == 1, r.output
    assert r.output.startswith("error: ") and re.search(message, r.output), r.output
    assert not (tmp_path / "o").exists()


def test_exit_rule_without_a_loop_sweep_is_refused(sweep, tmp_path):
    ds, preds, _, _ = sweep
    from benchgen.evaluators import read_predictions

    single = tmp_path / "single.parquet"
    t = read_predictions(preds)
    write_predictions(t.filter(pa.compute.equal(t["loops"], 1)).drop_columns(["loops"]), single)
    r = CliRunner().invoke(main, ["evaluate", str(ds), "--predictions", str(single), "--exit-rule", "kl",
                                  "--out", str(tmp_path / "a")])
    assert r.exit_code == 2 and "needs predictions at two or more loop counts" in r.output, r.output
    r = CliRunner().invoke(main, ["evaluate", str(ds), "--model", "python:x.py:f", "--loops", "3", "--exit-rule", "kl",
                                  "--out", str(tmp_path / "b")])
    assert r.exit_code == 2 and "--exit-rule: needs a loop sweep" in r.output, r.output
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_a_plugin_rule_through_entry_points(sweep, tmp_path, monkeypatch):
    ds, preds, rows, recs = sweep
    real = registry._group

    def group(name):
        builtin, plugins = real(name)
        if name == registry.EXIT_RULE_GROUP:
            plugins = {**plugins, "margin-above": "fixtures.exit_rule_plugin:RULE"}
        return builtin, plugins

    monkeypatch.setattr(registry, "_group", group)
    assert get_rule("margin-above").name == "margin-above"
    out = tmp_path / "plug"
    r = CliRunner().invoke(main, ["evaluate", str(ds), "--predictions", str(preds), "--exit-rule", "margin-above:m=0.5",
                                  "--no-plots", "--out", str(out)])
    assert r.exit_code == 0, r.output
    rule = json.loads((out / "results.json").read_text())["metrics"]["exit_rules"]["rules"][0]
    chosen = next(p for p in rule["points"] if p["chosen"])
    want = _independent(rows, recs, lambda s, i: s[i]["margin"] > 0.5)
    assert chosen["per_split"]["test_depth"]["correct"] == want["test_depth"]["correct"]


# --- saturation -------------------------------------------------------------------------------------
def test_saturation_fit_recovers_a_known_curve_and_refuses_flat_ones():
    T = np.arange(1, 13)
    a, b, tau = 0.9, 0.8, 2.5
    n = 1_000_000
    rising = [("test_depth", 7, int(t), n, round(n * (a - b * math.exp(-t / tau)))) for t in T]
    flat = [("test_depth", 8, int(t), n, n // 2) for t in T]
    overthink = [("test_id", 3, int(t), 1000, [300, 600, 800, 900, 850, 700][i]) for i, t in enumerate(T[:6])]
    sat = saturation(metric_cells(rising + flat + overthink), None, delta=0.05, bootstrap=0, seed=0)
    d7, d8 = sat["per_split"]["test_depth"]
    assert d7["fit"]["a"] == pytest.approx(a, abs=2e-3) and d7["fit"]["tau"] == pytest.approx(tau, rel=0.02)
    assert d7["fit"]["rmse"] < 1e-3 and d7["fit"]["points"] == 12
    assert d8["fit"] is None and "does not rise" in d8["reason"]
    d3 = sat["per_split"]["test_id"][0]
    assert d3["peak_loops"] == 4 and d3["fit"]["points"] == 4
    assert d3["drop"]["value"] == pytest.approx(0.9 - 0.7)


def test_saturation_drop_has_a_paired_bootstrap_interval(sweep):
    ds, preds, _, _ = sweep
    sat = evaluate(ds, preds, settings=MetricSettings(bootstrap=200)).metrics["saturation"]
    for rows in sat["per_split"].values():
        for d in rows:
            lo, hi = d["drop"]["ci_low"], d["drop"]["ci_high"]
            assert lo is not None and lo - 1e-9 <= d["drop"]["value"] <= hi + 1e-9
