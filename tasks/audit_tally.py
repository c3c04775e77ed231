"""What the vectorised task audits share: a tally of problem messages in the plain walk's order,
and the shards of a split as units of work (in-process or on worker processes).

The plain-Python audits count each message in a dict in the order rows first raise it; a
vectorised audit sees a whole batch at once, so :class:`Tally` records each message's first (row,
rank within the row) and sorts by it, giving the same list in the same order.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pyarrow.parquet as pq

MIN_PARALLEL_ROWS = 1_000_000  # below this many rows, starting worker processes costs more than it saves


@dataclass
class Tally:
    """Problem counts per message with where each was first seen (row, rank within the row)."""

    counts: dict[str, int] = field(default_factory=dict)
    first: dict[str, tuple[int, int]] = field(default_factory=dict)

    def add(self, msg: str, rows: np.ndarray, rank: int, base: int) -> None:
        """Count ``msg`` on the batch rows flagged in ``rows`` (bool); ``base``: the batch's first row."""
        hit = np.flatnonzero(rows)
        if len(hit):
            self.counts[msg] = self.counts.get(msg, 0) + len(hit)
            self.first.setdefault(msg, (base + int(hit[0]), rank))

    def merge(self, other: Tally) -> None:
        """Add another shard's tally (counts sum, the earliest first sighting wins)."""
        for msg, n in other.counts.items():
            self.counts[msg] = self.counts.get(msg, 0) + n
            self.first[msg] = min(self.first.get(msg, other.first[msg]), other.first[msg])

    def messages(self) -> list[tuple[str, int]]:
        """(message, rows) in the order the plain walk would have met them."""
        return [(m, self.counts[m]) for m in sorted(self.counts, key=lambda m: self.first[m])]


def shard_starts(ds, split: str) -> list[int]:
    """First row of every shard of ``split`` and the row count at the end (from the parquet footers)."""
    sizes = [pq.ParquetFile(p).metadata.num_rows for p in ds.shards(split)]
    return np.concatenate([[0], np.cumsum(sizes)]).astype(int).tolist()


def picked_batch(batch, picked: np.ndarray | None, start: int):
    """The rows of ``batch`` (rows ``start``.. of its split) in the sample ``picked`` (None: all),
    and the index of its first row in the rows checked."""
    if picked is None:
        return batch, start
    import pyarrow as pa

    lo, hi = np.searchsorted(picked, [start, start + batch.num_rows])
    return batch.take(pa.array(picked[lo:hi] - start)), int(lo)


def run_shards(ds, split: str, fn, extra: tuple, pool) -> list:
    """``fn(ds or its path, split, shard, first row, *extra)`` for every shard of ``split`` in order,
    on ``pool`` (workers open the dataset by path) or in-process."""
    starts = shard_starts(ds, split)
    args = [(split, i, starts[i], *extra) for i in range(len(starts) - 1)]
    if pool is None:
        return [fn(ds, *a) for a in args]
    return [f.result() for f in [pool.submit(fn, str(ds.path), *a) for a in args]]


def open_pool(ds, workers: int | None):
    """A worker pool for a dataset of at least MIN_PARALLEL_ROWS rows when ``workers`` > 1, else None."""
    from benchgen.workers import resolve_workers, spawn_pool

    rows = sum(i["rows"] for i in ds.manifest["splits"].values())
    n = resolve_workers(workers)
    return spawn_pool(n) if n > 1 and rows >= MIN_PARALLEL_ROWS and hasattr(ds, "path") else None


def joined(ids, strings, joiner: str):
    """Every row of a list<int> array of token ids rendered as its token strings joined by ``joiner``
    (pyarrow take + list join; ids clipped into the vocabulary, so only well-formed rows are meaningful)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    off = ids.offsets.to_numpy()
    val = ids.values.to_numpy()[off[0]:off[-1]]
    if len(val) and (val.min() < 0 or val.max() >= len(strings)):
        val = np.clip(val, 0, len(strings) - 1)
    words = strings.take(pa.array(val))
    return pc.binary_join(pa.ListArray.from_arrays(pa.array(off - off[0]), words), joiner)


def plain_rows(batch, rows: np.ndarray, check_row, tally: Tally, base: int) -> np.ndarray:
    """The plain route's ``check_row(row) -> (messages, well_formed)`` on the batch rows ``rows``
    (those a vectorised check leaves to it, e.g. non-ASCII text); returns their well-formed flags."""
    import pyarrow as pa

    good = np.zeros(len(rows), bool)
    if not len(rows):
        return good
    for i, row in enumerate(batch.take(pa.array(rows)).to_pylist()):
        msgs, good[i] = check_row(row)
        for rank, msg in enumerate(msgs):
            flag = np.zeros(batch.num_rows, bool)
            flag[rows[i]] = True
            tally.add(msg, flag, rank, base)
    return good
