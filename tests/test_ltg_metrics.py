"""LTG's metrics on hand-built predictions and cells: t_first, depth learned vs depth reached, regime."""

from __future__ import annotations

import pyarrow as pa
import pytest
from fixtures.toy import metric_cells, toy_dataset

from benchgen.evaluators import MetricSettings, evaluate, score
from benchgen.evaluators.metrics import depth_reach, overthinking, t_first

make_cells = metric_cells


@pytest.fixture(scope="module")
def four(tmp_path_factory):
    return toy_dataset(tmp_path_factory.mktemp("t") / "four", {"test_id": [2, 2, 2, 3], "test_depth": [5, 5]})


# correct[example][t-1] for t = 1..4; ids toy/<split>/<i>
CORRECT = {("test_id", 0): [0, 1, 1, 1],   # first correct at 2
           ("test_id", 1): [0, 0, 0, 1],   # first at 4
           ("test_id", 2): [0, 0, 0, 0],   # never
           ("test_id", 3): [1, 0, 1, 0],   # first at 1 (later forgets)
           ("test_depth", 0): [0, 0, 1, 1],  # first at 3
           ("test_depth", 1): [0, 0, 0, 0]}  # never


def predictions() -> pa.Table:
    rows = {"id": [], "prediction": [], "loops": []}
    for (split, i), flags in CORRECT.items():
        for t, ok in enumerate(flags, start=1):
            rows["id"].append(f"toy/{split}/{i:09d}")
            rows["prediction"].append(f"<e_{i}>" if ok else "wrong")
            rows["loops"].append(t)
    return pa.table(rows)


def test_t_first_known_values(four):
    tf = t_first(score(four, predictions()))
    assert tf["available"] and tf["loops"] == [1, 2, 3, 4]
    d2, d3 = tf["per_split"]["test_id"]
    assert (d2["depth"], d2["n"]) == (2, 3)
    assert d2["t_first"] == pytest.approx((2 + 4) / 2) and d2["never_correct"] == pytest.approx(1 / 3)
    assert (d3["depth"], d3["t_first"], d3["never_correct"]) == (3, 1.0, 0.0)
    (d5,) = tf["per_split"]["test_depth"]
    assert (d5["depth"], d5["n"], d5["t_first"], d5["never_correct"]) == (5, 2, 3.0, 0.5)
    one_loop = predictions().filter(pa.compute.equal(pa.compute.field("loops"), 3))
    assert t_first(score(four, one_loop))["available"] is False


def test_t_first_in_results_and_regime(four):
    res = evaluate(four, predictions(), settings=MetricSettings(trained_loops=2, loop_sampling="fixed"))
    assert res.metrics["t_first"]["per_split"]["test_depth"][0]["t_first"] == 3.0
    ot = res.metrics["overthinking"]
    assert ot["trained_loops"] == 2 and "train/test mismatch" in ot["regime"]
    assert "best_loops" in ot["per_split"]["test_id"]["depths"][0]
    sampled = overthinking(res.cells, MetricSettings(trained_loops=9, loop_sampling="sampled"))
    assert "sampled" in sampled["regime"]


# accuracy by (depth, loops) on the pooled curve; trained T = 4
GRID = {2: [0.5, 1.0, 1.0, 1.0, 1.0, 1.0],
        3: [0.0, 0.6, 1.0, 0.95, 0.95, 0.9],
        4: [0.0, 0.0, 0.5, 0.9, 1.0, 0.95],   # at trained T=4 exactly tau
        5: [0.0, 0.0, 0.0, 0.4, 0.9, 0.95],   # below tau at T=4, reached at T=6
        6: [0.0, 0.0, 0.0, 0.1, 0.5, 0.7],    # never reaches tau: reached horizon is 5
        7: [0.0, 0.0, 0.0, 0.0, 0.9, 0.9]}    # >= tau again, beyond the horizon


def test_depth_learned_and_reached_hand_built():
    rows = [("test_id" if d <= 3 else "test_depth", d, t + 1, 20, round(a * 20))
            for d, accs in GRID.items() for t, a in enumerate(accs)]
    dr = depth_reach(make_cells(rows), MetricSettings(tau=0.9, trained_loops=4))
    assert dr["available"] and dr["trained_loops"] == 4
    assert dr["depth_learned"] == 4 and dr["depth_reached"] == 5
    assert dr["deepest_at_trained_loops"] == 4 and dr["deepest_at_best_loops"] == 7
    per = {r["depth"]: r for r in dr["per_depth"]}
    assert per[5]["best_loops"] == 6 and per[5]["accuracy_at_best"] == pytest.approx(0.95)
    assert per[5]["accuracy_at_trained"] == pytest.approx(0.4)
    assert per[3]["best_loops"] == 3  # smallest T on ties
    assert per[6]["ci_low_at_best"] <= 0.7 <= per[6]["ci_high_at_best"]
    # the trained T defaults to the primary (largest) loops; an unswept trained T is reported, not guessed
    assert depth_reach(make_cells(rows), MetricSettings(tau=0.9))["depth_learned"] == 5
    assert depth_reach(make_cells(rows), MetricSettings(trained_loops=9))["available"] is False
    single = [("test_depth", 5, 4, 20, 10)]
    assert depth_reach(make_cells(single), MetricSettings())["available"] is False
