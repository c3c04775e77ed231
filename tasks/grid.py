"""The (depth, width) cell grid shared by the addition and induction tasks, and its writer.

A task whose examples are indexed by a reasoning depth (operands, hops) and a width (digits,
sequence length) declares training depths D and widths W, a set H of held-out cells,
interpolation depths I and extrapolation depths X. Splits:

- train / valid / test_id: the training cells ``D x W minus H`` (same distribution);
- test_systematic: the held-out cells H only. Each held-out cell's depth and width must each
  occur in some *training* cell (interpolation check), so the cell composes seen pieces in a
  combination never seen together;
- test_interp: cells ``I x W``; every interpolation depth lies strictly between two training
  depths and is never trained (Saunshi et al. train addition on n in {2,4,8,16,32} and test the
  untrained n=24);
- test_depth: cells ``X x W`` with every extrapolation depth above the largest training depth.

Rows are unique within a cell across train, valid and test_id (so no test query occurs in
train), deduplicated by a 64-bit row hash: equal rows always hash equal, so a duplicate can
never slip through (a rare false match only drops a row). Rows of different cells never
coincide (their token layouts differ), so no cross-cell check is needed.

``write_grid_dataset`` streams every split batch by batch into a DatasetWriter; train batches
hold an equal share of every training cell, shuffled, so memory stays bounded. Large datasets
sample and encode train on worker processes ("worker processes" below), byte-identically.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import pyarrow as pa

from benchgen import seeding
from benchgen.errors import ConfigError
from benchgen.schema import make_ids
from benchgen.vocab import Vocab

if TYPE_CHECKING:
    from concurrent.futures import Future, ProcessPoolExecutor

Cell = tuple[int, int]
BATCH_ROWS = 65536
MAX_ROUNDS = 2000  # sampling rounds per request before a cell is declared exhausted


@dataclass(frozen=True)
class Grid:
    """Training depths/widths, held-out cells and extrapolation depths, with option names for errors."""

    depths: tuple[int, ...]
    widths: tuple[int, ...]
    held_out: tuple[Cell, ...]
    test_depths: tuple[int, ...]
    depth_option: str = "train_depths"
    width_option: str = "train_widths"
    held_out_option: str = "held_out"
    test_option: str = "test_depths"
    interp_depths: tuple[int, ...] = ()
    interp_option: str = "interp_depths"

    def validate(self) -> None:
        """Refuse empty axes, held-out cells outside the interpolation range, shallow test depths."""
        if not self.depths:
            raise ConfigError(self.depth_option, "expected at least one training depth")
        if not self.widths:
            raise ConfigError(self.width_option, "expected at least one training width")
        for d, w in self.held_out:
            if d not in self.depths:
                raise ConfigError(self.held_out_option, f"cell {d}x{w}: depth {d} is not a training depth "
                                  f"{list(self.depths)} (held-out cells must interpolate)")
            if w not in self.widths:
                raise ConfigError(self.held_out_option, f"cell {d}x{w}: width {w} is not a training width "
                                  f"{list(self.widths)} (held-out cells must interpolate)")
        cells = self.train_cells()
        if not cells:
            raise ConfigError(self.held_out_option, "every cell is held out: no training cells remain")
        seen_d, seen_w = {d for d, _ in cells}, {w for _, w in cells}
        for d, w in self.held_out:
            if d not in seen_d:
                raise ConfigError(self.held_out_option, f"cell {d}x{w}: depth {d} occurs in no training cell "
                                  f"once the held-out cells are removed")
            if w not in seen_w:
                raise ConfigError(self.held_out_option, f"cell {d}x{w}: width {w} occurs in no training cell "
                                  f"once the held-out cells are removed")
        for d in self.depths:
            if d not in seen_d:
                raise ConfigError(self.depth_option, f"depth {d}: every cell of it is held out")
        for w in self.widths:
            if w not in seen_w:
                raise ConfigError(self.width_option, f"width {w}: every cell of it is held out")
        low = sorted(d for d in self.test_depths if d <= max(self.depths))
        if low:
            raise ConfigError(self.test_option, f"must all be above the largest training depth "
                              f"{max(self.depths)}; got {low}")
        trained = sorted(seen_d)
        for d in self.interp_depths:
            if d in seen_d:
                raise ConfigError(self.interp_option, f"depth {d} is a training depth (interpolation depths "
                                  f"must never be trained; training depths {trained})")
            if not trained[0] < d < trained[-1]:
                raise ConfigError(self.interp_option, f"depth {d} is not strictly between the smallest and "
                                  f"largest training depths {trained[0]} and {trained[-1]}")

    def train_cells(self) -> list[Cell]:
        held = set(self.held_out)
        return [(d, w) for d in self.depths for w in self.widths if (d, w) not in held]

    def systematic_cells(self) -> list[Cell]:
        return sorted(self.held_out)

    def depth_cells(self) -> list[Cell]:
        return [(d, w) for d in self.test_depths for w in self.widths]

    def interp_cells(self) -> list[Cell]:
        return [(d, w) for d in self.interp_depths for w in self.widths]


class CellSampler(Protocol):
    """What a task supplies: draw rows of one cell, count its distinct rows, build arrow tables."""

    def population(self, cell: Cell) -> int:
        """Exact number of distinct rows the sampler can produce in ``cell``."""

    def draw(self, rng: np.random.Generator, cell: Cell, m: int) -> dict[str, np.ndarray]:
        """``m`` rows as arrays (first axis = rows); ``"key"`` is the row's integer token matrix."""

    def table(self, rows: dict[str, np.ndarray], cell: Cell, split: str) -> pa.Table:
        """Arrow table of the rows: the task schema's columns after ``id`` (ids are added later).

        Row-wise (a row's values depend on that row only): the worker path renders subsets of rows."""


