"""Write every split of a grid task through the writer it is handed, batch by batch (bounded memory)."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pyarrow as pa

from benchgen import seeding
from benchgen.progress import bar as progress_bar
from benchgen.task import Writer
from benchgen.tasks.grid.cells import (
    BATCH_ROWS,
    Cell,
    CellSampler,
    Counts,
    Grid,
    UniqueCell,
    add_ids,
    plan_rows,
    shuffle_merge,
    total_rows,
    train_plan,
)
from benchgen.tasks.grid.parallel import MIN_PARALLEL_ROWS, write_train_parallel
from benchgen.workers import spawn_pool


def split_tables(task: str, grid: Grid, sampler: CellSampler, counts: Counts, seed: int, option: str,
                 schema: pa.Schema, tick: Callable[[int], None],
                 uniq: dict[Cell, UniqueCell] | None = None) -> Iterator[tuple[str, Iterator[pa.Table]]]:
    """Yield (split, stream of tables) in write order; every table already carries its ids.

    With ``uniq`` (the worker path, which wrote train itself) train is skipped and valid/test_id
    continue from the rows those cells already hold."""
    cells = grid.train_cells()
    skip_train = uniq is not None
    if uniq is None:
        uniq = {c: UniqueCell(sampler, c, option) for c in cells}

    def with_ids(tables: Iterator[pa.Table], split: str) -> Iterator[pa.Table]:
        start = 0
        for t in tables:
            tick(t.num_rows)
            yield add_ids(task, split, start, t, schema)
            start += t.num_rows

    def train() -> Iterator[pa.Table]:
        for b, shares in enumerate(train_plan(cells, counts)):
            parts = []
            for c, share in zip(cells, shares):
                if share:
                    rows = uniq[c].take(seeding.rng(seed, task, "train", c[0], c[1], b), share)
                    parts.append(sampler.table(rows, c, "train"))
            if parts:
                yield shuffle_merge(parts, seeding.rng(seed, task, "train", "shuffle", b))

    def per_cell(split: str, cell_list: list[Cell], n: int, pool: dict[Cell, UniqueCell]) -> Iterator[pa.Table]:
        for c in cell_list:
            u = pool.get(c) or UniqueCell(sampler, c, option)
            for b, m in enumerate(plan_rows(n, max(1, -(-n // BATCH_ROWS)))):
                if m:
                    yield sampler.table(u.take(seeding.rng(seed, task, split, c[0], c[1], b), m), c, split)

    plan = [("train", 0 if skip_train else counts.train, cells, lambda: train()),
            ("valid", counts.valid, cells, lambda: per_cell("valid", cells, counts.valid, uniq)),
            ("test_id", counts.test, cells, lambda: per_cell("test_id", cells, counts.test, uniq)),
            ("test_systematic", counts.test, grid.systematic_cells(),
             lambda: per_cell("test_systematic", grid.systematic_cells(), counts.test, {})),
            ("test_interp", counts.test, grid.interp_cells(),
             lambda: per_cell("test_interp", grid.interp_cells(), counts.test, {})),
            ("test_depth", counts.test, grid.depth_cells(),
             lambda: per_cell("test_depth", grid.depth_cells(), counts.test, {}))]
    for split, n, cl, make in plan:
        if n and cl:
            yield split, with_ids(make(), split)


def write_grid(writer: Writer, *, task: str, grid: Grid, sampler: CellSampler, counts: Counts, seed: int,
               schema: pa.Schema, progress: bool, workers: int, option: str = "train_per_cell") -> None:
    """Generate every split of a grid task and write it through ``writer``.

    With ``workers`` > 1 and at least MIN_PARALLEL_ROWS train rows, a writer that takes encoded
    parts (on disk) gets train sampled and encoded on that many worker processes; the files are
    byte-identical to the in-process ones either way."""
    n_train = counts.train * len(grid.train_cells())
    # in-memory writers and small datasets stay in-process
    parallel = workers > 1 and writer.supports_parts and n_train >= MIN_PARALLEL_ROWS
    with progress_bar(total_rows(grid, counts), task, "row", progress) as bar:
        if parallel:
            n_shards = -(-n_train // writer.rows_per_shard)
            pool = spawn_pool(min(workers, max(2, n_shards)))  # no more processes than the shards can use
            spill = Path(tempfile.mkdtemp(prefix=".spill-", dir=writer.tmp))
            try:
                uniq, wait = write_train_parallel(task, grid, sampler, counts, seed, option, schema, writer, pool,
                                                  workers, spill, bar.update)
                for split, tables in split_tables(task, grid, sampler, counts, seed, option, schema, bar.update,
                                                  uniq):
                    writer.write_split(split, tables)
                wait()
            finally:
                pool.shutdown(wait=True, cancel_futures=True)
                shutil.rmtree(spill, ignore_errors=True)
        else:
            for split, tables in split_tables(task, grid, sampler, counts, seed, option, schema, bar.update):
                writer.write_split(split, tables)
