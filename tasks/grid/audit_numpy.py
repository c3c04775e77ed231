"""The grid audit over whole record batches: the plain walk of ``audit.py`` with a vectorised row check.

A task gives ``check(batch, vocab, config, tally, base) -> well_formed`` (numpy/pyarrow over the
batch, counting the same messages the plain ``check_row`` would, ranked in its order); this driver
runs it shard by shard (on worker processes for large datasets), then checks the (depth, width)
cells of the well-formed rows with the plain route's own :func:`cell_problems` (only which cells
occur matters) and their queries by 64-bit keys confirmed on the token lists. The same problems in
the same order as the plain route (a test holds them equal).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pyarrow.parquet as pq

from benchgen.dataset import load
from benchgen.tasks.audit_tally import Tally, open_pool, run_shards
from benchgen.tasks.baselines import unique_sorted
from benchgen.tasks.grid.audit import cell_problems
from benchgen.tasks.queries import overlap, query_keys, repeats

Check = Callable[..., np.ndarray]
OFFSET = 1 << 31  # (depth, width) as one int64 code: (depth + OFFSET) << 32 | (width + OFFSET)


def audit_shard(ds, split: str, shard: int, start: int, check: Check, columns: list[str]
                ) -> tuple[Tally, np.ndarray, np.ndarray, np.ndarray]:
    """One shard: its tally, every row's query key, and per row well-formed and its (depth, width) code."""
    ds = load(ds) if isinstance(ds, str) else ds
    tally, keys, good, cells = Tally(), [], [], []
    for batch in pq.ParquetFile(ds.shards(split)[shard]).iter_batches(batch_size=65536, columns=columns):
        ok = check(batch, ds.vocab, ds.config, tally, start)
        keys.append(query_keys(batch.column("input_ids")))
        good.append(ok)
        depth, width = (batch.column(c).to_numpy(zero_copy_only=False).astype(np.int64) for c in ("depth", "width"))
        code = (depth + OFFSET).astype(np.uint64) << np.uint64(32) | (width + OFFSET).astype(np.uint64)
        cells.append(unique_sorted(code[ok]))  # int32 columns: exact
        start += batch.num_rows
    return (tally, np.concatenate(keys) if keys else np.zeros(0, np.uint64),
            np.concatenate(good) if good else np.zeros(0, bool),
            unique_sorted(np.concatenate(cells)) if cells else np.zeros(0, np.uint64))


def audit_grid_numpy(dataset, extra_cols: list[str], check: Check, depth_key: str, width_key: str,
                     test_key: str, interp_key: str | None = None, workers: int | None = 1) -> list[str]:
    """Every row checked by ``check``, then the split guarantees on cells and queries (as ``audit_grid``)."""
    cols = ["depth", "input_ids", "target_ids", "prompt", "answer", "width", *extra_cols]
    problems: list[str] = []
    cells: dict[str, list[tuple[int, int]]] = {}
    keys: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    pool = open_pool(dataset, workers)
    try:
        for split in dataset.splits:
            tally = Tally()
            parts = run_shards(dataset, split, audit_shard, (check, cols), pool)
            for t, *_ in parts:
                tally.merge(t)
            good = np.concatenate([p[2] for p in parts])
            keys[split] = (np.concatenate([p[1] for p in parts]), good)
            seen = unique_sorted(np.concatenate([p[3] for p in parts]))
            depth, width = (seen >> np.uint64(32)).astype(np.int64), (seen & np.uint64(0xFFFFFFFF)).astype(np.int64)
            cells[split] = list(zip((depth - OFFSET).tolist(), (width - OFFSET).tolist()))
            problems += [f"split '{split}': {msg} ({n} rows)" for msg, n in tally.messages()]
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    return problems + cell_problems(cells, dataset.config, depth_key, width_key, test_key, interp_key) \
        + keyed_query_problems(dataset, keys)


def keyed_query_problems(ds, keys: dict[str, tuple[np.ndarray, np.ndarray]]) -> list[str]:
    """``query_problems`` from (key, well-formed) per row: candidates by key, confirmed on the token lists."""
    problems = []
    for split, (k, ok) in keys.items():
        n = repeats(ds, split, k, ok)
        if n:
            problems.append(f"split '{split}': {n} repeated queries")
    if "train" in keys:
        kt, vt = keys["train"]
        for split in [s for s in keys if s != "train"]:
            n = overlap(ds, split, keys[split][0], "train", kt, keys[split][1], vt)
            if n:
                problems.append(f"split '{split}': {n} queries also occur in train")
    if "valid" in keys and "test_id" in keys and overlap(ds, "valid", keys["valid"][0], "test_id", keys["test_id"][0],
                                                         keys["valid"][1], keys["test_id"][1]):
        problems.append("valid and test_id share queries")
    return problems
