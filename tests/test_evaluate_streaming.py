"""Streamed scoring (large predictions read, validated, joined and compared batch by batch) gives
exactly what the whole-table path gives: results, coverage and every error message."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from fixtures.toy import toy_dataset

from benchgen.dataset import load
from benchgen.errors import BenchgenError
from benchgen.evaluators import Normalization, evaluate, write_predictions
from benchgen.evaluators.scoring import id_index
from benchgen.evaluators.scoring import predictions as predictions_mod
from benchgen.evaluators.scoring import score as scoring
from benchgen.schema import make_ids

DEPTHS = {"train": [2, 3, 4, 2, 3, 4, 2, 3, 4, 2, 3], "test": [5, 6, 5, 6, 5, 6, 5]}
LOOPS = (1, 2, 3)


@pytest.fixture(scope="module")
def ds(tmp_path_factory):
    return load(toy_dataset(tmp_path_factory.mktemp("stream") / "ds", DEPTHS))


def sweep(ds, seed: int = 0, loops: tuple[int, ...] | None = LOOPS, order: str = "shuffled") -> pa.Table:
    """Predictions for every example (train included) at every loop count: some wrong, some padded."""
    rng = np.random.default_rng(seed)
    ids = pa.concat_arrays([ds.table(s, columns=["id"]).column("id").combine_chunks() for s in ds.splits])
    answers = pa.concat_arrays([ds.table(s, columns=["answer"]).column("answer").combine_chunks() for s in ds.splits])
    n, n_l = len(ids), len(loops or (None,))
    ex = np.tile(np.arange(n), n_l)  # loop-major
    if order == "example":
        ex = np.repeat(np.arange(n), n_l)
    text = np.array(answers.to_pylist(), dtype=object)[ex]
    wrong = rng.random(len(ex)) < 0.3
    text[wrong] = "<e_9>"
    padded = rng.random(len(ex)) < 0.2
    text[padded] = np.char.add(np.char.add(" ", text[padded].astype(str)), "\n").astype(object)
    cols = {"id": ids.take(pa.array(ex)), "prediction": pa.array(text, pa.string())}
    if loops:
        cols["loops"] = pa.array(np.tile(np.array(loops, np.int32), n) if order == "example"
                                 else np.repeat(np.array(loops, np.int32), n))
    cols["margin"] = pa.array(np.where(rng.random(len(ex)) < 0.1, np.nan, rng.normal(size=len(ex))))
    cols["entropy"] = pa.array(rng.random(len(ex)), pa.float64())
    cols["kl_prev"] = pa.array(np.where(rng.random(len(ex)) < 0.2, None, rng.random(len(ex))), pa.float64())
    table = pa.table(cols)
    return table.take(pa.array(rng.permutation(table.num_rows))) if order == "shuffled" else table


@pytest.fixture
def streamed(monkeypatch):
    """Force the streamed path with tiny batches, blocks and hash steps."""
    def force(batch: int = 4, block: int = 80, hash_rows: int = 3):
        monkeypatch.setattr(predictions_mod, "STREAM_ABOVE_ROWS", 0)
        monkeypatch.setattr(predictions_mod, "STREAM_ABOVE_BYTES", 0)
        monkeypatch.setattr(predictions_mod, "STREAM_BATCH_ROWS", batch)
        monkeypatch.setattr(predictions_mod, "JSONL_BLOCK_BYTES", block)
        monkeypatch.setattr(id_index, "HASH_ROWS", hash_rows)
    return force


def no_whole_table(monkeypatch):
    """Fail if scoring falls back to reading the predictions whole."""
    def refuse(*a, **k):
        raise AssertionError("streamed scoring fell back to the whole-table reader")
    monkeypatch.setattr(scoring, "load_predictions", refuse)


def as_json(results) -> dict:
    d = results.to_json()
    d["model"].pop("predictions", None)
    return d


def error_of(fn) -> str:
    with pytest.raises(BenchgenError) as e:
        fn()
    return str(e.value)


@pytest.mark.parametrize("fmt", ["parquet", "jsonl", "csv"])
@pytest.mark.parametrize("order", ["shuffled", "loop", "example"])
def test_streamed_file_equals_whole_table(ds, tmp_path, monkeypatch, streamed, fmt, order):
    table = sweep(ds, order=order)
    path = write_predictions(table, tmp_path / f"p.{fmt}", fingerprint=ds.fingerprint)
    norm = Normalization(casefold=True)
    whole = as_json(evaluate(ds, path, model_name="m", normalization=norm))
    subset = as_json(evaluate(ds, path, model_name="m", splits=["test"]))
    streamed(batch=5 if order == "example" else 4)
    no_whole_table(monkeypatch)
    assert as_json(evaluate(ds, path, model_name="m", normalization=norm)) == whole
    assert as_json(evaluate(ds, path, model_name="m", splits=["test"])) == subset
    assert subset["coverage"]["ignored_predictions"] == len(DEPTHS["train"]) * len(LOOPS)


def test_streamed_in_memory_inputs(ds, monkeypatch, streamed):
    table = sweep(ds, seed=1)
    dictionary_ids = table.set_column(0, "id", pc.dictionary_encode(table.column("id")))
    no_loops = sweep(ds, seed=2, loops=None)
    frame = no_loops.to_pandas()
    whole = [as_json(evaluate(ds, t, model_name="m")) for t in (table, dictionary_ids, frame)]
    streamed(batch=6)
    no_whole_table(monkeypatch)
    assert [as_json(evaluate(ds, t, model_name="m")) for t in (table, dictionary_ids, frame)] == whole
    assert whole[2]["coverage"]["loops"] is None and whole[0]["coverage"]["loops"] == list(LOOPS)


def test_streamed_token_ids_and_allow_missing(ds, tmp_path, monkeypatch, streamed):
    targets = pa.concat_arrays([ds.table(s, columns=["target_ids"]).column(0).combine_chunks() for s in ds.splits])
    ids = pa.concat_arrays([ds.table(s, columns=["id"]).column("id").combine_chunks() for s in ds.splits])
    keep = pa.array(np.arange(len(ids)) % 4 != 1)  # some examples unpredicted
    tok = pa.table({"id": ids, "prediction": targets}).filter(keep)
    tok = tok.set_column(1, "prediction", pa.array([t if i % 3 else [4, 5] for i, t in
                                                    enumerate(tok.column(1).to_pylist())], pa.list_(pa.int32())))
    for fmt in ("parquet", "jsonl"):
        path = write_predictions(tok, tmp_path / f"tok.{fmt}")
        monkeypatch.undo()
        whole = as_json(evaluate(ds, path, model_name="m", allow_missing=True))
        streamed(batch=3, block=50)
        no_whole_table(monkeypatch)
        assert as_json(evaluate(ds, path, model_name="m", allow_missing=True)) == whole
        assert whole["normalization"]["compared"].startswith("token ids")


def late(table: pa.Table, row: dict) -> pa.Table:
    """``table`` with ``row`` appended at the end (the last batch when streamed)."""
    extra = pa.table({k: pa.array([row.get(k)], table.schema.field(k).type) for k in table.column_names})
    return pa.concat_tables([table, extra])


def test_errors_found_in_a_late_batch_read_as_before(ds, tmp_path, monkeypatch, streamed):
    base = sweep(ds, seed=3, order="loop")
    first = base.slice(0, 1).to_pylist()[0]
    cases = {
        "unknown id": late(base, {**first, "id": "toy/test/000000099"}),
        "duplicate across batches": late(base, first),
        "null prediction": late(base, {**first, "prediction": None, "loops": 9}),
        "null loops": late(base, {**first, "loops": None}),
        "infinite margin": late(base, {**first, "loops": 9, "margin": float("inf")}),
        "missing example": base.filter(pc.not_equal(base.column("id"), "toy/train/000000007")),
        "incomplete sweep": base.slice(0, base.num_rows - 1),
    }
    seen = {}
    for fmt in ("parquet", "jsonl", "csv"):
        paths = {k: write_predictions(t, tmp_path / f"{k.replace(' ', '_')}.{fmt}") for k, t in cases.items()}
        monkeypatch.undo()
        seen[fmt] = {k: error_of(lambda p=p: evaluate(ds, p)) for k, p in paths.items()}
        streamed(batch=4, block=60)
        for k, p in paths.items():
            assert error_of(lambda p=p: evaluate(ds, p)) == seen[fmt][k], (fmt, k)
    whole = seen["parquet"]
    assert "not in dataset" in whole["unknown id"] and "'toy/test/000000099'" in whole["unknown id"]
    assert "duplicate (id, loops) pair" in whole["duplicate across batches"]
    assert "'prediction': 1 null value(s)" in whole["null prediction"]
    assert "'loops': 1 of" in whole["null loops"] and "infinite" in whole["infinite margin"]
    assert "have no prediction" in whole["missing example"] and "lack some loop count" in whole["incomplete sweep"]


def test_fingerprint_refusal_when_streamed(ds, tmp_path, streamed):
    table = sweep(ds, seed=4)
    paths = [write_predictions(table, tmp_path / f"p.{fmt}", fingerprint="0" * 64) for fmt in ("parquet", "jsonl")]
    whole = [error_of(lambda p=p: evaluate(ds, p)) for p in paths]
    streamed()
    assert [error_of(lambda p=p: evaluate(ds, p)) for p in paths] == whole
    assert all("made for dataset fingerprint 0000000000000000" in w for w in whole)


class FakeDataset:
    """Just enough of a Dataset for the id index: splits of given ids (repeats allowed)."""

    def __init__(self, splits: dict[str, list[str]]):
        self.ids = splits
        self.splits = list(splits)

    def iter_batches(self, split, batch_size=65536, columns=None):
        ids = pa.array(self.ids[split], pa.string())
        for off in range(0, len(ids), batch_size):
            yield pa.record_batch([ids.slice(off, batch_size)], names=["id"])


@pytest.mark.parametrize("weak_hash", [False, True])
def test_id_index_is_exact_with_repeats_collisions_and_ragged_ids(monkeypatch, weak_hash):
    if weak_hash:  # every id lands in one of three hash values: runs of collisions everywhere
        real = id_index.hash_strings
        monkeypatch.setattr(id_index, "hash_strings", lambda a: real(a) % np.uint64(3))
    monkeypatch.setattr(id_index, "HASH_ROWS", 4)
    train = make_ids("t", "train", 0, 9).to_pylist() + ["x", "", "a-much-longer-id", "t/train/000000003"]
    fake = FakeDataset({"train": train, "test": make_ids("t", "test", 0, 5).to_pylist() + ["x"]})
    every = train + fake.ids["test"]
    rng = np.random.default_rng(0)
    probes = [every, every[::-1], [every[i] for i in rng.permutation(len(every))],
              ["nope", "", "x", "t/test/000000004", "a-much-longer-id-still", "t/train/000000003"] * 3]
    index = id_index.IdIndex(fake)
    assert index.sizes.tolist() == [13, 6]
    for probe in probes:
        arr = pa.array(probe, pa.string())
        expect = pc.fill_null(pc.index_in(arr, value_set=pa.array(every)), -1).to_numpy()
        assert index(arr).tolist() == expect.tolist()
        assert index(pc.dictionary_encode(arr)).tolist() == expect.tolist()


def test_hash_is_the_same_for_fixed_and_ragged_layouts():
    ids = make_ids("khop", "train", 0, 50)
    mixed = pa.concat_arrays([ids, pa.array(["", "k", "khop/train/0000000001234"])])
    assert id_index.hash_strings(mixed)[:50].tolist() == id_index.hash_strings(ids).tolist()
    assert id_index.hash_strings(mixed.slice(3, 10)).tolist() == id_index.hash_strings(ids.slice(3, 10)).tolist()
    assert len(set(id_index.hash_strings(mixed).tolist())) == 53


def test_small_inputs_are_read_whole_and_large_ones_streamed(ds, tmp_path, monkeypatch):
    table = sweep(ds, seed=5)
    path = write_predictions(table, tmp_path / "p.parquet")
    assert not predictions_mod.is_large(path) and not predictions_mod.is_large(table)
    assert not predictions_mod.is_large(tmp_path / "absent.parquet") and not predictions_mod.is_large({"id": []})
    monkeypatch.setattr(predictions_mod, "STREAM_ABOVE_ROWS", table.num_rows)
    assert predictions_mod.is_large(path) and predictions_mod.is_large(table)
    assert predictions_mod.is_large(pd.DataFrame({"id": ["a"] * table.num_rows}))
