"""Predictions files: formats, type normalisation, and every validation error path."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from benchgen.errors import BenchgenError
from benchgen.evaluators import load_predictions, read_predictions, validate_predictions, write_predictions


def _table(**cols):
    base = {"id": ["a", "b"], "prediction": ["1304", "x"]}
    base.update(cols)
    return pa.table({k: v for k, v in base.items() if v is not None})


@pytest.mark.parametrize("ext", ["parquet", "jsonl", "csv"])
def test_formats_round_trip(tmp_path, ext):
    t = pa.table({"id": ["a", "b", "c"], "prediction": ["1304", "007", " x "],
                  "loops": pa.array([1, 2, 3], pa.int32()), "margin": [0.5, -1.0, 2.0]})
    path = write_predictions(t, tmp_path / f"p.{ext}")
    back = read_predictions(path)
    # numeric-looking answers stay strings (no "007" -> 7), whitespace is kept for the scorer
    assert back.column("prediction").to_pylist() == ["1304", "007", " x "]
    assert back.column("id").to_pylist() == ["a", "b", "c"]
    assert back.schema.field("loops").type == pa.int32()
    assert back.column("loops").to_pylist() == [1, 2, 3]
    assert back.column("margin").to_pylist() == [0.5, -1.0, 2.0]
    assert not list(tmp_path.glob(".*tmp"))  # atomic write left no temp file


def test_token_id_predictions_jsonl(tmp_path):
    t = pa.table({"id": ["a", "b"], "prediction": pa.array([[5, 6], [7]], pa.list_(pa.int64()))})
    back = read_predictions(write_predictions(t, tmp_path / "p.jsonl"))
    assert back.schema.field("prediction").type == pa.list_(pa.int32())
    assert back.column("prediction").to_pylist() == [[5, 6], [7]]
    with pytest.raises(BenchgenError, match="cannot be written as CSV"):
        write_predictions(back, tmp_path / "p.csv")


def test_sources_dataframe_dict_and_float_loops():
    df = pd.DataFrame({"id": ["a", "b"], "prediction": ["x", "y"], "loops": [1.0, 4.0], "extra": [0, 0]})
    t = load_predictions(df)
    assert t.column_names == ["id", "prediction", "loops"]  # unknown columns dropped
    assert t.column("loops").to_pylist() == [1, 4]
    t2 = load_predictions({"id": ["a"], "prediction": ["x"], "loops": [None]})
    assert "loops" not in t2.column_names  # all-null loops: a model without loops
    d = validate_predictions(pa.table({"id": pa.array(["a", "a"]).dictionary_encode(), "prediction": ["x", "y"]}))
    assert pa.types.is_dictionary(d.schema.field("id").type)


@pytest.mark.parametrize("table, message", [
    (pa.table({"prediction": ["x"]}), "missing required column 'id'"),
    (pa.table({"id": ["a"]}), "missing required column 'prediction'"),
    (pa.table({"id": pa.array([], pa.string()), "prediction": pa.array([], pa.string())}), "has no rows"),
    (pa.table({"id": [1, 2], "prediction": ["x", "y"]}), "column 'id': expected string, got int64"),
    (pa.table({"id": ["a", None], "prediction": ["x", "y"]}), "column 'id': 1 null"),
    (_table(prediction=[1304, 5]), "column 'prediction': expected string .* got int64"),
    (_table(prediction=["x", None]), "column 'prediction': 1 null"),
    (_table(prediction=pa.array([[1], [None]], pa.list_(pa.int64()))), "token id lists contain nulls"),
    (_table(prediction=pa.array([[1], [2**40]], pa.list_(pa.int64()))), "do not fit int32"),
    (_table(loops=[1, None]), "column 'loops': 1 of 2 rows are null"),
    (_table(loops=[1.5, 2.0]), "column 'loops': expected whole numbers"),
    (_table(loops=[-1, 2]), "column 'loops': values must be between 0"),
    (_table(loops=["1", "2"]), "column 'loops': expected an integer, got string"),
    (_table(margin=["high", "low"]), "column 'margin': expected a number, got string"),
    (_table(kl_prev=[True, False]), "column 'kl_prev': expected a number, got bool"),
])
def test_validation_errors(table, message):
    with pytest.raises(BenchgenError, match=message):
        validate_predictions(table, source="p.parquet")


def test_file_errors(tmp_path):
    with pytest.raises(BenchgenError, match="unknown extension '.txt'"):
        read_predictions(tmp_path / "p.txt")
    with pytest.raises(BenchgenError, match="does not exist"):
        read_predictions(tmp_path / "nope.parquet")
    (tmp_path / "bad.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(BenchgenError, match="bad.parquet: cannot be read as parquet"):
        read_predictions(tmp_path / "bad.parquet")
    (tmp_path / "bad.jsonl").write_text('{"id": "a", "prediction": "x"}\n{broken\n')
    with pytest.raises(BenchgenError, match="cannot be read as jsonl"):
        read_predictions(tmp_path / "bad.jsonl")
    pq.write_table(pa.table({"id": ["a"], "answer": ["x"]}), tmp_path / "cols.parquet")
    with pytest.raises(BenchgenError, match=r"cols.parquet: missing required column 'prediction' \(has: id, answer\)"):
        read_predictions(tmp_path / "cols.parquet")
    with pytest.raises(BenchgenError, match="expected a file path, arrow table"):
        load_predictions(np.zeros(3))
