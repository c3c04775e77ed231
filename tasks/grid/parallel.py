"""Worker processes for the train split of a grid task (byte-identical to the in-process stream)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa

from benchgen import seeding
from benchgen.dataset import encode_shard
from benchgen.schema import make_ids
from benchgen.tasks.grid.cells import (
    Cell,
    CellSampler,
    Counts,
    Grid,
    UniqueCell,
    add_ids,
    distinct,
    merge_perm,
    round_rows,
    shuffle_merge,
    train_plan,
)

if TYPE_CHECKING:  # multiprocessing is imported only when a pool is started
    from concurrent.futures import Future, ProcessPoolExecutor

# The train split is cut into units that are pure functions of (config, seed, unit), so it is
# byte-identical to the in-process stream above for any number of workers:
# 1. ``draw_first_round`` (a worker per (cell, batch)): the unit's first sampling round from its own
#    seeded stream, spilled to disk; returns the rows' hashes and the stream's state after the round.
# 2. the main process deduplicates every cell's batches in order exactly as ``UniqueCell.take`` does,
#    from hashes only (any later rounds continue the unit's stream here and are spilled too), then
#    writes valid/test_id/the test cells in-process, since those depend on every train row seen.
# 3. ``encode_train_shard`` (a worker per output shard): renders, shuffles and ids the batches the
#    shard overlaps as the stream does (``render_batch``) and encodes them; the same values in the
#    same arrow chunk layout give the same parquet bytes.
# Below this many train rows worker processes cost more than they save: the in-process writer
# already encodes shards on threads (~1.6 cores busy), and each spawned worker costs ~0.35 s of
# imports; on 2 cores the pool only breaks even for p-hop at 0.3-1M rows and not yet for addition
# at 3M, so every preset stays in-process and larger datasets use the pool (which scales with cores).
MIN_PARALLEL_ROWS = 1_000_000


def spill_name(cell: Cell, batch: int, attempt: int, key: str) -> str:
    """File of one array of one sampling round of one (cell, train batch) unit in the spill directory."""
    return f"{cell[0]}x{cell[1]}-{batch:06d}-{attempt:04d}-{key}.npy"


def save_rows(spill: Path, cell: Cell, batch: int, attempt: int, rows: dict[str, np.ndarray]) -> None:
    """Spill one sampling round as raw .npy files (one per array: no archive to compress or checksum)."""
    for k, v in rows.items():
        np.save(spill / spill_name(cell, batch, attempt, k), v)


def draw_first_round(sampler: CellSampler, cell: Cell, m: int, seed: int, task: str, batch: int,
                     spill: Path) -> tuple[tuple[np.ndarray, np.ndarray], dict, tuple[str, ...]]:
    """Phase 1 (worker): draw round 0 of train unit (cell, batch) and spill it; returns its
    ``distinct`` hashes, the stream's state after the round and the names of the drawn arrays."""
    rng = seeding.rng(seed, task, "train", cell[0], cell[1], batch)
    rows = sampler.draw(rng, cell, m)
    save_rows(spill, cell, batch, 0, rows)
    return distinct(rows["key"]), rng.bit_generator.state, tuple(rows)


def load_rows(spill: Path, cell: Cell, batch: int, keys: tuple[str, ...],
              picks: list[tuple[int, np.ndarray]]) -> dict[str, np.ndarray]:
    """The accepted rows of one unit: ``picks`` = (round, accepted indices), gathered as ``take`` returns them."""
    parts = [{k: np.load(spill / spill_name(cell, batch, attempt, k), mmap_mode="r")[fresh] for k in keys}
             for attempt, fresh in picks]
    return {k: np.concatenate([p[k] for p in parts]) for k in keys}


def continue_unit(sampler: CellSampler, cell: Cell, batch: int, d0: tuple[np.ndarray, np.ndarray], m0: int,
                  state: dict, spill: Path) -> Callable[[int, int], tuple[None, tuple[np.ndarray, np.ndarray]]]:
    """``UniqueCell.rounds``'s draw for a unit whose round 0 (``m0`` rows) a worker drew (``distinct``
    hashes ``d0``, stream ``state`` after it): later rounds continue that stream here, spilled too."""
    rng: list[np.random.Generator] = []

    def draw(attempt: int, m: int) -> tuple[None, tuple[np.ndarray, np.ndarray]]:
        if attempt == 0:
            if m != m0:
                raise AssertionError(f"round 0 of unit {cell}/{batch}: drew {m0} rows, expected {m}")
            return None, d0
        if not rng:
            rng.append(np.random.Generator(np.random.PCG64()))
            rng[0].bit_generator.state = state
        rows = sampler.draw(rng[0], cell, m)
        save_rows(spill, cell, batch, attempt, rows)
        return None, distinct(rows["key"])

    return draw


@dataclass
class TrainBatch:
    """One train batch: its index, first row in the split, row count, the names of the sampler's
    arrays and, per contributing cell, the accepted (round, indices)."""

    index: int
    start: int
    rows: int
    keys: tuple[str, ...]
    picks: list[tuple[Cell, list[tuple[int, np.ndarray]]]]