def check_population(sampler: CellSampler, cells: list[Cell], need: int, option: str, what: str) -> None:
    """Fail before any work when a cell has fewer distinct rows than asked."""
    for cell in cells:
        have = sampler.population(cell)
        if need > have:
            raise ConfigError(option, f"cell {cell[0]}x{cell[1]} has only {have:,} distinct rows, "
                              f"asked {need:,} unique ({what})")


def check_counts(counts: Counts) -> None:
    """Per-cell sizes: at least one train row, no negative valid/test counts."""
    if counts.train < 1:
        raise ConfigError("train_per_cell", f"expected at least 1, got {counts.train}")
    for name, v in (("valid_per_cell", counts.valid), ("test_per_cell", counts.test)):
        if v < 0:
            raise ConfigError(name, f"expected a non-negative count, got {v}")


def check_populations(sampler: CellSampler, grid: Grid, counts: Counts) -> None:
    """Every cell holds the distinct rows its splits ask for (checked before any work)."""
    need = counts.train + counts.valid + counts.test
    check_population(sampler, grid.train_cells(), need, "train_per_cell", "train + valid + test per cell")
    check_population(sampler, grid.systematic_cells() + grid.interp_cells() + grid.depth_cells(), counts.test,
                     "test_per_cell", "test per cell")


