"""Repeats and overlaps of queries (token-id lists) in written splits, found from 64-bit keys.

Shared by the task audits: a key per row nominates candidates in one vectorised pass (equal
queries always get equal keys), and every repeat or overlap is then confirmed on the token lists
themselves, so a key collision can never report a problem. ``valid`` masks keep only some rows
(e.g. the well-formed ones) in the comparison.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from benchgen.tasks.baselines import unique_sorted


def query_keys(inputs) -> np.ndarray:
    """A 64-bit key per query (its token-id list), vectorised: equal queries get equal keys.

    Keys only nominate candidates; every repeat or overlap they suggest is confirmed on the
    token lists themselves (:func:`queries_with`), so a key collision can never report a problem.
    """
    inputs = inputs.combine_chunks() if isinstance(inputs, pa.ChunkedArray) else inputs
    offsets = inputs.offsets.to_numpy().astype(np.int64)
    values = inputs.values.to_numpy()[offsets[0]:offsets[-1]]
    offsets -= offsets[0]
    lengths = np.diff(offsets)
    keys = np.zeros(len(lengths), dtype=np.uint64)
    longest = int(lengths.max()) if len(lengths) else 0
    powers = np.cumprod(np.full(longest, 0x100000001B3, dtype=np.uint64), dtype=np.uint64)
    with np.errstate(over="ignore"):
        for n in unique_sorted(lengths[lengths > 0]).tolist():  # one matrix per query length
            rows = np.flatnonzero(lengths == n) if len(lengths) > 1 else np.zeros(1, np.int64)
            m = values[offsets[rows][:, None] + np.arange(n)] if len(rows) < len(lengths) else values.reshape(-1, n)
            keys[rows] = (m.astype(np.uint64) + np.uint64(1)) @ powers[:n]  # sum of (id + 1) * P^position, mod 2^64
        keys ^= lengths.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)
        keys ^= keys >> np.uint64(31)  # splitmix64 finaliser: spreads the linear sum over all bits
        keys *= np.uint64(0xBF58476D1CE4E5B9)
        keys ^= keys >> np.uint64(27)
    return keys


def split_keys(ds, split: str) -> np.ndarray:
    """Query keys of every row of one split (streamed: one record batch at a time)."""
    parts = [query_keys(b.column(0)) for b in ds.iter_batches(split, columns=["input_ids"])]
    return np.concatenate(parts) if parts else np.zeros(0, np.uint64)


def queries_with(ds, split: str, keys: np.ndarray, wanted: np.ndarray, valid: np.ndarray | None = None
                 ) -> list[tuple]:
    """The token-id tuples of the (``valid``) rows of ``split`` whose key is in ``wanted`` (in row order)."""
    out, start = [], 0
    for b in ds.iter_batches(split, columns=["input_ids"]):
        n = b.num_rows
        hit = np.isin(keys[start:start + n], wanted)
        rows = np.flatnonzero(hit if valid is None else hit & valid[start:start + n])
        if len(rows):
            out += [tuple(q) for q in b.column(0).take(pa.array(rows)).to_pylist()]
        start += n
    return out


def repeats(ds, split: str, keys: np.ndarray, valid: np.ndarray | None = None) -> int:
    """(``valid``) rows of ``split`` that repeat an earlier row's query (confirmed on the token lists)."""
    uk, counts = np.unique(keys if valid is None else keys[valid], return_counts=True)
    if not (counts > 1).any():
        return 0
    seen = Counter(queries_with(ds, split, keys, uk[counts > 1], valid))
    return sum(c - 1 for c in seen.values())


def overlap(ds, a: str, ka: np.ndarray, b: str, kb: np.ndarray, va: np.ndarray | None = None,
            vb: np.ndarray | None = None) -> int:
    """Distinct queries occurring in both splits (candidates by key, confirmed on the token lists);
    ``va``/``vb``: only those rows of each split."""
    ka_, kb_ = (ka if va is None else ka[va]), (kb if vb is None else kb[vb])
    # a hash probe of the smaller key set (np.intersect1d sorts both: seconds on 10M-row splits)
    small, large = (ka_, kb_) if len(ka_) <= len(kb_) else (kb_, ka_)
    hit = pc.is_in(pa.array(large), value_set=pa.array(unique_sorted(small))).to_numpy(zero_copy_only=False)
    both = unique_sorted(large[hit])
    if not len(both):
        return 0
    return len(set(queries_with(ds, a, ka, both, va)) & set(queries_with(ds, b, kb, both, vb)))
