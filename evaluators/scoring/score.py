"""Scoring: join predictions to the dataset by id, normalise, compare, and count cells.

Everything is vectorised over whole columns: the id join is an arrow hash lookup (with exact
fast paths for ids that come in runs or in a repeated block, as a loops sweep usually does),
answers are compared as codes into the set of normalised answers, and cells
``(split, depth, loops)`` are one ``np.bincount`` over a dense key.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from functools import cached_property

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from benchgen.dataset import Dataset, load
from benchgen.errors import BenchgenError, DatasetError
from benchgen.evaluators.scoring import predictions as predictions_mod
from benchgen.evaluators.scoring.id_index import IdIndex, concat_arrays, one_chunk
from benchgen.evaluators.scoring.predictions import (
    FLOAT_COLUMNS,
    StreamFallback,
    is_large,
    iter_predictions,
    load_predictions,
)
from benchgen.stats import Z95, wilson  # noqa: F401  (re-exported: metrics, readers)

MAX_DENSE_KEYS = 40_000_000  # (example, loops) presence table size before falling back to a sort


@dataclass(frozen=True)
class Normalization:
    """How answer text is normalised before exact match (applied to prediction and answer alike)."""

    strip: bool = True        # remove leading/trailing whitespace
    casefold: bool = False    # compare case-insensitively (Unicode lower-casing)

    def to_json(self, token_ids: bool = False) -> dict:
        d = asdict(self)
        d["compared"] = "token ids (exact, no normalisation)" if token_ids else "answer text"
        return d

    @property
    def trivial(self) -> bool:
        return not (self.strip or self.casefold)

    def apply(self, text: pa.Array) -> pa.Array:
        if self.strip:
            text = pc.utf8_trim_whitespace(text)
        if self.casefold:
            text = pc.utf8_lower(text)
        return text


@dataclass
class Scored:
    """Per-prediction-row outcome arrays for the scored splits (the input to cells and metrics)."""

    splits: list[str]                 # scored split names, in dataset order
    example_split: np.ndarray         # int8 split code per scored example
    example_depth: np.ndarray         # int32 depth per scored example
    row_example: np.ndarray           # int64 scored-example index per prediction row
    row_loops: np.ndarray | None      # int32 loops per row (None: model without loops)
    correct: np.ndarray               # bool per row
    extras: dict[str, np.ndarray] = field(default_factory=dict)  # margin/entropy/kl_prev (NaN = null)
    coverage: dict = field(default_factory=dict)
    token_ids: bool = False
    row_answer: np.ndarray | None = None  # uint64 hash of each row's normalised prediction (stable-argmax)

    @property
    def n_examples(self) -> int:
        return len(self.example_split)

    @property
    def loops_values(self) -> list[int]:
        return [] if self.row_loops is None else self.loop_codes[0].tolist()

    @cached_property
    def loop_codes(self) -> tuple[np.ndarray, np.ndarray]:
        """Sorted distinct loop counts and each row's dense code (one code 0 without loops)."""
        if self.row_loops is None or not len(self.row_loops):
            return np.zeros(0, np.int32), np.zeros(len(self.row_example), np.int32)
        return _present_values(self.row_loops)

    @cached_property
    def depth_codes(self) -> tuple[np.ndarray, np.ndarray]:
        """Sorted distinct depths and each scored example's dense depth code."""
        return _present_values(self.example_depth)

    @cached_property
    def example_group(self) -> np.ndarray:
        """Dense (split, depth) code per scored example: split * n_depths + depth code."""
        values, codes = self.depth_codes
        return self.example_split.astype(np.int64) * len(values) + codes

    @cached_property
    def row_cell_key(self) -> np.ndarray:
        """Dense (split, depth, loops) code per prediction row (shared by cells and margins)."""
        n_l = max(len(self.loop_codes[0]), 1)
        return self.example_group[self.row_example] * n_l + self.loop_codes[1]


