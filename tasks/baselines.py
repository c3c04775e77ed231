"""Non-reasoning baselines every task shares, and the small vectorised helpers task baselines use.

A baseline is fitted on ``train`` only and predicts an answer string for every row of the rows it
is given (one call for all evaluated splits together). Each is one function
``predict(ctx, rows) -> pa.Array`` (strings; ``""`` = no prediction, scored wrong) wrapped in a
:class:`Baseline`; a task lists its own in ``tasks/<task>/baselines.py`` (its ``Task.baselines``) and
:func:`for_task` adds the common ones (chance, majority, majority per depth, train lookup).

``cheap`` baselines are fast enough to run at every ``generate`` (validity record in the
manifest, re-checked by ``benchgen audit``); the others (random chance guess, fitted probes) run
only in ``benchgen baselines``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from benchgen import seeding
from benchgen.errors import BenchgenError

Predict = Callable[["Context", pa.Table], pa.Array]
DENSE_LIMIT = 20_000_000  # largest (keys x values) count table mode_by_key builds densely


@dataclass(frozen=True)
class Baseline:
    """A named non-reasoning predictor fitted on train (``cheap``: runs at generate time).

    ``exact_at``: depths where the shortcut *is* the task (e.g. the sum of the first two operands
    when there are two), so the validity check ignores it there.

    ``hops_short``: > 0 marks a *partial-depth line*, not a shortcut: the task's own algorithm run
    ``hops_short`` steps short of the row's depth (p-hop: the find_{p-j} answer). A model whose
    reasoning stops j hops early scores it, so depth claims are judged against it; it is recorded and
    shown beside the shortcuts but never fails the validity audit (applies at depths >= hops_short).
    """

    name: str
    predict: Predict
    description: str
    cheap: bool = True
    exact_at: tuple[int, ...] = ()
    hops_short: int = 0

    @property
    def partial(self) -> bool:
        """Whether this is a partial-depth line (partial reasoning) rather than a shortcut."""
        return self.hops_short > 0

    def applies(self, depth: int) -> bool:
        """Whether the baseline is scored at ``depth``: not where it is the task, nor (partial lines)
        where the row has fewer hops than it is short of."""
        return depth not in self.exact_at and depth >= self.hops_short


class Context:
    """What a baseline may read: train columns (cached), config, vocab, task extra files."""

    def __init__(self, dataset) -> None:
        self.ds = dataset
        self._train: dict[str, pa.Array] = {}
        self._memo: dict[Any, Any] = {}

    @property
    def config(self) -> dict:
        return self.ds.config

    @property
    def vocab(self):
        return self.ds.vocab

    def train(self, column: str) -> pa.Array:
        """One train column as a single arrow array (read once, then cached)."""
        if column not in self._train:
            if "train" not in self.ds.splits:
                raise BenchgenError(f"dataset {self.ds.path}: no 'train' split to fit baselines on")
            self._train[column] = self.ds.table("train", columns=[column]).column(column).combine_chunks()
        return self._train[column]

    def train_map(self, key: Any, columns: list[str], fn: Callable[[pa.RecordBatch], tuple[np.ndarray, ...]]
                  ) -> tuple[np.ndarray, ...]:
        """``fn`` over train streamed in record batches, results concatenated (memoised under ``key``).

        For wide columns (token lists, prompts) that need not sit in memory whole on large datasets.
        """
        def make() -> tuple[np.ndarray, ...]:
            if "train" not in self.ds.splits:
                raise BenchgenError(f"dataset {self.ds.path}: no 'train' split to fit baselines on")
            parts = [fn(b) for b in self.ds.iter_batches("train", columns=columns)]
            return tuple(np.concatenate(p) for p in zip(*parts))
        return self.memo(key, make)

    def train_head(self, column: str, n: int) -> pa.Array:
        """The first ``n`` train rows of one column (train is shuffled: a fair sample to fit on)."""
        if column in self._train:
            return self._train[column][:n]
        key = ("head", column, n)
        if key not in self._memo:
            parts, got = [], 0
            for batch in self.ds.iter_batches("train", columns=[column]):
                parts.append(batch.column(0).slice(0, n - got))
                got += len(parts[-1])
                if got >= n:
                    break
            self._memo[key] = pa.concat_arrays(parts) if parts else pa.array([], pa.int64())
        return self._memo[key]

    def memo(self, key: Any, make: Callable[[], Any]) -> Any:
        """Share one fitted quantity (e.g. the majority answer) between baselines."""
        if key not in self._memo:
            self._memo[key] = make()
        return self._memo[key]


# --- helpers ------------------------------------------------------------------------------------
def unique_sorted(a: np.ndarray) -> np.ndarray:
    """``np.unique(a)`` by one sort: numpy 2.4's hash-based ``np.unique`` takes ~5 s per 1M distinct
    64-bit values (measured), a sort ~0.07 s."""
    a = np.sort(np.asarray(a).ravel())
    return a[np.concatenate(([True], a[1:] != a[:-1]))] if len(a) else a


def sorted_codes(strings: pa.Array) -> tuple[pa.Array, np.ndarray]:
    """Distinct strings in sorted order and each row's code into them (deterministic dictionary)."""
    enc = pc.dictionary_encode(strings)  # one hash pass; then sort only the (small) dictionary
    order = pc.sort_indices(enc.dictionary).to_numpy()
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order))
    return enc.dictionary.take(pa.array(order)), rank[enc.indices.to_numpy(zero_copy_only=False)]


