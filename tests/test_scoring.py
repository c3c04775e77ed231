"""Scoring: hand-computed cells, normalisation, token ids, join fast paths, validation against the dataset."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from fixtures.toy import toy_dataset
from hypothesis import given, settings
from hypothesis import strategies as st

from benchgen.errors import BenchgenError
from benchgen.evaluators import Normalization, cells, evaluate, oracle_predictions, score
from benchgen.evaluators.scoring.score import join_ids, wilson

SPEC = {"train": [1, 1, 2], "test_id": [1, 1, 2, 2, 2], "test_depth": [3, 3, 3, 3]}


@pytest.fixture(scope="module")
def ds(tmp_path_factory):
    return toy_dataset(tmp_path_factory.mktemp("d") / "toy", SPEC)


def ids(split, rows):
    return [f"toy/{split}/{i:09d}" for i in rows]


def answers(rows):
    return [f"<e_{i % 10}>" for i in rows]


def test_hand_computed_cells(ds):
    # test_id: depth 1 rows 0,1 -> 1 right of 2; depth 2 rows 2,3,4 -> 3 right of 3
    # test_depth: depth 3 rows 0..3 -> 0 right at loops 1, 3 right at loops 2
    preds = {"id": [], "prediction": [], "loops": []}
    for T in (1, 2):
        p_id = answers(range(5))
        p_id[1] = "<e_9>"
        p_depth = answers(range(4)) if T == 2 else ["wrong"] * 4
        if T == 2:
            p_depth[0] = "<e_5>"
        preds["id"] += ids("test_id", range(5)) + ids("test_depth", range(4))
        preds["prediction"] += p_id + p_depth
        preds["loops"] += [T] * 9
    c = cells(score(ds, pa.table(preds)))
    got = {(r.split, r.depth, int(r.loops)): (r.n, r.correct) for r in c.itertuples()}
    assert got == {("test_id", 1, 1): (2, 1), ("test_id", 2, 1): (3, 3), ("test_depth", 3, 1): (4, 0),
                   ("test_id", 1, 2): (2, 1), ("test_id", 2, 2): (3, 3), ("test_depth", 3, 2): (4, 3)}
    assert list(c["split"].unique()) == ["test_id", "test_depth"]  # dataset order, train not scored
    row = c[(c.split == "test_depth") & (c.loops == 2)].iloc[0]
    assert row.accuracy == 0.75
    assert row.ci_low < 0.75 < row.ci_high


def test_wilson_known_values():
    lo, hi = wilson(np.array([0, 5, 10]), np.array([10, 10, 10]))
    np.testing.assert_allclose(lo, [0.0, 0.2366, 0.7225], atol=1e-4)
    np.testing.assert_allclose(hi, [0.2775, 0.7634, 1.0], atol=1e-4)


def test_normalisation_is_explicit(ds):
    p = {"id": ids("test_id", range(5)), "prediction": [" <e_0>\n", "<E_1>", "<e_2>", "x", "<e_4> "]}
    r = evaluate(ds, pa.table(p))
    assert r.metrics["per_split"]["test_id"]["correct"] == 3  # stripped rows 0, 2 and 4
    assert r.normalization == {"strip": True, "casefold": False, "compared": "answer text"}
    r2 = evaluate(ds, pa.table(p), normalization=Normalization(casefold=True))
    assert r2.metrics["per_split"]["test_id"]["correct"] == 4
    assert r2.normalization["casefold"] is True
    r3 = evaluate(ds, pa.table(p), normalization=Normalization(strip=False))
    assert r3.metrics["per_split"]["test_id"]["correct"] == 1


def test_token_id_predictions(tmp_path):
    d = toy_dataset(tmp_path / "tok", {"test_id": [1, 1, 2, 2]}, targets={"test_id": [[1], [2, 3], [4, 5], [6]]})
    pred = pa.array([[5], [6, 7], [8, 9, 0], [9]], pa.list_(pa.int32()))  # ids = entity + 4
    s = score(d, pa.table({"id": ids("test_id", range(4)), "prediction": pred}))
    assert s.token_ids
    assert s.correct.tolist() == [True, True, False, False]  # row 2 too long, row 3 wrong value
    assert s.coverage["normalization"]["compared"].startswith("token ids")


MULTI = [[1, 2, 3], [1, 2, 3], [1, 2, 3], [1, 2, 3], [1, 2, 3], [4, 5], [4, 5], [7], [7, 8, 9, 0]]


@pytest.fixture(scope="module")
def multi(tmp_path_factory):
    """Multi-token answers, so a scorer that looks only at some tokens is caught."""
    return toy_dataset(tmp_path_factory.mktemp("m") / "multi", {"test_id": [3] * 5 + [2, 2, 1, 4]},
                       targets={"test_id": MULTI})


def test_token_ids_partially_correct_multi_token_answers_are_wrong(multi):
    preds = [[1, 2, 3],      # right
             [1, 2, 4],      # last token wrong
             [1, 9, 3],      # middle token wrong
             [1, 2],         # a right prefix, last token missing
             [1, 2, 3, 3],   # right, then an extra token
             [4, 5],         # right
             [5, 4],         # right tokens, wrong order
             [7, 0],         # right first token, extra token
             [7, 8, 9, 1]]   # only the final token wrong (first three right)
    pred = pa.array([[t + 4 for t in p] for p in preds], pa.list_(pa.int32()))
    s = score(multi, pa.table({"id": ids("test_id", range(9)), "prediction": pred}))
    assert s.token_ids
    assert s.correct.tolist() == [True, False, False, False, False, True, False, False, False]


def test_text_partially_correct_multi_token_answers_are_wrong(multi):
    preds = ["<e_1><e_2><e_3>", "<e_1><e_2><e_4>", "<e_1><e_9><e_3>", "<e_1><e_2>", "<e_1><e_2><e_3><e_3>",
             "<e_4><e_5>", "<e_5><e_4>", "<e_7><e_0>", "<e_7><e_8><e_9><e_1>"]
    s = score(multi, pa.table({"id": ids("test_id", range(9)), "prediction": preds}))
    assert not s.token_ids
    assert s.correct.tolist() == [True, False, False, False, False, True, False, False, False]
    r = evaluate(multi, pa.table({"id": ids("test_id", range(9)), "prediction": preds}))
    assert {c.depth: (c.n, c.correct) for c in r.cells.itertuples()} == {1: (1, 0), 2: (2, 1), 3: (5, 1), 4: (1, 0)}


def test_interp_split_is_scored_and_plotted_like_the_others(tmp_path):
    spec = {"test_id": [2, 4], "test_interp": [3, 3], "test_depth": [6, 6]}
    d = toy_dataset(tmp_path / "interp", spec)
    preds = {"id": [i for s in spec for i in ids(s, range(2))], "prediction": answers(range(2)) * 2 + ["x", "x"]}
    r = evaluate(d, pa.table(preds))
    assert list(r.metrics["per_split"]) == ["test_id", "test_interp", "test_depth"]  # dataset order
    assert r.metrics["per_split"]["test_interp"]["accuracy"] == 1.0
    assert [e["depth"] for e in r.metrics["depth_curve"]["test_interp"]] == [3]
    from benchgen.evaluators.report.plots import plot_accuracy_vs_depth
    from benchgen.evaluators.report.render import tables

    assert any("test_interp" in row for _, _, rows in tables(r) for row in rows)
    assert plot_accuracy_vs_depth(r, tmp_path / "acc.png").stat().st_size > 0  # one curve per split


def test_oracle_scores_one_everywhere(ds):
    for kw in ({}, {"loops": [1, 2, 3]}, {"token_ids": True}):
        r = evaluate(ds, oracle_predictions(ds, **kw))
        assert set(r.cells["accuracy"]) == {1.0}
        assert all(e["accuracy"] == 1.0 for e in r.metrics["per_split"].values())
        assert r.metrics["per_split"].keys() == {"test_id", "test_depth"}


def test_known_fraction_wrong_per_depth(tmp_path):
    depths = [2] * 20 + [3] * 20 + [4] * 20
    d = toy_dataset(tmp_path / "frac", {"test_depth": depths})
    wrong_per_depth = {2: 0, 3: 5, 4: 15}
    pred = answers(range(60))
    for k, depth in enumerate((2, 3, 4)):
        for j in range(wrong_per_depth[depth]):
            pred[20 * k + j] = "nope"
    r = evaluate(d, pa.table({"id": ids("test_depth", range(60)), "prediction": pred}))
    curve = {e["depth"]: e["accuracy"] for e in r.metrics["depth_curve"]["test_depth"]}
    assert curve == {2: 1.0, 3: 0.75, 4: 0.25}


def test_oracle_noise_is_exact_and_seeded(ds):
    clean = oracle_predictions(ds)
    noisy = oracle_predictions(ds, noise=0.5, noise_seed=1)
    wrong = (~pc.equal(clean.column("prediction"), noisy.column("prediction")).to_numpy(zero_copy_only=False)).sum()
    assert wrong == round(0.5 * clean.num_rows)
    assert noisy.equals(oracle_predictions(ds, noise=0.5, noise_seed=1))
    assert not noisy.equals(oracle_predictions(ds, noise=0.5, noise_seed=2))
    tok = oracle_predictions(ds, noise=1.0, token_ids=True)
    assert (~score(ds, tok).correct).all()
    with pytest.raises(BenchgenError, match="--noise"):
        oracle_predictions(ds, noise=1.5)


def test_unknown_and_duplicate_ids(ds):
    with pytest.raises(BenchgenError, match=r"1 row\(s\) have ids that are not in dataset .*'toy/test_id/000000099'"):
        score(ds, pa.table({"id": ids("test_id", [0, 99]), "prediction": ["a", "b"]}))
    with pytest.raises(BenchgenError, match="duplicate .* 'toy/test_id/000000001' appears more than once"):
        score(ds, pa.table({"id": ids("test_id", [0, 1, 2, 3, 4, 1]), "prediction": ["a"] * 6}))
    p = {"id": ids("test_id", [0, 1, 2, 3, 4, 0]), "prediction": ["a"] * 6, "loops": [1, 1, 1, 1, 1, 1]}
    with pytest.raises(BenchgenError, match="duplicate .* 'toy/test_id/000000000' at loops=1"):
        score(ds, pa.table(p))


def test_missing_ids_and_allow_missing(ds):
    p = pa.table({"id": ids("test_id", [0, 1, 2]), "prediction": answers([0, 1, 2])})
    with pytest.raises(BenchgenError, match=r"2 of 5 examples in split 'test_id' have no prediction .*--allow-missing"):
        score(ds, p)
    s = score(ds, p, allow_missing=True)
    cov = s.coverage["splits"]["test_id"]
    assert (cov["examples"], cov["predicted"], cov["missing"], cov["coverage"]) == (5, 3, 2, 0.6)
    full = pa.table({"id": ids("test_id", range(5)), "prediction": answers(range(5))})
    with pytest.raises(BenchgenError, match="4 of 4 examples in split 'test_depth'"):
        score(ds, full, splits=["test_id", "test_depth"])


def test_incomplete_sweep(ds):
    p = oracle_predictions(ds, loops=[1, 2], splits=["test_id"])
    p = p.slice(0, p.num_rows - 1)  # last example lacks loops=2
    with pytest.raises(BenchgenError, match=r"1 example\(s\) in split 'test_id' lack some loop count .*\[1, 2\]"):
        score(ds, p)
    s = score(ds, p, allow_missing=True)
    assert s.coverage["complete_grid"] is False
    assert s.coverage["splits"]["test_id"]["incomplete_sweeps"] == 1


def test_split_selection_and_ignored_rows(ds):
    p = oracle_predictions(ds, splits=["train", "test_id"])
    s = score(ds, p, splits=["test_id"])
    assert s.splits == ["test_id"]
    assert s.coverage["ignored_predictions"] == 3
    assert score(ds, p).splits == ["train", "test_id"]  # default: every split with predictions
    with pytest.raises(BenchgenError, match="split 'nope': not in dataset"):
        score(ds, p, splits=["nope"])
    swept = oracle_predictions(ds, splits=["test_id"], loops=[1, 2])
    none = score(ds, swept, splits=["test_depth"], allow_missing=True)  # every row is for another split
    assert none.coverage["ignored_predictions"] == 10 and none.coverage["loops"] is None
    assert none.coverage["splits"]["test_depth"]["coverage"] == 0.0 and len(cells(none)) == 0


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 6), st.integers(1, 5), st.sampled_from(["example-major", "loop-major", "shuffled", "dict"]),
       st.integers(0, 2**31 - 1))
def test_join_fast_paths_match_hash_join(n_ids, reps, order, seed):
    rng = np.random.default_rng(seed)
    values = pa.array([f"id{i}" for i in range(n_ids + 2)])
    base = rng.permutation(n_ids)
    if order == "example-major":
        idx = np.repeat(base, reps)
    elif order == "loop-major":
        idx = np.tile(base, reps)
    else:
        idx = rng.integers(0, n_ids, size=n_ids * reps)
    idx = np.append(idx, n_ids + 5 if seed % 3 == 0 else idx[:1])  # sometimes one unknown id at the end
    arr = pa.array([f"id{i}" for i in idx])
    if order == "dict":
        arr = arr.dictionary_encode()
    expect = np.where(idx < n_ids + 2, idx, -1)
    assert join_ids(arr, values).tolist() == expect.tolist()