def _present_values(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sorted distinct values of a small-range int array and each row's dense code (O(n))."""
    lo, hi = int(values.min()), int(values.max())
    if hi - lo > 10_000_000:
        uniq, codes = np.unique(values, return_inverse=True)
        return uniq, codes.astype(np.int32)
    present = np.bincount(values - lo, minlength=hi - lo + 1) > 0
    lookup = np.cumsum(present, dtype=np.int32) - 1
    return np.flatnonzero(present) + lo, lookup[values - lo]


def _index(values: pa.Array, value_set: pa.Array) -> np.ndarray:
    """Position of each value in ``value_set`` (-1 when absent) as int64."""
    return pc.fill_null(pc.index_in(values, value_set=value_set), -1).to_numpy().astype(np.int64)


def join_ids(ids: pa.Array, value_set: pa.Array) -> np.ndarray:
    """Row index into ``value_set`` for every id (-1 = unknown), hashing as few strings as possible.

    Exact fast paths: dictionary-encoded ids probe only the dictionary; ids in runs of equal
    consecutive values (example-major sweeps) probe one id per run; a block of ids repeated end
    to end (loop-major sweeps) probes one block. Each path is verified by string equality.
    """
    if pa.types.is_dictionary(ids.type):
        return _index(ids.dictionary, value_set)[ids.indices.to_numpy(zero_copy_only=False)]
    n = len(ids)
    if n > 1:
        same_next = pc.equal(ids.slice(1), ids.slice(0, n - 1)).to_numpy(zero_copy_only=False)
        starts = np.flatnonzero(np.concatenate([[True], ~same_next]))
        if len(starts) * 2 <= n:
            codes = _index(ids.take(pa.array(starts)), value_set)
            return np.repeat(codes, np.diff(np.append(starts, n)))
        again = np.flatnonzero(pc.equal(ids, ids[0]).to_numpy(zero_copy_only=False))
        if len(again) > 1:
            k = int(again[1])
            if k * 2 <= n and pc.all(pc.equal(ids.slice(k), ids.slice(0, n - k))).as_py():
                return np.resize(_index(ids.slice(0, k), value_set), n)
    return _index(ids, value_set)


STREAM_IDS_BELOW = 1_000_000  # fewer distinct predicted ids than this: stream the dataset's ids past them


def _dataset_rows(ds, pred_ids: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """Dataset row (over all splits in order; -1 = unknown) of every prediction id, and split sizes.

    Few predicted ids (e.g. test splits of a 10M-row dataset): hash them and stream every split's
    ids past them one record batch at a time (bounded memory). Otherwise hash all dataset ids once.
    """
    enc = pc.dictionary_encode(pred_ids.cast(pa.string()))
    distinct = enc.dictionary
    if len(distinct) >= STREAM_IDS_BELOW:
        id_tables = [ds.table(s, columns=["id"]).column("id") for s in ds.splits]
        sizes = np.array([len(c) for c in id_tables], dtype=np.int64)
        all_ids = pa.chunked_array([c for t in id_tables for c in t.chunks], pa.string()).combine_chunks()
        del id_tables
        return join_ids(pred_ids, all_ids), sizes
    row_of = np.full(len(distinct), -1, dtype=np.int64)  # first dataset row holding each predicted id
    sizes = np.zeros(len(ds.splits), dtype=np.int64)
    start = 0
    for k, split in enumerate(ds.splits):
        for batch in ds.iter_batches(split, columns=["id"]):
            at = _index(batch.column(0).cast(pa.string()), distinct)
            hit = np.flatnonzero(at >= 0)
            hit = hit[row_of[at[hit]] < 0][::-1]  # reversed: the first occurrence is written last
            row_of[at[hit]] = start + hit
            start += batch.num_rows
            sizes[k] += batch.num_rows
    return row_of[enc.indices.to_numpy(zero_copy_only=False)], sizes


def _examples(ids: np.ndarray, limit: int = 3) -> str:
    return ", ".join(repr(str(x)) for x in ids[:limit])


def resolve_dataset(dataset) -> Dataset:
    return dataset if isinstance(dataset, Dataset) else load(dataset)


def score(dataset, predictions, *, splits: list[str] | None = None, allow_missing: bool = False,
          normalization: Normalization | None = None) -> Scored:
    """Join predictions to the dataset and decide correctness of every prediction row.

    ``splits`` defaults to every split with at least one prediction; predictions for ids in
    other splits are ignored (and counted in ``coverage``). Unknown ids, duplicate (id, loops)
    pairs, non-integer loops and — unless ``allow_missing`` — scored examples without a
    prediction (or missing some loop count of the sweep) raise BenchgenError.

    Large inputs (see :func:`is_large`) are streamed: read, validated, joined and compared one
    batch at a time against an index of the dataset's ids, keeping only numeric arrays per row.
    """
    ds = resolve_dataset(dataset)
    norm = normalization or Normalization()
    scan, splits = _scan_predictions(ds, predictions, splits, norm)
    # 1. every dataset id, split by split (unknown ids vs ids in splits we do not score)
    if scan.unknown:
        raise BenchgenError(f"predictions: {scan.unknown} row(s) have ids that are not in dataset "
                            f"{ds.path} (e.g. {_examples(np.array(scan.unknown_examples, dtype=object))})")
    if splits is None:
        hit = np.bincount(scan.row_split, minlength=len(ds.splits)) > 0
        splits = [s for s, h in zip(ds.splits, hit) if h]
    codes = [ds.splits.index(s) for s in splits]
    kept = _scored_rows(scan, len(ds.splits), codes)  # 2. rows of the scored splits, by example index
    example_split = np.repeat(np.arange(len(splits), dtype=np.int8), scan.sizes[codes])

    def scored_ids() -> pa.Array:  # read again only for an error message (large datasets)
        return pa.concat_arrays([ds.table(s, columns=["id"]).column("id").combine_chunks().cast(pa.string())
                                 for s in splits])

    # 3. loops, duplicates and completeness of the (example, loops) grid
    row_loops = kept.row_loops if kept.row_loops is not None and len(kept.row_loops) else None
    if row_loops is not None:  # (None also when every row was for an unscored split)
        loop_values, loop_code = _present_values(row_loops)
    else:
        loop_values, loop_code = np.zeros(1, np.int32), np.zeros(len(kept.row_example), np.int32)
    per_example, dup_key = _grid_counts(kept.row_example, loop_code, kept.n_examples, len(loop_values))
    if dup_key is not None:
        ex, lc = divmod(int(dup_key), len(loop_values))
        at = f" at loops={int(loop_values[lc])}" if row_loops is not None else ""
        raise BenchgenError(f"predictions: duplicate (id, loops) pair: id {str(scored_ids()[ex])!r}{at} "
                            f"appears more than once")
    coverage = {"scored_splits": list(splits), "allow_missing": bool(allow_missing),
                "ignored_predictions": kept.ignored, "rows": int(len(kept.row_example)),
                "loops": loop_values.tolist() if row_loops is not None else None, "splits": {}}
    coverage["complete_grid"] = _check_coverage(coverage["splits"], splits, example_split, per_example,
                                                loop_values, allow_missing, scored_ids)
    # 4. correctness (decided batch by batch during the scan)
    coverage["normalization"] = norm.to_json(scan.token_ids)
    scored = Scored(splits=list(splits), example_split=example_split, example_depth=scan.answers.depths(codes),
                    row_example=kept.row_example, row_loops=row_loops, correct=kept.correct, extras=kept.extras,
                    coverage=coverage, token_ids=scan.token_ids, row_answer=kept.answer)
    if row_loops is not None:
        scored.__dict__["loop_codes"] = (loop_values, loop_code)  # computed above; seed the cache
    return scored


def _scan_predictions(ds, predictions, splits: list[str] | None, norm: Normalization
                      ) -> tuple[_ScanResult, list[str] | None]:
    """Read, validate and compare every prediction row (streamed when the input is large)."""
    scan = None
    if is_large(predictions) and (splits is None or (splits and all(s in ds.splits for s in splits))):
        wanted = None if splits is None else {ds.splits.index(s) for s in splits}
        try:
            scan = _scan(ds, iter_predictions(predictions, ds.fingerprint), IdIndex(ds), wanted, norm)
        except (StreamFallback, DatasetError):
            scan = None  # the whole-table path below reports the problem exactly as it always has
    if scan is None:
        preds = load_predictions(predictions, fingerprint=ds.fingerprint)
    if splits is not None:
        splits = list(dict.fromkeys(splits))
        for s in splits:
            if s not in ds.splits:
                raise DatasetError(f"split '{s}': not in dataset {ds.path} (has: {', '.join(ds.splits)})")
        if not splits:
            raise BenchgenError("splits: empty list (give at least one split to score)")
    if scan is None:
        gidx, sizes = _dataset_rows(ds, preds.column("id").combine_chunks())
        wanted = None if splits is None else {ds.splits.index(s) for s in splits}
        scan = _scan(ds, _slices(preds), _KnownRows(gidx, sizes), wanted, norm)
    return scan, splits


@dataclass
class _Kept:
    """Prediction rows of the scored splits: example index (0.. over the scored splits), correctness, extras."""

    row_example: np.ndarray
    correct: np.ndarray
    row_loops: np.ndarray | None
    extras: dict
    ignored: int
    n_examples: int
    answer: np.ndarray | None = None


def _scored_rows(scan: _ScanResult, n_splits: int, codes: list[int]) -> _Kept:
    """Map each dataset row to its scored example index and drop the rows of unscored splits."""
    sizes = scan.sizes
    bounds = np.concatenate([[0], np.cumsum(sizes)])
    shift = np.zeros(n_splits, dtype=np.int64)  # scored example index = dataset row - shift[split]
    scored_split = np.zeros(n_splits, dtype=bool)
    offset = 0
    for c in codes:
        shift[c] = bounds[c] - offset
        scored_split[c] = True
        offset += int(sizes[c])
    row_split = scan.row_split
    keep = scored_split[row_split]
    n_ignored = int((~keep).sum())
    row_example = scan.gidx
    row_example -= shift[row_split]
    scan.row_split = scan.gidx = None
    correct, row_loops, extras, answer = scan.correct, scan.loops, scan.extras, scan.answer
    if n_ignored:
        row_example = row_example[keep]
        correct = correct[keep]
        row_loops = row_loops[keep] if row_loops is not None else None
        extras = {k: v[keep] for k, v in extras.items()}
        answer = answer[keep]
    return _Kept(row_example, correct, row_loops, extras, n_ignored, offset, answer)


def _check_coverage(out: dict, splits: list[str], example_split: np.ndarray, per_example: np.ndarray,
                    loop_values: np.ndarray, allow_missing: bool, scored_ids) -> bool:
    """Coverage per split into ``out``; unless ``allow_missing``, a missing prediction or loop count is an
    error naming examples. Returns whether every predicted example has every loop count."""
    n_loops = len(loop_values)
    complete = True
    for k, s in enumerate(splits):
        sel = example_split == k
        counts = per_example[sel]
        n = int(sel.sum())
        predicted = int((counts > 0).sum())
        incomplete = int(((counts > 0) & (counts < n_loops)).sum())
        out[s] = {"examples": n, "predicted": predicted, "missing": n - predicted,
                  "coverage": predicted / n if n else None, "incomplete_sweeps": incomplete}
        complete &= incomplete == 0
        if allow_missing:
            continue
        if predicted < n:
            miss = scored_ids().filter(pa.array(sel & (per_example == 0)))
            raise BenchgenError(f"predictions: {n - predicted} of {n} examples in split '{s}' have no "
                                f"prediction (e.g. {_examples(miss.to_numpy(zero_copy_only=False))}); "
                                f"pass --allow-missing to score only the predicted ones")
        if incomplete:
            miss = scored_ids().filter(pa.array(sel & (per_example > 0) & (per_example < n_loops)))
            raise BenchgenError(f"predictions: {incomplete} example(s) in split '{s}' lack some loop count "
                                f"of the sweep {loop_values.tolist()} (e.g. "
                                f"{_examples(miss.to_numpy(zero_copy_only=False))}); "
                                f"pass --allow-missing to score what is there")
    return bool(complete)


@dataclass
class _ScanResult:
    """Per-prediction-row arrays gathered batch by batch (the input to the old whole-table steps)."""

    sizes: np.ndarray                 # rows per dataset split
    gidx: np.ndarray | None           # int64 dataset row per prediction row (over all splits in order)
    row_split: np.ndarray | None      # int16 dataset split code per row (-1: unknown id)
    correct: np.ndarray               # bool per row (False for rows of splits not scored)
    loops: np.ndarray | None          # int32 per row, None for a model without loops
    extras: dict[str, np.ndarray]     # margin/entropy/kl_prev as float64, NaN = null
    token_ids: bool
    unknown: int                      # rows whose id is not in the dataset
    unknown_examples: list[str]       # the first three such ids, in prediction order
    answers: _Answers
    answer: np.ndarray | None = None  # uint64 hash of each row's normalised prediction


def _scan(ds, batches, rows_of, wanted: set[int] | None, norm: Normalization) -> _ScanResult:
    """Join, compare and collect every validated predictions batch, keeping only numeric arrays per row.

    ``rows_of`` maps a batch's ids to dataset rows (-1 = unknown) and knows the split sizes;
    ``wanted`` holds the split codes to compare (None: every split with a prediction).
    """
    sizes = rows_of.sizes
    bounds = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    parts: dict[str, list] = {"gidx": [], "split": [], "correct": [], "loops": [], "answer": []}
    extra_parts: dict[str, list] = {}
    n_rows, unknown, examples = 0, 0, []
    answers = None
    for batch in batches:
        n = batch.num_rows
        ids = one_chunk(batch.column("id"))
        pred = one_chunk(batch.column("prediction"))
        if answers is None:
            answers = _Answers(ds, pa.types.is_list(pred.type), norm)
        if answers.token_ids:
            check_token_ids(pred, ids, len(ds.vocab), n_rows)
        g = rows_of(ids)
        split = np.searchsorted(bounds, g, side="right") - 1
        bad = g < 0
        if bad.any():
            split[bad] = -1
            unknown += int(bad.sum())
            if len(examples) < 3:
                bad_ids = ids.filter(pa.array(bad)).slice(0, 3 - len(examples)).cast(pa.string())
                examples += [str(x) for x in bad_ids.to_pylist()]
        correct = np.zeros(n, dtype=bool)
        per_split = np.bincount(split + 1, minlength=len(sizes) + 1)[1:]
        for c in np.flatnonzero(per_split):
            if wanted is not None and int(c) not in wanted:
                continue
            if per_split[c] == n:
                correct = answers.compare(int(c), pred, g - bounds[c])
            else:
                at = np.flatnonzero(split == c)
                correct[at] = answers.compare(int(c), pred.take(pa.array(at)), g[at] - bounds[c])
        parts["gidx"].append(g)
        parts["split"].append(split.astype(np.int16 if len(sizes) < 2**15 else np.int64))
        parts["correct"].append(correct)
        parts["answer"].append(answer_hash(pred, norm))
        if "loops" in batch.column_names:
            parts["loops"].append(one_chunk(batch.column("loops")).to_numpy().astype(np.int32, copy=False))
        for name in FLOAT_COLUMNS:
            if name in batch.column_names:
                col = pc.fill_null(one_chunk(batch.column(name)), np.nan).to_numpy().astype(np.float64)
                extra_parts.setdefault(name, [np.full(r, np.nan) for r in _batch_rows(parts)[:-1]]).append(col)
        for lst in extra_parts.values():
            if len(lst) < len(parts["gidx"]):
                lst.append(np.full(n, np.nan))
        n_rows += n
    if answers is None:
        raise StreamFallback("no rows")
    gidx = concat_arrays(parts.pop("gidx"), np.int64)
    row_split = concat_arrays(parts.pop("split"), np.int16 if len(sizes) < 2**15 else np.int64)
    correct = concat_arrays(parts.pop("correct"), bool)
    loops = concat_arrays(parts.pop("loops"), np.int32) if parts["loops"] else None
    answer = concat_arrays(parts.pop("answer"), np.uint64)
    extras = {name: concat_arrays(extra_parts.pop(name), np.float64) for name in FLOAT_COLUMNS if name in extra_parts}
    return _ScanResult(sizes=sizes, gidx=gidx, row_split=row_split, correct=correct, loops=loops, extras=extras,
                       token_ids=answers.token_ids, unknown=unknown, unknown_examples=examples, answers=answers,
                       answer=answer)


def _batch_rows(parts: dict[str, list]) -> list[int]:
    """Rows of each batch gathered so far."""
    return [len(g) for g in parts["gidx"]]


def _slices(table: pa.Table) -> Iterator[pa.Table]:
    """A validated predictions table in zero-copy slices of STREAM_BATCH_ROWS rows."""
    size = max(int(predictions_mod.STREAM_BATCH_ROWS), 1)
    for off in range(0, table.num_rows, size):
        yield table.slice(off, size)


class _KnownRows:
    """Dataset rows already joined for a whole table, handed out batch by batch in order."""

    def __init__(self, gidx: np.ndarray, sizes: np.ndarray):
        self.gidx, self.sizes, self.at = gidx, sizes, 0

    def __call__(self, ids: pa.Array) -> np.ndarray:
        out = self.gidx[self.at:self.at + len(ids)]
        self.at += len(ids)
        return out


class _Answers:
    """Per dataset split, read when first needed: depths and normalised answers (codes) or target ids."""

    def __init__(self, ds, token_ids: bool, norm: Normalization):
        self.ds, self.token_ids, self.norm = ds, token_ids, norm
        self.needed = ["depth", "target_ids"] if token_ids else ["depth", "answer"]
        self.loaded: dict[int, tuple] = {}
        self.failed = False

    def _load(self, code: int) -> tuple | None:
        if code not in self.loaded:
            try:
                t = self.ds.table(self.ds.splits[code], columns=self.needed)
            except DatasetError:
                self.failed = True  # re-raised in split order by depths(), as the whole-table path did
                return None
            depth = t.column("depth").to_numpy().astype(np.int32)
            if self.token_ids:
                self.loaded[code] = (depth, t.column("target_ids").combine_chunks())
            else:
                enc = pc.dictionary_encode(t.column("answer"))
                del t
                if enc.num_chunks:
                    values = self.norm.apply(enc.chunk(0).dictionary)
                    codes = np.concatenate([c.indices.to_numpy(zero_copy_only=False) for c in enc.chunks])
                else:
                    values, codes = pa.array([], pa.string()), np.zeros(0, np.int32)
                self.loaded[code] = (depth, (values, codes))
        return self.loaded[code]

    def compare(self, code: int, pred: pa.Array, rows: np.ndarray) -> np.ndarray:
        """Correctness of predictions for rows ``rows`` of split ``code`` (False when it cannot be read)."""
        got = self._load(code)
        if got is None:
            return np.zeros(len(pred), dtype=bool)
        if self.token_ids:
            return _compare_token_ids(pred, got[1], rows)
        values, codes = got[1]
        return _compare_text_rows(pred, values.take(pa.array(codes[rows])), self.norm)

    def depths(self, codes: list[int]) -> np.ndarray:
        """Depth of every example of the scored splits, in order (int32)."""
        if self.failed:  # the first unreadable scored split raises, as reading them all at once did
            for c in codes:
                self.ds.table(self.ds.splits[c], columns=self.needed)
        parts = []
        for c in codes:
            got = self._load(c)
            if got is None:
                self.ds.table(self.ds.splits[c], columns=self.needed)
            parts.append(got[0])
        return np.concatenate(parts) if parts else np.zeros(0, np.int32)


def answer_hash(pred: pa.Array, norm: Normalization) -> np.ndarray:
    """uint64 hash per row of the normalised prediction (text) or of the token ids, so that rows with
    the same answer share a hash (stable-argmax compares answers across loop counts)."""
    if pa.types.is_list(pred.type) or pa.types.is_large_list(pred.type):
        off = pred.offsets.to_numpy().astype(np.int64)
        vals = pred.values.to_numpy()[off[0]:off[-1]].astype(np.uint64) if len(pred.values) else np.zeros(0, np.uint64)
        lens = np.diff(off)
        pos = np.arange(len(vals)) - np.repeat(off[:-1] - off[0], lens)
        with np.errstate(over="ignore"):
            mixed = (vals + np.uint64(1)) * (np.uint64(0x9E3779B97F4A7C15) ^ (pos.astype(np.uint64) * np.uint64(1099511628211)))
            h = np.zeros(len(pred), dtype=np.uint64)
            np.add.at(h, np.repeat(np.arange(len(pred)), lens), mixed)
            return h ^ (lens.astype(np.uint64) * np.uint64(0xBF58476D1CE4E5B9))
    text = norm.apply(pred) if not norm.trivial else pred
    return pd.util.hash_array(np.asarray(text.to_numpy(zero_copy_only=False), dtype=object)).astype(np.uint64)


def _compare_text_rows(pred: pa.Array, answer: pa.Array, norm: Normalization) -> np.ndarray:
    """Row-wise exact match of predictions with (already normalised) answers.

    Same outcome as :func:`_compare_text`: normalisation is idempotent, so comparing the raw
    prediction first and normalising only the mismatches decides norm(pred) == norm(answer).
    """
    same = pc.equal(pred, answer).to_numpy(zero_copy_only=False).copy()
    if not norm.trivial:
        miss = np.flatnonzero(~same)
        if len(miss):
            at = pa.array(miss)
            same[miss] = pc.equal(norm.apply(pred.take(at)), answer.take(at)).to_numpy(zero_copy_only=False)
    return same


def _grid_counts(row_example: np.ndarray, loop_code: np.ndarray, n_ex: int,
                 n_loops: int) -> tuple[np.ndarray, int | None]:
    """Predictions per example, and the first duplicated (example, loops) key if any."""
    if n_ex * n_loops <= MAX_DENSE_KEYS:
        key = row_example * n_loops + loop_code
        counts = np.bincount(key, minlength=n_ex * n_loops)
        dup = np.flatnonzero(counts > 1)
        per_example = counts.reshape(n_ex, n_loops).astype(bool).sum(axis=1) if n_loops > 1 else counts
        return per_example, (int(dup[0]) if len(dup) else None)
    key = row_example * n_loops + loop_code
    uniq, counts = np.unique(key, return_counts=True)
    dup = uniq[counts > 1]
    return np.bincount(uniq // n_loops, minlength=n_ex), (int(dup[0]) if len(dup) else None)


def _compare_text(pred: pa.Array, answer: pa.Array, row_example: np.ndarray,
                  norm: Normalization) -> np.ndarray:
    """Exact match after normalisation of each prediction row with its example's answer (the
    whole-table path; the streamed path compares batch by batch with the same function)."""
    return _compare_text_rows(pred, norm.apply(answer).take(pa.array(row_example)), norm)


def check_token_ids(pred: pa.Array, ids: pa.Array, vocab_size: int, first_row: int = 0) -> None:
    """Token-id predictions must be ids of the dataset's vocabulary: a negative or too large id is refused
    with the row (counted from ``first_row``), its id and the vocabulary size, never scored as a miss."""
    values = pred.values.to_numpy()[pred.offsets[0].as_py():pred.offsets[-1].as_py()] if len(pred) else []
    if not len(values):
        return
    bad = (values < 0) | (values >= vocab_size)
    if not bad.any():
        return
    at = int(np.flatnonzero(bad)[0])
    row = int(np.searchsorted(pred.offsets.to_numpy()[1:] - pred.offsets[0].as_py(), at, side="right"))
    raise BenchgenError(f"predictions: row {first_row + row} (id {ids[row].as_py()}): token id {int(values[at])} "
                        f"is outside the dataset vocabulary of {vocab_size} tokens (ids 0..{vocab_size - 1})")


def _compare_token_ids(pred: pa.Array, target: pa.Array, row_example: np.ndarray) -> np.ndarray:
    """Row-wise equality of list<int32> predictions with each example's target_ids."""
    p_off = pred.offsets.to_numpy().astype(np.int64)
    t_off = target.offsets.to_numpy().astype(np.int64)
    p_len = np.diff(p_off)
    t_start = t_off[:-1][row_example]
    t_len = np.diff(t_off)[row_example]
    same_len = p_len == t_len
    p_vals = pred.values.to_numpy()[p_off[0]:p_off[-1]] if len(pred.values) else np.zeros(0, np.int32)
    t_vals = target.values.to_numpy()
    p_start = p_off[:-1] - p_off[0]
    rows = np.flatnonzero(same_len & (p_len > 0))
    lens = p_len[rows]
    total = int(lens.sum())
    if total == 0:
        return same_len
    row_of = np.repeat(rows, lens)
    within = np.arange(total) - np.repeat(np.cumsum(lens) - lens, lens)
    mismatch = p_vals[p_start[row_of] + within] != t_vals[t_start[row_of] + within]
    bad = np.bincount(row_of[mismatch], minlength=len(p_len)) > 0
    return same_len & ~bad


CELL_COLUMNS = ["split", "depth", "loops", "n", "correct", "accuracy", "ci_low", "ci_high"]


def cells(scored: Scored) -> pd.DataFrame:
    """Counts per (split, depth, loops): n, correct, accuracy, Wilson 95% interval.

    ``loops`` is a nullable integer column (all null for models without loops).
    """
    depth_values = scored.depth_codes[0]
    n_s, n_d = len(scored.splits), len(depth_values)
    loop_values = scored.loop_codes[0] if scored.row_loops is not None else None
    n_l = 1 if loop_values is None else len(loop_values)
    key = scored.row_cell_key
    size = n_s * n_d * n_l
    n = np.bincount(key, minlength=size)
    c = np.bincount(key, weights=scored.correct, minlength=size).round().astype(np.int64)
    keys = np.flatnonzero(n)
    s_code, rest = np.divmod(keys, n_d * n_l)
    d_code, l_code = np.divmod(rest, n_l)
    lo, hi = wilson(c[keys], n[keys])
    loops = (pd.array(loop_values[l_code], dtype="Int64") if loop_values is not None
             else pd.array([None] * len(keys), dtype="Int64"))
    return pd.DataFrame({
        "split": np.array(scored.splits, dtype=object)[s_code],
        "depth": depth_values[d_code].astype(np.int64),
        "loops": loops,
        "n": n[keys].astype(np.int64),
        "correct": c[keys],
        "accuracy": c[keys] / n[keys],
        "ci_low": lo,
        "ci_high": hi,
    }, columns=CELL_COLUMNS)
