"""The (depth, width) cell grid shared by the addition and induction tasks: cells, samplers, unique rows.

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

``stream.write_grid`` streams every split batch by batch into the writer it is handed; train
batches hold an equal share of every training cell, shuffled, so memory stays bounded. Large
datasets sample and encode train on worker processes (``parallel.py``), byte-identically.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import pyarrow as pa

from benchgen.errors import ConfigError
from benchgen.schema import make_ids

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
