"""Oracle predictions: the dataset's own answers (optionally corrupted), so the whole pipeline
can be exercised end to end without a model (``benchgen predict-oracle``)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from benchgen.errors import BenchgenError
from benchgen.evaluators.scoring.score import _compare_token_ids, resolve_dataset
from benchgen.seeding import rng as make_rng

WRONG = "<wrong>"


def oracle_predictions(dataset, *, splits: list[str] | None = None, noise: float = 0.0, noise_seed: int = 0,
                       loops: list[int] | None = None, token_ids: bool = False) -> pa.Table:
    """Correct predictions for every example of ``splits`` (default: all but train).

    ``noise`` p corrupts exactly round(p * rows) rows, chosen with a seeded RNG: a corrupted row
    gets another example's answer (or ``<wrong>`` / an extra token where that would still be
    right). ``loops`` emits one row per (example, loop count), corrupted independently.
    """
    ds = resolve_dataset(dataset)
    if not 0.0 <= noise <= 1.0:
        raise BenchgenError(f"--noise: must be between 0 and 1, got {noise}")
    if splits is None:
        splits = [s for s in ds.splits if s != "train"] or ds.splits
    col = "target_ids" if token_ids else "answer"
    table = pa.concat_tables([ds.table(s, columns=["id", col]) for s in splits])
    ids, answer = table.column("id").combine_chunks(), table.column(col).combine_chunks()
    n = len(ids)
    if loops:
        loops = sorted(set(int(t) for t in loops))
        if loops[0] < 0:
            raise BenchgenError(f"--loops: values must be >= 0, got {loops[0]}")
        take = pa.array(np.tile(np.arange(n), len(loops)))
        ids, answer = ids.take(take), answer.take(take)
        loop_col = pa.array(np.repeat(np.array(loops, dtype=np.int32), n), pa.int32())
    rows = len(ids)
    gen = make_rng(noise_seed, "predict-oracle", ds.fingerprint)
    bad = gen.permutation(rows)[: int(round(noise * rows))]
    if len(bad):
        other = answer.take(pa.array(gen.integers(0, rows, size=len(bad))))
        mine = answer.take(pa.array(bad))
        if token_ids:
            same = pa.array(_compare_token_ids(other, mine, np.arange(len(bad))))
            extra = pa.ListArray.from_arrays(pa.array(np.arange(len(bad) + 1, dtype=np.int32)),
                                             pa.array(np.zeros(len(bad), np.int32)))
            fallback = _concat_lists(mine, extra)
        else:
            same = pc.equal(other, mine)
            fallback = pc.binary_join_element_wise(mine, pa.scalar(WRONG), "")
        wrong = pc.if_else(same, fallback, other).cast(answer.type)
        src = np.arange(rows, dtype=np.int64)
        src[bad] = rows + np.arange(len(bad))
        answer = pa.concat_arrays([answer, wrong]).take(pa.array(src))
    cols = {"id": ids, "prediction": answer}
    if loops:
        cols["loops"] = loop_col
    return pa.table(cols)


def _concat_lists(a: pa.ListArray, b: pa.ListArray) -> pa.ListArray:
    """Row-wise concatenation of two list<int32> arrays of equal length (vectorised)."""
    la = np.diff(a.offsets.to_numpy()).astype(np.int64)
    lb = np.diff(b.offsets.to_numpy()).astype(np.int64)
    offsets = np.zeros(len(la) + 1, dtype=np.int64)
    np.cumsum(la + lb, out=offsets[1:])
    values = np.empty(int(offsets[-1]), dtype=np.int32)
    a_vals = a.flatten().to_numpy()
    b_vals = b.flatten().to_numpy()
    a_pos = np.repeat(offsets[:-1], la) + (np.arange(len(a_vals)) - np.repeat(np.cumsum(la) - la, la))
    b_pos = np.repeat(offsets[:-1] + la, lb) + (np.arange(len(b_vals)) - np.repeat(np.cumsum(lb) - lb, lb))
    values[a_pos] = a_vals
    values[b_pos] = b_vals
    return pa.ListArray.from_arrays(pa.array(offsets.astype(np.int32)), pa.array(values))
