"""Metrics on hand-built cells and crafted predictions with known answers."""

from __future__ import annotations

import pyarrow as pa
import pytest
from fixtures.toy import metric_cells, toy_dataset

from benchgen.errors import BenchgenError
from benchgen.evaluators import MetricSettings, evaluate, score
from benchgen.evaluators.metrics import (
    depth_extrapolation,
    halting,
    margins,
    oracle_best_loop,
    overthinking,
    per_split,
)

make_cells = metric_cells


EXTRAP = [("test_id", 1, None, 10, 10), ("test_id", 2, None, 10, 9),
          ("test_depth", 3, None, 10, 8), ("test_depth", 4, None, 20, 19), ("test_depth", 5, None, 10, 5)]


def test_depth_extrapolation_hand_computed():
    de = depth_extrapolation(make_cells(EXTRAP), MetricSettings(tau=0.9))
    assert de["available"] and de["loops"] is None
    assert de["id_depths"] == [1, 2] and de["extrapolated_depths"] == [3, 4, 5]
    assert [c["accuracy"] for c in de["curve"]] == [1.0, 0.9, 0.8, 0.95, 0.5]
    assert de["depth_horizon"]["value"] == 2  # depth 2 sits exactly at tau; depth 3 falls below
    assert de["mean_extrapolation_accuracy"]["value"] == pytest.approx(0.75)
    assert de["id_accuracy"]["value"] == pytest.approx(0.95)
    assert de["gap"]["value"] == pytest.approx(0.2)
    for key in ("mean_extrapolation_accuracy", "id_accuracy", "gap"):
        e = de[key]
        assert e["ci_low"] <= e["value"] <= e["ci_high"]
        assert e["ci_low"] < e["ci_high"]
    assert de["depth_horizon"]["ci_low"] in (None, 1, 2) and de["depth_horizon"]["ci_high"] in (2, 3, 4, 5)
    again = depth_extrapolation(make_cells(EXTRAP), MetricSettings(tau=0.9))
    assert again == de  # fixed seed: identical intervals
    other = depth_extrapolation(make_cells(EXTRAP), MetricSettings(tau=0.9, bootstrap_seed=7))
    assert other["gap"]["ci_low"] != de["gap"]["ci_low"] or other["gap"]["ci_high"] != de["gap"]["ci_high"]
    assert other["bootstrap"]["seed"] == 7
    none = depth_extrapolation(make_cells(EXTRAP), MetricSettings(tau=0.9, bootstrap=0))
    assert none["gap"]["ci_low"] is None and none["gap"]["value"] == pytest.approx(0.2)


def test_horizon_edges_and_pooling():
    assert depth_extrapolation(make_cells(EXTRAP), MetricSettings(tau=0.4))["depth_horizon"]["value"] == 5
    assert depth_extrapolation(make_cells(EXTRAP), MetricSettings(tau=1.0))["depth_horizon"]["value"] == 1
    first_fails = [("test_id", 1, None, 10, 1), ("test_depth", 2, None, 10, 10)]
    assert depth_extrapolation(make_cells(first_fails), MetricSettings())["depth_horizon"]["value"] is None
    # a depth present in both splits is pooled on the curve, but only test_depth counts as extrapolated
    both = [("test_id", 2, None, 10, 10), ("test_depth", 2, None, 10, 6), ("test_depth", 3, None, 10, 4)]
    de = depth_extrapolation(make_cells(both), MetricSettings())
    assert [c["accuracy"] for c in de["curve"]] == [0.8, 0.4]
    assert de["mean_extrapolation_accuracy"]["value"] == pytest.approx(0.5)
    missing = depth_extrapolation(make_cells(EXTRAP[:2]), MetricSettings())
    assert missing["available"] is False and "test_depth" in missing["reason"]


OVER = [0.2, 0.6, 0.9, 1.0, 0.95, 0.7, 0.5]  # best_loops = 4, peak 1.0, final 0.5, onset 6 (0.95 is not > delta below)
TIE = [0.5, 0.8, 0.8, 0.8, 0.8, 0.8, 0.8]


def test_overthinking_constructed_curve():
    rows = [("test_depth", 5, t + 1, 20, round(a * 20)) for t, a in enumerate(OVER)]
    rows += [("test_depth", 6, t + 1, 20, round(a * 20)) for t, a in enumerate(TIE)]
    ot = overthinking(make_cells(rows), MetricSettings(tau=0.9, delta=0.05))
    assert ot["available"] and ot["loops"] == [1, 2, 3, 4, 5, 6, 7]
    d5, d6 = ot["per_split"]["test_depth"]["depths"]
    assert (d5["depth"], d5["best_loops"], d5["peak"], d5["final"], d5["final_loops"]) == (5, 4, 1.0, 0.5, 7)
    assert d5["drop"] == pytest.approx(0.5)
    assert d5["onset"] == 6
    assert d5["loops_needed"] == 3  # 0.9 reaches tau exactly
    assert d5["accuracy_by_loops"] == pytest.approx(OVER)
    assert (d6["best_loops"], d6["drop"], d6["onset"], d6["loops_needed"]) == (2, 0.0, None, None)
    s = ot["per_split"]["test_depth"]
    assert s["max_drop"] == pytest.approx(0.5) and s["mean_drop"] == pytest.approx(0.25)
    assert s["depths_with_onset"] == [5]
    wide = overthinking(make_cells(rows), MetricSettings(tau=0.9, delta=0.35))
    assert wide["per_split"]["test_depth"]["depths"][0]["onset"] == 7  # 0.5 < 1.0 - 0.35, 0.7 is not
    assert overthinking(make_cells(EXTRAP), MetricSettings())["available"] is False


