"""Exact id -> dataset row lookups in bounded memory, for scoring predictions batch by batch.

All dataset ids sit in one arrow string array; a batch of predicted ids that continues the
dataset's order is matched by one string comparison, the rest through a sorted 64-bit hash index
whose candidates are always verified by string equality (so the join is exact). Everything is
vectorised over rows (the hash loops over byte positions, never over ids).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


def concat_arrays(arrays: list[np.ndarray], dtype) -> np.ndarray:
    """One array from per-batch arrays, emptying the list as it goes (one copy alive at a time)."""
    out = np.empty(sum(len(a) for a in arrays), dtype=dtype)
    at = 0
    while arrays:
        a = arrays.pop(0)
        out[at:at + len(a)] = a
        at += len(a)
    return out


def one_chunk(col) -> pa.Array:
    """A column as one array (no copy when it already is one chunk)."""
    if isinstance(col, pa.ChunkedArray):
        return col.chunk(0) if col.num_chunks == 1 else col.combine_chunks()
    return col


_HASH_SEED = np.uint64(0xCBF29CE484222325)
_HASH_MUL = np.uint64(0x9E3779B97F4A7C15)
HASH_ROWS = 1 << 20  # strings hashed per step (bounds the temporary arrays)


def string_buffers(arr: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """int64 offsets (n + 1, into the data) and the uint8 data of a string or large_string array."""
    bufs = arr.buffers()
    off_type = np.int64 if pa.types.is_large_string(arr.type) else np.int32
    off = np.frombuffer(bufs[1], off_type)[arr.offset:arr.offset + len(arr) + 1].astype(np.int64)
    data = np.frombuffer(bufs[2], np.uint8) if bufs[2] is not None and bufs[2].size else np.zeros(0, np.uint8)
    return off, data


def hash_strings(arr: pa.Array) -> np.ndarray:
    """A 64-bit hash per string (length-seeded FNV-1a over the bytes), vectorised over byte positions."""
    off, data = string_buffers(arr)
    n = len(off) - 1
    lens = np.diff(off)
    h = _HASH_SEED ^ lens.astype(np.uint64)
    if n == 0:
        return h
    width = int(lens.max())
    if width == 0:
        return h
    if int(lens.min()) == width:  # fixed width (benchgen ids): byte columns of one matrix
        m = data[off[0]:off[0] + n * width].reshape(n, width)
        for k in range(width):
            h ^= m[:, k]
            h *= _HASH_MUL
        return h
    order = np.argsort(-lens, kind="stable")  # longest first: rows still going are a prefix
    start = off[:-1][order]
    hh = h[order]
    live = np.searchsorted(-lens[order], -np.arange(width), side="left")  # rows longer than k
    for k in range(width):
        c = int(live[k])
        hh[:c] ^= data[start[:c] + k]
        hh[:c] *= _HASH_MUL
    h[order] = hh
    return h


class IdIndex:
    """Every dataset id in one arrow array, with a sorted hash index for exact id -> row lookups.

    A batch whose ids continue the dataset's order (a file written in dataset order, one loop
    count of a loop-major sweep) is matched by one string comparison against the dataset's ids;
    the rest are hashed, found by binary search and verified by string equality, so the join is
    exact (the first dataset row holding the id, as ``pc.index_in`` gives). Memory: the ids plus
    12-16 bytes per dataset row, whatever the number of predictions.
    """

    def __init__(self, ds):
        data, offsets, sizes, total = [], [np.zeros(1, np.int64)], [], 0
        for split in ds.splits:
            n = 0
            for batch in ds.iter_batches(split, batch_size=HASH_ROWS, columns=["id"]):
                col = one_chunk(batch.column(0))
                if pa.types.is_dictionary(col.type):
                    col = col.dictionary_decode()
                col = col.cast(pa.large_string())
                off, buf = string_buffers(col)
                data.append(buf[off[0]:off[-1]].copy())
                offsets.append(off[1:] - off[0] + total)
                total += int(off[-1] - off[0])
                n += len(col)
            sizes.append(n)
        self.sizes = np.array(sizes, dtype=np.int64)
        self.n = int(self.sizes.sum())
        big = total >= 2**31 - 1
        off = concat_arrays(offsets, np.int64 if big else np.int32)
        buf = concat_arrays(data, np.uint8)
        self.ids = pa.Array.from_buffers(pa.large_string() if big else pa.string(), self.n,
                                         [None, pa.py_buffer(off), pa.py_buffer(buf)])
        self.max_len = int(np.diff(off).max()) if self.n else 0
        del off, buf
        self.unique = self._sorted_splits()  # True: ids provably distinct; None: ask the hash index
        self.sorted_h = self.order = None
        self.next = 0

    def _sorted_splits(self) -> bool | None:
        """True when each split's ids increase strictly and the splits' id ranges do not overlap."""
        bounds = np.concatenate([[0], np.cumsum(self.sizes)])
        spans = []
        for lo, hi in zip(bounds[:-1].tolist(), bounds[1:].tolist()):
            if hi - lo > 1 and not pc.all(pc.less(self.ids.slice(lo, hi - lo - 1),
                                                  self.ids.slice(lo + 1, hi - lo - 1))).as_py():
                return None
            if hi > lo:
                spans.append((self.ids[lo].as_py(), self.ids[hi - 1].as_py()))
        spans.sort()
        return True if all(a[1] < b[0] for a, b in zip(spans, spans[1:])) else None

    def _build_hash(self) -> None:
        """Hash every dataset id and sort the hashes (built on the first id the order guess misses)."""
        h = np.concatenate([hash_strings(self.ids.slice(i, HASH_ROWS)) for i in range(0, self.n, HASH_ROWS)]) \
            if self.n else np.zeros(0, np.uint64)
        # stable unless the ids are known distinct: equal ids then sit in row order (first row first)
        order = np.argsort(h, kind="quicksort" if self.unique else "stable")
        self.sorted_h = h[order]
        del h
        self.order = order.astype(np.int32) if self.n < 2**31 else order
        del order
        if self.unique is None:  # no two ids share a hash, so none repeats
            self.unique = not bool(np.any(self.sorted_h[1:] == self.sorted_h[:-1]))

    def __call__(self, ids: pa.Array) -> np.ndarray:
        """Dataset row (over all splits in order) of every id; -1 = not in the dataset."""
        if pa.types.is_dictionary(ids.type):
            return self(ids.dictionary)[ids.indices.to_numpy(zero_copy_only=False)]
        ids = ids.cast(self.ids.type)
        n = len(ids)
        if n > 1:
            same_next = pc.equal(ids.slice(1), ids.slice(0, n - 1)).to_numpy(zero_copy_only=False)
            starts = np.flatnonzero(np.concatenate([[True], ~same_next]))
            if len(starts) * 2 <= n:  # runs of one id (example-major sweeps): look up one per run
                return np.repeat(self(ids.take(pa.array(starts))), np.diff(np.append(starts, n)))
        rows = np.full(n, -1, dtype=np.int64)
        if n == 0:
            return rows
        r0 = self.next
        if not (r0 < self.n and ids[0].as_py() == self.ids[r0].as_py()):
            r0 = int(self._hashed(ids.slice(0, 1))[0])
        if self.unique is None:
            self._build_hash()
        todo = np.arange(n)
        if self.unique and r0 >= 0:  # ids continuing the dataset's order: one comparison each
            m = min(n, self.n - r0)
            hit = pc.equal(ids.slice(0, m), self.ids.slice(r0, m)).to_numpy(zero_copy_only=False)
            rows[:m][hit] = r0 + np.flatnonzero(hit)
            todo = np.flatnonzero(rows < 0)
        if len(todo) == n:
            rows = self._hashed(ids)
        elif len(todo):
            rows[todo] = self._hashed(ids.take(pa.array(todo)))
        self.next = int(rows[-1]) + 1 if rows[-1] >= 0 else 0
        return rows

    def _hashed(self, ids: pa.Array) -> np.ndarray:
        """Rows of ids found through the hash index (exact: every candidate is compared as a string)."""
        rows = np.full(len(ids), -1, dtype=np.int64)
        if not self.n or not len(ids):
            return rows
        fits = np.flatnonzero(pc.less_equal(pc.binary_length(ids), self.max_len).to_numpy(zero_copy_only=False))
        sub = ids if len(fits) == len(ids) else ids.take(pa.array(fits))  # longer ones are unknown
        if not len(sub):
            return rows
        if self.sorted_h is None:
            self._build_hash()
        h = np.concatenate([hash_strings(sub.slice(i, HASH_ROWS)) for i in range(0, len(sub), HASH_ROWS)])
        by_hash = np.argsort(h)  # sorted needles: binary searches walk the index in order (cache friendly)
        pos = np.empty(len(h), dtype=np.int64)
        pos[by_hash] = np.searchsorted(self.sorted_h, h[by_hash])
        del by_hash
        todo = np.arange(len(sub))
        found = np.full(len(sub), -1, dtype=np.int64)
        step = 0
        while len(todo):  # walk each run of equal hashes until the string matches
            at = pos[todo] + step
            inside = at < self.n
            todo, at = todo[inside], at[inside]
            same_h = self.sorted_h[at] == h[todo]
            todo, at = todo[same_h], at[same_h]
            if not len(todo):
                break
            cand = self.order[at].astype(np.int64)
            eq = pc.equal(self.ids.take(pa.array(cand)), sub.take(pa.array(todo))).to_numpy(zero_copy_only=False)
            found[todo[eq]] = cand[eq]
            todo = todo[~eq]
            step += 1
        rows[fits] = found
        return rows