def take_strings(values: pa.Array, codes: np.ndarray) -> pa.Array:
    """``values[codes]`` as strings, ``""`` where a code is -1 (no prediction)."""
    codes = np.asarray(codes, dtype=np.int64)
    got = values.take(pa.array(np.maximum(codes, 0)))
    return pc.if_else(pa.array(codes >= 0), got, pa.scalar("", pa.string()))


def mode_by_key(keys: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per distinct key (sorted), the most frequent value (ties: the smallest value); values >= 0."""
    keys = np.asarray(keys, dtype=np.int64)
    if not len(keys):
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    lo, hi = int(keys.min()), int(keys.max())
    if hi - lo > 4 * len(keys) + 1024:  # wide keys (e.g. hashes): one sort of the pairs, no count table
        return _mode_sorted(keys, np.asarray(values))
    values = np.asarray(values, dtype=np.int64)
    present = np.bincount(keys - lo, minlength=hi - lo + 1) > 0  # small key range: dense codes, no sort
    uk, kcode = np.flatnonzero(present) + lo, (np.cumsum(present) - 1)[keys - lo]
    vmax = int(values.max()) + 1
    if len(uk) * vmax <= DENSE_LIMIT:  # a dense (key, value) count table: argmax picks the smallest on ties
        counts = np.bincount(kcode * vmax + values, minlength=len(uk) * vmax).reshape(len(uk), vmax)
        return uk, counts.argmax(axis=1).astype(np.int64)
    return uk, _mode_of_pairs(kcode * vmax + values, vmax)


def mode_for(keys: np.ndarray, values: np.ndarray, wanted: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """:func:`mode_by_key` over only the keys in ``wanted`` (the rows being predicted): the same
    lookups for those rows, without sorting every train key (a hash probe of the train keys instead)."""
    keys = np.asarray(keys, dtype=np.int64)
    keep = pc.is_in(pa.array(keys, pa.int64()), value_set=pa.array(unique_sorted(np.asarray(wanted, dtype=np.int64))))
    keep = keep.to_numpy(zero_copy_only=False)
    return mode_by_key(keys[keep], np.asarray(values)[keep])


def _mode_of_pairs(pairs: np.ndarray, vmax: int) -> np.ndarray:
    """Mode per key code of ``key * vmax + value`` pairs (every code 0..K-1 present; ties: smallest)."""
    pairs, counts = np.unique(pairs, return_counts=True)  # sorted by key, then value
    pk, pv = np.divmod(pairs, vmax)
    del pairs
    return _most_frequent(pk, pv, counts)[1]


def _most_frequent(pk: np.ndarray, pv: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """From distinct (key, value) pairs sorted by key then value, with counts: each key and its mode."""
    new_key = np.empty(len(pk), dtype=bool)
    new_key[0] = True
    np.not_equal(pk[1:], pk[:-1], out=new_key[1:])
    first_of_key = np.flatnonzero(new_key)
    group = np.cumsum(new_key) - 1
    best = np.flatnonzero(counts == np.maximum.reduceat(counts, first_of_key)[group])  # pairs at their key's max
    first = best[np.r_[True, group[best][1:] != group[best][:-1]]]  # values ascend in a key: the smallest
    return pk[first_of_key], pv[first]


def _mode_sorted(keys: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """:func:`mode_by_key` by one sort of the (key, value) pairs: few copies of the rows (10M-row trains)."""
    order = np.lexsort((values, keys))
    k, v = keys[order], values[order]
    del order
    run = np.empty(len(k), dtype=bool)  # starts of equal (key, value) runs
    run[0] = True
    np.not_equal(k[1:], k[:-1], out=run[1:])
    run[1:] |= v[1:] != v[:-1]
    starts = np.flatnonzero(run)
    del run
    counts = np.diff(np.append(starts, len(k)))
    pk, pv = k[starts], v[starts].astype(np.int64)
    del k, v, starts
    return _most_frequent(pk, pv, counts)


def lookup(query: np.ndarray, keys: np.ndarray, values: np.ndarray, default: int | np.ndarray = -1) -> np.ndarray:
    """``values`` at each query's position in sorted ``keys`` (``default`` where absent)."""
    query = np.asarray(query, dtype=np.int64)
    if not len(keys):
        return np.broadcast_to(np.asarray(default, dtype=np.int64), query.shape).copy()
    pos = np.minimum(np.searchsorted(keys, query), len(keys) - 1)
    hit = keys[pos] == query
    return np.where(hit, values[pos], default)


def list_values(arr: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """Flat values and row offsets (starting at 0) of an arrow list<int> array."""
    arr = arr.combine_chunks() if isinstance(arr, pa.ChunkedArray) else arr
    offsets = arr.offsets.to_numpy().astype(np.int64)
    values = arr.values.to_numpy()[offsets[0]:offsets[-1]]
    return values, offsets - offsets[0]


def padded(arr: pa.Array, fill: int = -1) -> np.ndarray:
    """A list<int> array as an (n, longest) int64 matrix padded with ``fill``."""
    values, offsets = list_values(arr)
    lengths = np.diff(offsets)
    width = int(lengths.max()) if len(lengths) else 0
    out = np.full((len(lengths), width), fill, dtype=np.int64)
    out[np.arange(width)[None, :] < lengths[:, None]] = values
    return out


def depths(rows: pa.Table | pa.Array) -> np.ndarray:
    col = rows.column("depth") if isinstance(rows, pa.Table) else rows
    return np.asarray(col.to_numpy() if isinstance(col, pa.Array) else col.to_numpy(), dtype=np.int64)


def train_answers(ctx: Context) -> tuple[pa.Array, np.ndarray]:
    """Sorted distinct train answers and each train row's code (shared by every baseline)."""
    def make() -> tuple[pa.Array, np.ndarray]:
        values, codes = sorted_codes(ctx.train("answer"))
        ctx._train.pop("answer", None)  # the codes replace the strings (10M-row trains)
        return values, codes.astype(np.int32 if len(values) < 2**31 else np.int64)
    return ctx.memo("train_answers", make)


def majority_code(ctx: Context) -> int:
    """Code of the most frequent train answer (ties: the smallest string)."""
    def make() -> int:
        _, codes = train_answers(ctx)
        return int(np.argmax(np.bincount(codes)))
    return ctx.memo("majority", make)


# --- the common baselines -----------------------------------------------------------------------
PARTIAL = ("the task's own algorithm stopped j hops short of the row's depth: partial reasoning, not a "
           "shortcut (a model whose reasoning stops early scores it, so depth claims are judged against the "
           "best of them; they never fail the audit)")
CHANCE = ("1 / (distinct answers in the (split, depth) cell): the expected accuracy of a uniform "
          "guess over the answers the cell actually uses")


def chance(ctx: Context, rows: pa.Table) -> pa.Array:
    """A uniform random guess over the distinct answers of the row's (split, depth) cell (seeded by the
    dataset seed): the guesser whose expected accuracy is ``CHANCE``, 1 / (distinct answers in the cell),
    the number the manifest, the summaries and the plots call chance."""
    values, codes = sorted_codes(rows.column("answer").combine_chunks())
    _, split = sorted_codes(rows.column("split").combine_chunks())
    _, cell = np.unique(split * (1 << 32) + depths(rows), return_inverse=True)
    pairs = np.unique(cell.astype(np.int64) * len(values) + codes)  # (cell, answer) pairs, grouped by cell
    pair_cell = pairs // len(values)
    start = np.searchsorted(pair_cell, np.arange(int(cell.max()) + 1 if len(cell) else 0))
    count = np.bincount(pair_cell, minlength=len(start))
    rng = seeding.rng(int(ctx.ds.manifest.get("seed") or 0), "baseline", "chance")
    pick = start[cell] + (rng.random(len(cell)) * count[cell]).astype(np.int64)
    return take_strings(values, pairs[np.minimum(pick, start[cell] + count[cell] - 1)] % len(values))


def majority(ctx: Context, rows: pa.Table) -> pa.Array:
    """The most frequent train answer, for every row."""
    values, _ = train_answers(ctx)
    return take_strings(values, np.full(rows.num_rows, majority_code(ctx)))


def majority_per_depth(ctx: Context, rows: pa.Table) -> pa.Array:
    """The most frequent train answer at the row's depth (overall majority for unseen depths)."""
    values, codes = train_answers(ctx)
    keys, modes = ctx.memo("mode_depth", lambda: mode_by_key(depths(ctx.train("depth")), codes))
    return take_strings(values, lookup(depths(rows), keys, modes, majority_code(ctx)))


def train_lookup(ctx: Context, rows: pa.Table) -> pa.Array:
    """The train answer of the exact same prompt when train has it, else the majority answer."""
    values, codes = train_answers(ctx)
    prompts = rows.column("prompt")
    prompts = prompts.combine_chunks() if isinstance(prompts, pa.ChunkedArray) else prompts
    found = np.full(len(prompts), -1, dtype=np.int64)  # answer code of the first identical train prompt
    start = 0
    # stream train (prompts are the widest column): hash the queried prompts, probe each train batch
    for batch in ctx.ds.iter_batches("train", columns=["prompt"]):
        train = batch.column(0)
        hit = np.flatnonzero(pc.is_in(train, value_set=prompts).to_numpy(zero_copy_only=False))
        if len(hit):
            pos = pc.index_in(prompts, value_set=train.take(pa.array(hit)))
            pos = pc.fill_null(pos, -1).to_numpy(zero_copy_only=False).astype(np.int64)
            new = (found < 0) & (pos >= 0)
            found[new] = codes[start + hit[pos[new]]]
        start += len(train)
    return take_strings(values, np.where(found >= 0, found, majority_code(ctx)))


COMMON = [
    Baseline("chance", chance, "uniform random guess over the distinct answers of the (split, depth) cell: "
             "expected accuracy 1 / (distinct answers), the manifest's chance", cheap=False),
    Baseline("majority", majority, "most frequent train answer"),
    Baseline("majority_per_depth", majority_per_depth, "most frequent train answer at the row's depth"),
    Baseline("train_lookup", train_lookup, "answer of the identical train prompt, else the majority answer"),
]
LOOKUP = "train_lookup"


def for_task(task) -> list[Baseline]:
    """The common baselines followed by the task's own (``task.baselines()``)."""
    return list(COMMON) + list(task.baselines())
