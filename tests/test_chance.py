"""One definition of chance, named the same everywhere, and intervals never degenerate where n > 0
(issue 22, item 5).

Chance is 1 / (distinct answers in the (split, depth) cell) in the manifest, the baselines summary,
the plots; the ``baseline:chance`` floor row is the guesser with exactly that expectation (uniform over
the cell's distinct answers). Recomputed here with Python sets per cell.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict

import pyarrow.parquet as pq
import pytest
from fixtures.tasks import khop

from benchgen.config import build_config
from benchgen.dataset import load
from benchgen.pipeline.baselines import run_baselines
from benchgen.tasks.baselines import CHANCE, COMMON

SMALL = {"structure": "permutation", "num_entities": 40, "num_relations": 4, "out_degree": 4,
         "ood_fraction": 0.1, "train_hops": "2,3", "test_hops": "4,5", "train_per_hop": 300,
         "valid_per_hop": 30, "test_per_hop": 150, "systematic_per_hop": 40, "seed": 11}


@pytest.fixture(scope="module")
def floors(tmp_path_factory):
    root = tmp_path_factory.mktemp("chance")
    cfg = build_config(khop.KhopConfig, khop.PRESETS, None, dict(SMALL))
    ds = load(khop.generate(cfg, root / "khop", progress=False))
    run_baselines(ds, root / "floors", bootstrap=200)
    return ds, root / "floors"


def _cells(ds) -> dict:
    """(split, depth) -> list of answers, read row by row (the independent route)."""
    cells = defaultdict(list)
    for split in ds.splits:
        if split != "train":
            for r in ds.table(split, columns=["depth", "answer"]).to_pylist():
                cells[(split, r["depth"])].append(r["answer"])
    return cells


def test_chance_is_one_number_everywhere(floors):
    ds, out = floors
    cells = _cells(ds)
    summary = json.loads((out / "summary.json").read_text())
    validity = ds.manifest["validity"]
    assert summary["chance"] == validity["chance"] == CHANCE
    assert "1 / (distinct answers)" in next(b.description for b in COMMON if b.name == "chance")
    for split, rows in summary["splits"].items():
        for e in rows:
            assert e["chance"] == pytest.approx(1 / len(set(cells[(split, e["depth"])])))
    for split, rows in validity["splits"].items():
        for e in rows:
            assert e["chance"] == pytest.approx(1 / len(set(cells[(split, e["depth"])])), abs=1e-6)


def test_chance_row_guesses_uniformly_over_the_cell_answers(floors):
    ds, out = floors
    cells = _cells(ds)
    ids = {r["id"]: (r["split"], r["depth"], r["answer"]) for s in ds.splits if s != "train"
           for r in ds.table(s, columns=["id", "split", "depth", "answer"]).to_pylist()}
    preds = pq.read_table(out / "chance" / "predictions.parquet").to_pylist()
    hits = expected = variance = 0.0
    for p in preds:
        split, depth, answer = ids[p["id"]]
        assert p["prediction"] in set(cells[(split, depth)])  # a guess among the cell's own answers
        k = len(set(cells[(split, depth)]))
        hits += p["prediction"] == answer
        expected += 1 / k
        variance += (1 / k) * (1 - 1 / k)
    assert abs(hits - expected) <= 4 * math.sqrt(variance), (hits, expected)  # its expectation is chance


def _intervals(node, path=""):
    """Every {value, ci_low, ci_high} (with its n where known) in a results.json tree."""
    if isinstance(node, dict):
        if "ci_low" in node and "ci_high" in node:
            yield path, node
        for k, v in node.items():
            yield from _intervals(v, f"{path}.{k}")
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _intervals(v, f"{path}[{i}]")


def test_no_floor_row_shows_a_degenerate_interval(floors):
    _, out = floors
    checked = 0
    for results in sorted(out.glob("*/results.json")):
        data = json.loads(results.read_text())
        for path, e in _intervals(data["metrics"]):
            if e.get("ci_low") is None or "horizon" in path or e.get("n") == 0:
                continue  # horizons are depths (an integer interval may be one depth)
            checked += 1
            assert e["ci_low"] < e["ci_high"], f"{results.parent.name}{path}: {e}"
            assert e["ci_low"] <= e.get("value", e.get("accuracy", e["ci_low"])) <= e["ci_high"] + 1e-12
        for c in data["cells"]:
            assert c["ci_low"] < c["ci_high"], (results.parent.name, c)
    assert checked > 50
    ext = json.loads((out / "bag_of_relations" / "results.json").read_text())["metrics"]["depth_extrapolation"]
    m = ext["mean_extrapolation_accuracy"]
    assert m["ci_high"] > m["ci_low"]  # the 0.0 [0.0, 0.0]