def test_per_split_with_loops_and_primary():
    rows = [("test_id", 2, 1, 10, 3), ("test_id", 2, 2, 10, 9), ("test_id", 2, 3, 10, 7)]
    ps = per_split(make_cells(rows), MetricSettings())
    e = ps["test_id"]
    assert (e["loops"], e["accuracy"], e["best_loops"], e["best_accuracy"]) == (3, 0.7, 2, 0.9)
    assert [b["accuracy"] for b in e["by_loops"]] == [0.3, 0.9, 0.7]
    assert per_split(make_cells(rows), MetricSettings(primary_loops=2))["test_id"]["accuracy"] == 0.9
    with pytest.raises(BenchgenError, match="primary_loops: 5 is not among"):
        per_split(make_cells(rows), MetricSettings(primary_loops=5))


@pytest.mark.parametrize("kw, message", [({"tau": 1.5}, "tau"), ({"delta": -0.1}, "delta"),
                                         ({"bootstrap": -1}, "bootstrap")])
def test_settings_validation(kw, message):
    with pytest.raises(BenchgenError, match=message):
        MetricSettings(**kw)


@pytest.fixture(scope="module")
def three(tmp_path_factory):
    return toy_dataset(tmp_path_factory.mktemp("h") / "three", {"test_id": [2, 2, 3]})


def halting_predictions():
    nan = float("nan")
    ids = [f"toy/test_id/{i:09d}" for i in range(3)]
    # (example, loops): kl_prev, entropy, correct
    spec = {
        0: [(nan, 0.1, False), (0.001, 1.0, True), (0.001, 1.0, False), (0.001, 1.0, False)],  # stops at 2
        1: [(nan, 0.1, False), (0.001, 5.0, False), (0.005, 2.0, False), (0.2, 1.0, True)],     # stops at 3
        2: [(nan, 0.1, False), (0.5, 1.0, False), (0.5, 1.0, False), (0.5, 1.0, True)],         # never: 4
    }
    rows = {"id": [], "prediction": [], "loops": [], "kl_prev": [], "entropy": [], "margin": []}
    for t in range(4):  # loop-major, as adapters emit
        for ex in range(3):
            kl, ent, ok = spec[ex][t]
            rows["id"].append(ids[ex])
            rows["prediction"].append(f"<e_{ex}>" if ok else "nope")
            rows["loops"].append(t + 1)
            rows["kl_prev"].append(kl)
            rows["entropy"].append(ent)
            rows["margin"].append(float(10 * ex + t))
    return pa.table(rows)


def test_halting_known_stop_points(three):
    s = score(three, halting_predictions())
    h = halting(s, MetricSettings())
    assert h["available"] and h["epsilon"] == 0.01 and h["entropy_threshold"] == 3.0
    e = h["per_split"]["test_id"]
    assert e["n"] == 3 and e["correct"] == 2 and e["accuracy"] == pytest.approx(2 / 3)
    assert e["mean_loops"] == pytest.approx(3.0)
    assert e["halted_early"] == pytest.approx(2 / 3)
    assert [(r["depth"], r["n"], r["accuracy"], r["mean_loops"]) for r in e["by_depth"]] == [
        (2, 2, 0.5, 2.5), (3, 1, 1.0, 4.0)]
    strict = halting(s, MetricSettings(halt_kl=0.0001))["per_split"]["test_id"]
    assert strict["mean_loops"] == 4.0 and strict["accuracy"] == pytest.approx(2 / 3)
    no_cols = score(three, halting_predictions().drop(["entropy"]))
    assert halting(no_cols, MetricSettings())["available"] is False


def test_oracle_best_loop_and_margins(three):
    s = score(three, halting_predictions())
    ob = oracle_best_loop(s)["per_split"]["test_id"]
    assert ob["accuracy"] == 1.0 and ob["n"] == 3
    mg = margins(s)
    assert mg["loops"] == [1, 2, 3, 4]
    d2, d3 = mg["per_split"]["test_id"]
    # depth 2 = examples 0 and 1: margins (0 + 10) / 2 + t; depth 3 = example 2: 20 + t
    assert d2["mean_margin"] == [5.0, 6.0, 7.0, 8.0] and d2["peak_loops"] == 4 and d2["n"] == [2, 2, 2, 2]
    assert d3["mean_margin"] == [20.0, 21.0, 22.0, 23.0]
    r = evaluate(three, halting_predictions())
    m = r.metrics
    assert m["per_split"]["test_id"]["accuracy"] == pytest.approx(2 / 3)  # at the largest loops, 4
    assert m["oracle_best_loop"]["per_split"]["test_id"]["accuracy"] == 1.0
    assert m["halting"]["per_split"]["test_id"]["mean_loops"] == 3.0
    single = evaluate(three, halting_predictions().filter(pa.compute.equal(halting_predictions()["loops"], 4)))
    for key in ("overthinking", "halting", "oracle_best_loop"):
        assert single.metrics[key]["available"] is False
    assert single.metrics["margins"]["available"] is True