_M1, _M2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser, in place on a uint64 array."""
    x ^= x >> np.uint64(30)
    x *= _M1
    x ^= x >> np.uint64(27)
    x *= _M2
    x ^= x >> np.uint64(31)
    return x


def row_hash(key: np.ndarray) -> np.ndarray:
    """64-bit hash of each row of an integer matrix: the row's bytes as 64-bit words, each mixed
    with its column index, summed (equal rows -> equal hashes; distinct rows collide ~2^-64)."""
    key = np.ascontiguousarray(key)
    n = key.shape[0]
    raw = key.view(np.uint8).reshape(n, -1)
    pad = (-raw.shape[1]) % 8
    if pad:
        raw = np.concatenate([raw, np.zeros((n, pad), np.uint8)], axis=1)
    words = np.ascontiguousarray(raw).view(np.uint64)
    salt = _mix(np.arange(1, words.shape[1] + 1, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15))
    return _mix(_mix(words ^ salt).sum(axis=1, dtype=np.uint64))


def round_rows(need: int, attempt: int) -> int:
    """Rows drawn in sampling round ``attempt`` while ``need`` rows are missing (a pure function, so a
    worker process can draw a unit's first round before its rows are deduplicated)."""
    # first round: a small margin (large cells rarely repeat); later rounds: twice the rest
    want = need + need // 32 + 16 if attempt == 0 else 2 * need + 64
    return min(BATCH_ROWS, max(want, 256))


def distinct(key: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct row hashes of a round (sorted) and the index of each one's first row."""
    return np.unique(row_hash(key), return_index=True)


class UniqueCell:
    """Draws rows of one cell that never repeat any row drawn before through this object."""

    def __init__(self, sampler: CellSampler, cell: Cell, option: str):
        self.sampler, self.cell, self.option = sampler, cell, option
        self.seen = np.zeros(0, dtype=np.uint64)  # sorted hashes of accepted rows

    def take(self, rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
        """``n`` new distinct rows (first-drawn order), each remembered so it is never drawn again."""
        def draw(attempt: int, m: int) -> tuple[dict[str, np.ndarray], tuple[np.ndarray, np.ndarray]]:
            rows = self.sampler.draw(rng, self.cell, m)
            return rows, distinct(rows["key"])

        parts = [{k: v[fresh] for k, v in rows.items()} for _, rows, fresh in self.rounds(n, draw)]
        return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}

    def rounds(self, n: int, draw: Callable[[int, int], tuple[Any, tuple[np.ndarray, np.ndarray]]]
               ) -> list[tuple[int, Any, np.ndarray]]:
        """Sampling rounds until ``n`` new rows: ``draw(attempt, rows) -> (drawn, distinct(key))``; returns
        (attempt, drawn, indices of its accepted rows) for each round that contributed (shared by
        ``take`` and the worker path, whose first rounds were drawn in other processes)."""
        if n < 1:
            raise ValueError(f"take needs n >= 1, got {n}")
        out: list[tuple[int, Any, np.ndarray]] = []
        got = 0
        for attempt in range(MAX_ROUNDS):
            if got >= n:
                break
            drawn, (u, first) = draw(attempt, round_rows(n - got, attempt))
            fresh = self.accept(u, first, n - got)
            if len(fresh):
                out.append((attempt, drawn, fresh))
                got += len(fresh)
        if got < n:
            raise ConfigError(self.option, f"cell {self.cell[0]}x{self.cell[1]}: found only {len(self.seen):,} "
                              f"distinct rows after {MAX_ROUNDS} sampling rounds (asked more); lower the counts")
        return out

    def accept(self, u: np.ndarray, first: np.ndarray, need: int) -> np.ndarray:
        """Indices (in drawn order) of the first ``need`` rows of a round whose hashes are new, given
        the round's ``distinct`` hashes ``u`` and first indices; remembers them."""
        if len(self.seen):  # sorted queries: searchsorted walks ``seen`` forward (cache-friendly)
            pos = np.minimum(np.searchsorted(self.seen, u), len(self.seen) - 1)
            new = self.seen[pos] != u
            u, first = u[new], first[new]
        order = np.argsort(first)[:need]  # the earliest drawn
        if len(order):
            add = u[np.sort(order)]  # sorted, as u is
            self.seen = np.insert(self.seen, np.searchsorted(self.seen, add), add)
        return first[order]


@dataclass
class Counts:
    """Rows per cell for each split (test_per_cell serves every test split)."""

    train: int
    valid: int
    test: int


def plan_rows(total: int, parts: int) -> list[int]:
    """Split ``total`` into ``parts`` near-equal non-negative counts."""
    base, extra = divmod(total, parts)
    return [base + (i < extra) for i in range(parts)]


def add_ids(task: str, split: str, start: int, t: pa.Table, schema: pa.Schema) -> pa.Table:
    """``t`` with its ``id`` column (rows ``start..``) in front, as the dataset schema."""
    return pa.Table.from_arrays([make_ids(task, split, start, t.num_rows), *t.columns], schema=schema)


def train_plan(cells: list[Cell], counts: Counts) -> list[list[int]]:
    """Rows of each training cell (in ``cells`` order) in each train batch: ``plan[b][i]``."""
    n_batches = max(1, -(-counts.train * len(cells) // BATCH_ROWS))
    shares = [plan_rows(counts.train, n_batches) for _ in cells]
    return [[share[b] for share in shares] for b in range(n_batches)]


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


def merge_perm(sizes: list[int], rng: np.random.Generator) -> np.ndarray:
    """Input row (in concatenated order) of each output row of ``shuffle_merge`` for parts of ``sizes``."""
    labels = rng.permutation(np.repeat(np.arange(len(sizes)), np.array(sizes)))
    order = np.argsort(labels, kind="stable")  # output positions of part 0's rows, then part 1's, ...
    perm = np.empty(len(labels), dtype=np.int64)
    perm[order] = np.arange(len(labels))
    return perm


def shuffle_merge(parts: list[pa.Table], rng: np.random.Generator) -> pa.Table:
    """Concatenate ``parts`` in a uniformly random order of rows.

    Rows within a part are i.i.d., so a random interleaving that keeps each part's own row order
    has the distribution of a full shuffle, and its gather reads each part sequentially (a
    cache-friendly take, markedly faster than a random permutation for long list rows)."""
    return pa.concat_tables(parts).take(merge_perm([t.num_rows for t in parts], rng))


def total_rows(grid: Grid, counts: Counts) -> int:
    n_train = len(grid.train_cells())
    return (n_train * (counts.train + counts.valid + counts.test)
            + (len(grid.systematic_cells()) + len(grid.interp_cells()) + len(grid.depth_cells())) * counts.test)


# --- worker processes -----------------------------------------------------------------------------
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
        need = np.unique(perm)  # input rows the slice uses, in concatenated order
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
    from benchgen.dataset import encode_shard

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


def write_grid_dataset(*, task: str, grid: Grid, sampler: CellSampler, counts: Counts, seed: int,
                       config: dict, vocab: Vocab, schema: pa.Schema, out: str | Path, overwrite: bool,
                       progress: bool, description: str, option: str = "train_per_cell",
                       workers: int | None = None) -> Path:
    """Generate every split of a grid task and write it atomically (DatasetWriter).

    With ``workers`` > 1 (default: the CPUs this job may use) and at least MIN_PARALLEL_ROWS train
    rows, train is sampled and encoded on that many worker processes; the files are byte-identical
    to the in-process ones either way."""
    import shutil
    import tempfile

    from benchgen.tasks.parallel import resolve_workers, spawn_pool

    from benchgen.dataset import DatasetWriter
    from benchgen.progress import bar as progress_bar

    workers = resolve_workers(workers)  # before the writer: a bad count leaves nothing behind
    writer = DatasetWriter(out, task=task, config=config, seed=seed, vocab=vocab, schema=schema,
                           overwrite=overwrite, description=description)
    n_train = counts.train * len(grid.train_cells())
    # in-memory generation (an override writer class) and small datasets stay in-process
    parallel = workers > 1 and type(writer) is DatasetWriter and n_train >= MIN_PARALLEL_ROWS
    with progress_bar(total_rows(grid, counts), task, "row", progress) as bar, writer:
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
    return Path(out)


# --- audit helpers (plain Python, independent of the generator above) ------------------------------
def expected_cells(cfg: dict, depth_key: str, width_key: str, test_key: str,
                   interp_key: str | None = None) -> dict[str, set[Cell]]:
    """Allowed (depth, width) cells per split, recomputed from the manifest's config."""
    held = {tuple(c) for c in cfg["held_out"]}
    train = {(d, w) for d in cfg[depth_key] for w in cfg[width_key]} - held
    depth = {(d, w) for d in cfg[test_key] for w in cfg[width_key]}
    interp = {(d, w) for d in cfg.get(interp_key or "", []) for w in cfg[width_key]}
    return {"train": train, "valid": train, "test_id": train, "test_systematic": held, "test_interp": interp,
            "test_depth": depth}


def audit_grid(dataset, extra_cols: list[str], check_row, depth_key: str, width_key: str,
               test_key: str, interp_key: str | None = None) -> list[str]:
    """Run ``check_row(row) -> (problems, well_formed)`` over every row (plain Python), then check
    the split guarantees on the (depth, width) cells and queries of the well-formed rows."""
    cols = ["depth", "input_ids", "target_ids", "prompt", "answer", "width", *extra_cols]
    cells: dict[str, list[Cell]] = {}
    queries: dict[str, list[tuple]] = {}
    problems: list[str] = []
    for split in dataset.splits:
        bad: dict[str, int] = {}
        cells[split], queries[split] = [], []
        for batch in dataset.iter_batches(split, columns=cols):
            b = batch.to_pydict()
            for values in zip(*(b[c] for c in cols)):
                row = dict(zip(cols, values))
                msgs, well_formed = check_row(row)
                for msg in msgs:
                    bad[msg] = bad.get(msg, 0) + 1
                if well_formed:
                    cells[split].append((row["depth"], row["width"]))
                    queries[split].append(tuple(row["input_ids"]))
        problems += [f"split '{split}': {msg} ({n} rows)" for msg, n in bad.items()]
    return problems + audit_cells(cells, queries, dataset.config, depth_key, width_key, test_key, interp_key)


def audit_cells(cells_by_split: dict[str, list[Cell]], queries: dict[str, list[tuple]], cfg: dict,
                depth_key: str, width_key: str, test_key: str, interp_key: str | None = None) -> list[str]:
    """Split guarantees on (depth, width) cells and query overlap, from decoded rows."""
    problems = []
    allowed = expected_cells(cfg, depth_key, width_key, test_key, interp_key)
    train_d = {d for d, _ in allowed["train"]}
    train_w = {w for _, w in allowed["train"]}
    for split, cells in cells_by_split.items():
        bad = sorted({c for c in cells if c not in allowed.get(split, set())})
        if bad:
            problems.append(f"split '{split}': rows in cells {bad} outside its allowed cells")
        if split == "test_systematic":
            for d, w in set(cells):
                if d not in train_d or w not in train_w:
                    problems.append(f"split 'test_systematic': cell {d}x{w} is not an interpolation of training")
                if (d, w) in allowed["train"]:
                    problems.append(f"split 'test_systematic': cell {d}x{w} also occurs in training")
        if split == "test_depth" and cells and min(d for d, _ in cells) <= max(train_d):
            problems.append("split 'test_depth': depths not above the largest training depth")
        if split == "test_interp":
            seen = {d for d, _ in cells_by_split.get("train", [])}
            for d in sorted({d for d, _ in cells}):
                if d in train_d or d in seen:
                    problems.append(f"split 'test_interp': depth {d} is trained")
                if not (train_d and min(train_d) < d < max(train_d)):
                    problems.append(f"split 'test_interp': depth {d} is not strictly between training depths")
    for split, qs in queries.items():
        if len(set(qs)) != len(qs):
            problems.append(f"split '{split}': {len(qs) - len(set(qs))} repeated queries")
    train_q = set(queries.get("train", []))
    for split in [s for s in queries if s != "train"]:
        overlap = train_q & set(queries[split])
        if overlap:
            problems.append(f"split '{split}': {len(overlap)} queries also occur in train")
    if set(queries.get("valid", [])) & set(queries.get("test_id", [])):
        problems.append("valid and test_id share queries")
    return problems