def render_batch(task: str, sampler: CellSampler, schema: pa.Schema, seed: int, bt: TrainBatch, spill: Path,
                 a: int, b: int) -> pa.Table:
    """Rows ``a..b-1`` of train batch ``bt`` with their ids, equal to the in-process stream's batch sliced.

    A whole batch is rendered exactly as the stream does. Part of one (a batch that straddles two
    shards) renders only the rows its slice takes: ``table`` is row-wise and ``take`` with one index
    array returns one chunk, so values and chunk layout match the sliced whole (checked: else the
    whole batch is rendered and sliced)."""
    rows = [load_rows(spill, c, bt.index, bt.keys, picks) for c, picks in bt.picks]
    rng = seeding.rng(seed, task, "train", "shuffle", bt.index)
    if (a, b) != (0, bt.rows):
        perm = merge_perm([len(r["key"]) for r in rows], rng)[a:b]
        need = np.sort(perm)  # input rows the slice uses, in concatenated order (a permutation: distinct)
        bounds = np.cumsum([0] + [len(r["key"]) for r in rows])
        parts = []
        for (c, _), r, lo, hi in zip(bt.picks, rows, bounds[:-1], bounds[1:]):
            local = need[(need >= lo) & (need < hi)] - lo
            if len(local):
                parts.append(sampler.table({k: v[local] for k, v in r.items()}, c, "train"))
        t = pa.concat_tables(parts).take(np.searchsorted(need, perm))
        if all(col.num_chunks == 1 for col in t.columns):  # ids of the whole batch, sliced (their width)
            ids = make_ids(task, "train", bt.start, bt.rows).slice(a, b - a)
            return pa.Table.from_arrays([ids, *t.columns], schema=schema)
        rng = seeding.rng(seed, task, "train", "shuffle", bt.index)
    parts = [sampler.table(r, c, "train") for (c, _), r in zip(bt.picks, rows)]
    return add_ids(task, "train", bt.start, shuffle_merge(parts, rng), schema).slice(a, b - a)


def encode_train_shard(task: str, sampler: CellSampler, schema: pa.Schema, seed: int, batches: list[TrainBatch],
                       lo: int, size: int, spill: Path, part: Path, dictionary_columns: list[str]) -> None:
    """Phase 3 (worker): train rows ``lo..lo+size-1`` from the batches overlapping them, encoded to ``part``."""
    tables = [render_batch(task, sampler, schema, seed, bt, spill, max(0, lo - bt.start),
                           min(bt.rows, lo + size - bt.start)) for bt in batches]
    encode_shard(pa.concat_tables(tables), part, dictionary_columns)


def write_train_parallel(task: str, grid: Grid, sampler: CellSampler, counts: Counts, seed: int, option: str,
                         schema: pa.Schema, writer, pool: ProcessPoolExecutor, workers: int, spill: Path,
                         tick: Callable[[int], None]) -> tuple[dict[Cell, UniqueCell], Callable[[], None]]:
    """Start the train split on worker processes (phases above); returns the cells' seen rows (once
    every train row is decided) and a function that waits for the shards (call it before close)."""
    cells = grid.train_cells()
    plan = train_plan(cells, counts)
    uniq = {c: UniqueCell(sampler, c, option) for c in cells}
    R = writer.rows_per_shard
    sizes = [sum(shares) for shares in plan]
    starts = np.concatenate([[0], np.cumsum(sizes)]).tolist()
    n_train = starts[-1]
    n_shards = -(-n_train // R)
    last_batch = [int(np.searchsorted(starts, min((s + 1) * R, n_train), side="left")) - 1
                  for s in range(n_shards)]  # the batch holding each shard's last row
    first_batch = [int(np.searchsorted(starts, s * R, side="right")) - 1 for s in range(n_shards)]
    parts = [writer.part_path("train", s) for s in range(n_shards)]
    depth_counts: dict[int, int] = {}
    for d, _ in cells:
        depth_counts[d] = depth_counts.get(d, 0) + counts.train
    # phase 1 runs ahead of phase 2 by a window of batches, so the spill holds only a few shards' rows
    ahead = max(2, -(-(workers + 1) * R // max(1, max(sizes))))
    firsts: dict[tuple[Cell, int], Future] = {}

    def submit_draws(b: int) -> None:
        if b < len(plan):
            for c, share in zip(cells, plan[b]):
                if share:
                    firsts[(c, b)] = pool.submit(draw_first_round, sampler, c, round_rows(share, 0), seed, task, b,
                                                 spill)

    for b in range(min(ahead, len(plan))):
        submit_draws(b)
    decided: list[TrainBatch] = []
    shards: list[Future] = []
    done = 0  # shards finished and their spill files removed

    def reap(block: bool) -> None:
        nonlocal done
        while done < len(shards) and (block or shards[done].done()):
            shards[done].result()
            keep = first_batch[done + 1] if done + 1 < n_shards else len(plan)
            for b in range(first_batch[done], keep):
                for f in spill.glob(f"*-{b:06d}-*.npy"):
                    f.unlink()
            tick(min(R, n_train - done * R))
            done += 1

    for b, shares in enumerate(plan):
        picks = []
        for c, share in zip(cells, shares):
            if not share:
                continue
            d0, state, keys = firsts.pop((c, b)).result()
            draw = continue_unit(sampler, c, b, d0, round_rows(share, 0), state, spill)
            picks.append((c, [(attempt, fresh) for attempt, _, fresh in uniq[c].rounds(share, draw)]))
        if picks:
            decided.append(TrainBatch(b, starts[b], sizes[b], keys, picks))
        submit_draws(b + ahead)
        while len(shards) < n_shards and last_batch[len(shards)] <= b:
            s = len(shards)
            lo, size = s * R, min(R, n_train - s * R)
            use = [bt for bt in decided if bt.start < lo + size and bt.start + bt.rows > lo]
            shards.append(pool.submit(encode_train_shard, task, sampler, schema, seed, use, lo, size, spill,
                                      parts[s], writer.dictionary_columns))
            decided = [bt for bt in decided if bt.start + bt.rows > lo + size]
        reap(block=False)
    # registered now so train stays the first split; the caller waits for the shards before close
    writer.add_parts("train", parts, depth_counts)
    return uniq, lambda: reap(block=True)
