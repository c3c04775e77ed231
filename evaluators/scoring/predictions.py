"""Predictions contract: read a predictions file (parquet / JSONL / CSV) and validate its columns.

A predictions table has one row per (example, loop count): ``id`` (string), ``prediction``
(answer text, or token ids as list<int32>), optional ``loops`` (int32, test-time iterations),
optional per-loop statistics ``margin`` / ``entropy`` / ``kl_prev`` / ``kl_from_prev`` / ``minp_kl`` /
``confidence`` / ``latent_diff`` (float64) and the logit-lens readout ``lens_top1`` (string). Validation turns every problem into
one clear line naming the file and column; checks that need the dataset (unknown ids,
duplicate (id, loops), missing ids) happen in :mod:`evaluators.scoring`.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from benchgen.errors import BenchgenError
from benchgen.evaluators.models.protocol import LOOP_STAT_COLUMNS, PREDICTION_COLUMNS

FLOAT_COLUMNS = LOOP_STAT_COLUMNS
# where benchgen records the dataset a predictions file was made for
FINGERPRINT_KEY = b"benchgen.dataset_fingerprint"
FINGERPRINT_COLUMN = "dataset_fingerprint"
FORMATS = {".parquet": "parquet", ".pq": "parquet", ".jsonl": "jsonl", ".json": "jsonl",
           ".ndjson": "jsonl", ".csv": "csv"}
# Streaming (bounded memory for 10M-row predictions): inputs with at least STREAM_ABOVE_ROWS rows
# (or JSONL/CSV files of at least STREAM_ABOVE_BYTES) are read and validated in batches of
# STREAM_BATCH_ROWS rows; JSONL is parsed JSONL_BLOCK_BYTES of whole lines at a time.
STREAM_ABOVE_ROWS = 1_000_000
STREAM_ABOVE_BYTES = 64 << 20
STREAM_BATCH_ROWS = 1 << 20
JSONL_BLOCK_BYTES = 64 << 20


def file_format(path: str | Path) -> str:
    """The predictions format implied by a file name (clear error for unknown extensions)."""
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise BenchgenError(f"predictions file {path}: unknown extension {suffix!r} "
                            f"(expected one of {', '.join(sorted(FORMATS))})")
    return FORMATS[suffix]


def read_predictions(path: str | Path) -> pa.Table:
    """Read a predictions file into a validated arrow table (see :func:`validate_predictions`)."""
    path = Path(path)
    fmt = file_format(path)
    if not path.is_file():
        raise BenchgenError(f"predictions file {path}: does not exist")
    try:
        if fmt == "parquet":
            import pyarrow.parquet as pq

            table = pq.read_table(path)
        elif fmt == "jsonl":
            import pyarrow.json as pj

            table = pj.read_json(path)
        else:
            import pyarrow.csv as pcsv

            # id and prediction are always text in CSV (answers such as "1304" must stay strings).
            types = {"id": pa.string(), "prediction": pa.string(), FINGERPRINT_COLUMN: pa.string()}
            table = pcsv.read_csv(path, convert_options=pcsv.ConvertOptions(
                column_types=types, strings_can_be_null=False))
    except (pa.ArrowException, OSError, ValueError) as e:
        raise BenchgenError(f"predictions file {path}: cannot be read as {fmt} "
                            f"({str(e).splitlines()[0][:200] if str(e) else type(e).__name__})") from None
    fp = _file_fingerprint(table, str(path))
    out = validate_predictions(table, source=str(path))
    return out.replace_schema_metadata({FINGERPRINT_KEY: fp.encode()}) if fp else out


def _file_fingerprint(table: pa.Table, where: str) -> str | None:
    """The dataset fingerprint benchgen recorded in a predictions file (parquet metadata or a column)."""
    meta = table.schema.metadata or {}
    if FINGERPRINT_KEY in meta:
        return meta[FINGERPRINT_KEY].decode("utf-8", "replace")
    if FINGERPRINT_COLUMN in table.column_names:
        values = pc.unique(table.column(FINGERPRINT_COLUMN).cast(pa.string())).to_pylist()
        if len(values) != 1 or not values[0]:
            raise BenchgenError(f"{where}: column '{FINGERPRINT_COLUMN}' must hold one fingerprint for every row")
        return values[0]
    return None


def check_fingerprint(table: pa.Table, fingerprint: str, source: str = "predictions") -> None:
    """Refuse predictions benchgen wrote for a different dataset (same ids, other seed or config)."""
    fp = (table.schema.metadata or {}).get(FINGERPRINT_KEY)
    if fp is not None and fp.decode("utf-8", "replace") != fingerprint:
        raise BenchgenError(f"{source}: made for dataset fingerprint {fp.decode('utf-8', 'replace')[:16]}, "
                            f"not this dataset's {fingerprint[:16]} (same ids, different data)")


def load_predictions(source, fingerprint: str | None = None) -> pa.Table:
    """Predictions from a path, an arrow table, a pandas DataFrame or a dict of columns.

    With ``fingerprint`` (the dataset's), a file benchgen wrote for another dataset is refused.
    """
    if isinstance(source, (str, os.PathLike)):
        table = read_predictions(source)
        if fingerprint is not None:
            check_fingerprint(table, fingerprint, f"predictions file {source}")
        return table
    if isinstance(source, pa.Table):
        if fingerprint is not None:
            check_fingerprint(source, fingerprint)
        return validate_predictions(source)
    if isinstance(source, pa.RecordBatch):
        return validate_predictions(pa.Table.from_batches([source]))
    if isinstance(source, dict):
        return validate_predictions(pa.table(source))
    try:
        import pandas as pd
    except ImportError:  # pragma: no cover - pandas is a dependency
        pd = None
    if pd is not None and isinstance(source, pd.DataFrame):
        return validate_predictions(pa.Table.from_pandas(source, preserve_index=False))
    raise BenchgenError(f"predictions: expected a file path, arrow table, pandas DataFrame or dict, "
                        f"got {type(source).__name__}")


def _column(table: pa.Table, name: str) -> pa.Array:
    col = table.column(name)
    return col.combine_chunks() if col.num_chunks != 1 else col.chunk(0)


def validate_predictions(table: pa.Table, source: str = "predictions") -> pa.Table:
    """Check and normalise column types; return a table with only the contract's columns.

    ``id`` -> string (dictionary-encoded ids are kept as dictionaries: they join faster),
    ``prediction`` -> string or list<int32>, ``loops`` -> int32 (dropped when all null),
    ``margin``/``entropy``/``kl_prev`` -> float64 (nulls allowed).
    """
    where = f"{source}:"
    for required in ("id", "prediction"):
        if required not in table.column_names:
            raise BenchgenError(f"{where} missing required column '{required}' "
                                f"(has: {', '.join(table.column_names) or 'no columns'})")
    if table.num_rows == 0:
        raise BenchgenError(f"{where} has no rows")
    dupes = {c for c in table.column_names if table.column_names.count(c) > 1}
    if dupes:
        raise BenchgenError(f"{where} column(s) {', '.join(sorted(dupes))} appear more than once")
    out: dict[str, pa.Array] = {}

    ids = _column(table, "id")
    if pa.types.is_dictionary(ids.type) and _is_text(ids.type.value_type):
        ids = ids.cast(pa.dictionary(ids.type.index_type, pa.string()))
    elif _is_text(ids.type):
        ids = ids.cast(pa.string())
    else:
        raise BenchgenError(f"{where} column 'id': expected string, got {ids.type}")
    if ids.null_count:
        raise BenchgenError(f"{where} column 'id': {ids.null_count} null value(s)")
    _check_utf8(ids, "id", where)
    out["id"] = ids

    pred = _column(table, "prediction")
    if pa.types.is_dictionary(pred.type):
        pred = pred.dictionary_decode()
    if _is_text(pred.type):
        pred = pred.cast(pa.string())
    elif (pa.types.is_list(pred.type) or pa.types.is_large_list(pred.type)) and (
            pa.types.is_integer(pred.type.value_type) or pa.types.is_null(pred.type.value_type)):
        try:
            pred = pred.cast(pa.list_(pa.int32()))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as e:
            raise BenchgenError(f"{where} column 'prediction': token ids do not fit int32 ({e})") from None
        if pc.any(pc.is_null(pred.flatten())).as_py():
            raise BenchgenError(f"{where} column 'prediction': token id lists contain nulls")
    else:
        raise BenchgenError(f"{where} column 'prediction': expected string (answer text) or a list "
                            f"of integers (token ids), got {pred.type}")
    if pred.null_count:
        raise BenchgenError(f"{where} column 'prediction': {pred.null_count} null value(s) "
                            f"(write an empty answer instead)")
    if pa.types.is_string(pred.type):
        _check_utf8(pred, "prediction", where)
    out["prediction"] = pred

    if "loops" in table.column_names:
        loops = _column(table, "loops")
        if loops.null_count == len(loops):
            pass  # an all-null loops column means a model without loops
        elif loops.null_count:
            raise BenchgenError(f"{where} column 'loops': {loops.null_count} of {len(loops)} rows are null; "
                                f"give loops for every row or for none")
        else:
            out["loops"] = _int_loops(loops, where)

    for name in FLOAT_COLUMNS:
        if name not in table.column_names:
            continue
        col = _column(table, name)
        if not (pa.types.is_integer(col.type) or pa.types.is_floating(col.type) or pa.types.is_null(col.type)):
            raise BenchgenError(f"{where} column '{name}': expected a number, got {col.type}")
        col = col.cast(pa.float64())
        inf = pc.sum(pc.is_inf(col).cast(pa.int64())).as_py() or 0
        if inf:
            raise BenchgenError(f"{where} column '{name}': {inf} infinite value(s); give finite numbers "
                                f"(or null when unknown)")
        out[name] = col
    if "lens_top1" in table.column_names:  # the logit-lens readout (text) of per-loop probes
        lens = _column(table, "lens_top1")
        if not (_is_text(lens.type) or pa.types.is_null(lens.type)):
            raise BenchgenError(f"{where} column 'lens_top1': expected string, got {lens.type}")
        out["lens_top1"] = lens.cast(pa.string())
    if "lens_positions" in table.column_names:  # per-position readouts (token ids) of the wavefront probe
        pos = _column(table, "lens_positions")
        if not (pa.types.is_null(pos.type) or (pa.types.is_list(pos.type) or pa.types.is_large_list(pos.type))
                and pa.types.is_integer(pos.type.value_type)):
            raise BenchgenError(f"{where} column 'lens_positions': expected lists of token ids, got {pos.type}")
        out["lens_positions"] = pos.cast(pa.list_(pa.int32()))
    ordered = [c for c in PREDICTION_COLUMNS if c in out]
    return pa.table({c: out[c] for c in ordered})


def _check_utf8(col: pa.Array, name: str, where: str) -> None:
    """Text that is not valid UTF-8 (readers such as pyarrow's JSON parser let it through): one line
    naming the column and the first bad row, never a UnicodeDecodeError later."""
    values = col.dictionary if pa.types.is_dictionary(col.type) else col
    try:
        values.validate(full=True)
        return
    except pa.ArrowInvalid:
        pass
    raw = values.cast(pa.binary()).to_pylist()  # the error path only: find the row to name
    bad = next(i for i, b in enumerate(raw) if b is not None and not _decodes(b))
    if pa.types.is_dictionary(col.type):
        bad = col.indices.to_pylist().index(bad)
    raise BenchgenError(f"{where} column '{name}': row {bad} is not valid UTF-8 text")


def _decodes(b: bytes) -> bool:
    """Whether ``b`` is valid UTF-8."""
    try:
        b.decode("utf-8")
        return True
    except UnicodeDecodeError:
        return False


def _is_text(t: pa.DataType) -> bool:
    return pa.types.is_string(t) or pa.types.is_large_string(t)


def _int_loops(loops: pa.Array, where: str) -> pa.Array:
    if pa.types.is_integer(loops.type):
        values = loops.to_numpy(zero_copy_only=False)
    elif pa.types.is_floating(loops.type):
        values = loops.to_numpy(zero_copy_only=False)
        if not np.all(np.isfinite(values)) or np.any(values != np.round(values)):
            raise BenchgenError(f"{where} column 'loops': expected whole numbers, got non-integer values")
    else:
        raise BenchgenError(f"{where} column 'loops': expected an integer, got {loops.type}")
    if values.min() < 0 or values.max() > np.iinfo(np.int32).max:
        raise BenchgenError(f"{where} column 'loops': values must be between 0 and 2^31-1 "
                            f"(got {values.min()}..{values.max()})")
    return pa.array(values.astype(np.int32, copy=False), pa.int32())


def write_predictions(table: pa.Table, path: str | Path, *, fingerprint: str | None = None,
                      overwrite: bool = True) -> Path:
    """Write a predictions table atomically; format from the extension (.parquet/.jsonl/.csv).

    ``fingerprint`` (the dataset's) is recorded in parquet metadata, or as a constant
    ``dataset_fingerprint`` column in JSONL/CSV, so ``evaluate`` can refuse it on another dataset.
    """
    from benchgen.atomic import write_file

    path = Path(path)
    fmt = file_format(path)
    if fmt == "csv" and "prediction" in table.column_names and pa.types.is_list(
            table.schema.field("prediction").type):
        raise BenchgenError(f"{path}: token-id predictions cannot be written as CSV (use .parquet or .jsonl)")
    if fingerprint:
        if fmt == "parquet":
            table = table.replace_schema_metadata({**(table.schema.metadata or {}),
                                                   FINGERPRINT_KEY: fingerprint.encode()})
        else:
            table = table.replace_schema_metadata(None).append_column(
                FINGERPRINT_COLUMN, pa.array([fingerprint] * table.num_rows, pa.string()))

    def write(tmp: Path) -> None:
        if fmt == "parquet":
            import pyarrow.parquet as pq

            pq.write_table(table, tmp, compression="zstd")
        elif fmt == "csv":
            import pyarrow.csv as pcsv

            pcsv.write_csv(table, tmp)
        else:
            _write_jsonl(table, str(tmp))

    return write_file(path, write, overwrite=overwrite)


def _write_jsonl(table: pa.Table, path: str) -> None:
    """JSON Lines via pandas (vectorised ``to_json``), one object per row."""
    text = table.to_pandas().to_json(orient="records", lines=True, force_ascii=False)
    with open(path, "w", encoding="utf-8") as f:
        f.write(text if text.endswith("\n") or not text else text + "\n")


class StreamFallback(Exception):
    """Internal: streamed predictions need the whole-table reader (a problem to report, or a rule across batches)."""


def is_large(source) -> bool:
    """Whether predictions are big enough to stream (small ones are read whole, as before)."""
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        fmt = FORMATS.get(path.suffix.lower())
        if fmt is None or not path.is_file():
            return False  # the whole-table reader reports it
        if fmt != "parquet":
            return path.stat().st_size >= STREAM_ABOVE_BYTES
        import pyarrow.parquet as pq

        try:
            return pq.ParquetFile(path).metadata.num_rows >= STREAM_ABOVE_ROWS
        except (pa.ArrowException, OSError, ValueError):
            return False
    if isinstance(source, (pa.Table, pa.RecordBatch)):
        return source.num_rows >= STREAM_ABOVE_ROWS
    try:
        import pandas as pd
    except ImportError:  # pragma: no cover - pandas is a dependency
        return False
    return isinstance(source, pd.DataFrame) and len(source) >= STREAM_ABOVE_ROWS


def iter_predictions(source, fingerprint: str | None = None) -> Iterator[pa.Table]:
    """Validated predictions in tables of at most STREAM_BATCH_ROWS rows; files are read a block at a time.

    Each batch passes :func:`validate_predictions`. Whatever needs the whole input (any problem to
    report, loops or token ids in some batches only, the fingerprint) raises :class:`StreamFallback`:
    the caller then uses :func:`load_predictions`, which reports exactly as it always has.
    """
    meta_fp, raw, from_file = _open_stream(source)
    if fingerprint is not None and meta_fp is not None and meta_fp != fingerprint:
        raise StreamFallback("fingerprint")
    column_fps: set = set()
    rows, has_loops, token_ids = 0, None, None
    try:
        for table in _rebatch(raw):
            if from_file and meta_fp is None:
                if FINGERPRINT_COLUMN in table.column_names:
                    column_fps.update(pc.unique(table.column(FINGERPRINT_COLUMN).cast(pa.string())).to_pylist())
                else:
                    column_fps.add(None)  # a JSONL block without the key: null fingerprints
            out = validate_predictions(table, source="predictions")
            loops, tok = "loops" in out.column_names, pa.types.is_list(out.schema.field("prediction").type)
            if has_loops is None:
                has_loops, token_ids = loops, tok
            elif (loops, tok) != (has_loops, token_ids):
                raise StreamFallback("batches disagree on loops or prediction type")
            rows += out.num_rows
            yield out
    except (BenchgenError, pa.ArrowException, OSError, ValueError) as e:
        raise StreamFallback(str(e)) from None
    if rows == 0:
        raise StreamFallback("no rows")
    if column_fps and column_fps != {None}:
        values = list(column_fps)
        if len(values) != 1 or not values[0]:
            raise StreamFallback("fingerprint column")
        if fingerprint is not None and values[0] != fingerprint:
            raise StreamFallback("fingerprint")


def _open_stream(source) -> tuple[str | None, Iterable, bool]:
    """(fingerprint in the schema metadata, raw batches or tables, whether it is a file) for a source."""
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        fmt = FORMATS.get(path.suffix.lower())
        if fmt is None or not path.is_file():
            raise StreamFallback("not a readable predictions file")
        try:
            if fmt == "parquet":
                import pyarrow.parquet as pq

                pf = pq.ParquetFile(path)
                meta = pf.schema_arrow.metadata or {}
                fp = meta[FINGERPRINT_KEY].decode("utf-8", "replace") if FINGERPRINT_KEY in meta else None
                return fp, pf.iter_batches(batch_size=STREAM_BATCH_ROWS), True
            if fmt == "jsonl":
                return None, _jsonl_blocks(path), True
            import pyarrow.csv as pcsv

            types = {"id": pa.string(), "prediction": pa.string(), FINGERPRINT_COLUMN: pa.string()}
            return None, pcsv.open_csv(path, convert_options=pcsv.ConvertOptions(
                column_types=types, strings_can_be_null=False)), True
        except (pa.ArrowException, OSError, ValueError) as e:
            raise StreamFallback(str(e)) from None
    if isinstance(source, pa.Table):
        meta = source.schema.metadata or {}
        fp = meta[FINGERPRINT_KEY].decode("utf-8", "replace") if FINGERPRINT_KEY in meta else None
        return fp, [source], False
    if isinstance(source, pa.RecordBatch):
        return None, [source], False
    try:
        import pandas as pd
    except ImportError:  # pragma: no cover - pandas is a dependency
        pd = None
    if pd is not None and isinstance(source, pd.DataFrame):
        return None, [pa.Table.from_pandas(source, preserve_index=False)], False
    raise StreamFallback("not a streamable source")


def _jsonl_blocks(path: Path) -> Iterator[pa.Table]:
    """Parse a JSON Lines file JSONL_BLOCK_BYTES of whole lines at a time (one record never spans lines)."""
    import pyarrow.json as pj

    rest = b""
    with open(path, "rb") as f:
        while True:
            block = f.read(JSONL_BLOCK_BYTES)
            if not block:
                break
            cut = block.rfind(b"\n")
            if cut < 0:
                rest += block
                continue
            chunk, rest = rest + block[:cut + 1], block[cut + 1:]
            if chunk.strip():
                yield pj.read_json(pa.BufferReader(chunk))
    if rest.strip():
        yield pj.read_json(pa.BufferReader(rest))


def _rebatch(raw: Iterable) -> Iterator[pa.Table]:
    """Regroup record batches or tables into non-empty tables of at most STREAM_BATCH_ROWS rows."""
    size = max(int(STREAM_BATCH_ROWS), 1)
    pending: list[pa.Table] = []
    rows = 0
    for item in raw:
        table = pa.Table.from_batches([item]) if isinstance(item, pa.RecordBatch) else item
        if pending and not table.schema.equals(pending[0].schema):
            yield pa.concat_tables(pending)
            pending, rows = [], 0
        for off in range(0, table.num_rows, size):
            piece = table.slice(off, size)
            take = min(piece.num_rows, size - rows)
            pending.append(piece.slice(0, take))
            rows += take
            if rows == size:
                yield pa.concat_tables(pending)
                pending, rows = [], 0
            if take < piece.num_rows:
                pending.append(piece.slice(take))
                rows = piece.num_rows - take
    if rows:
        yield pa.concat_tables(pending)
