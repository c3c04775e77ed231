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
hold an equal share of every training cell, shuffled, so memory stays bounded.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import pyarrow as pa

from benchgen import seeding
from benchgen.errors import ConfigError
from benchgen.schema import make_ids
from benchgen.vocab import Vocab

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
        """Arrow table of the rows: the task schema's columns after ``id`` (ids are added later)."""


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


class UniqueCell:
    """Draws rows of one cell that never repeat any row drawn before through this object."""

    def __init__(self, sampler: CellSampler, cell: Cell, option: str):
        self.sampler, self.cell, self.option = sampler, cell, option
        self.seen = np.zeros(0, dtype=np.uint64)  # sorted hashes of accepted rows

    def take(self, rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
        """``n`` new distinct rows (first-drawn order), each remembered so it is never drawn again."""
        if n < 1:
            raise ValueError(f"take needs n >= 1, got {n}")
        parts: list[dict[str, np.ndarray]] = []
        got = 0
        for attempt in range(MAX_ROUNDS):
            if got >= n:
                break
            # first round: a small margin (large cells rarely repeat); later rounds: twice the rest
            want = (n - got) + (n - got) // 32 + 16 if attempt == 0 else 2 * (n - got) + 64
            m = min(BATCH_ROWS, max(want, 256))
            rows = self.sampler.draw(rng, self.cell, m)
            h = row_hash(rows["key"])
            _, first = np.unique(h, return_index=True)
            first = np.sort(first)
            if len(self.seen):
                pos = np.minimum(np.searchsorted(self.seen, h[first]), len(self.seen) - 1)
                first = first[self.seen[pos] != h[first]]
            fresh = first[: n - got]
            if len(fresh):
                parts.append({k: v[fresh] for k, v in rows.items()})
                self.seen = np.sort(np.concatenate([self.seen, h[fresh]]), kind="stable")
                got += len(fresh)
        if got < n:
            raise ConfigError(self.option, f"cell {self.cell[0]}x{self.cell[1]}: found only {len(self.seen):,} "
                              f"distinct rows after {MAX_ROUNDS} sampling rounds (asked more); lower the counts")
        return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


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


def split_tables(task: str, grid: Grid, sampler: CellSampler, counts: Counts, seed: int, option: str,
                 schema: pa.Schema, tick: Callable[[int], None]) -> Iterator[tuple[str, Iterator[pa.Table]]]:
    """Yield (split, stream of tables) in write order; every table already carries its ids."""
    cells = grid.train_cells()
    uniq = {c: UniqueCell(sampler, c, option) for c in cells}

    def with_ids(tables: Iterator[pa.Table], split: str) -> Iterator[pa.Table]:
        start = 0
        for t in tables:
            ids = make_ids(task, split, start, t.num_rows)
            start += t.num_rows
            tick(t.num_rows)
            yield pa.Table.from_arrays([ids, *t.columns], schema=schema)

    def train() -> Iterator[pa.Table]:
        n_batches = max(1, -(-counts.train * len(cells) // BATCH_ROWS))
        shares = {c: plan_rows(counts.train, n_batches) for c in cells}
        for b in range(n_batches):
            parts = []
            for c in cells:
                if shares[c][b]:
                    rows = uniq[c].take(seeding.rng(seed, task, "train", c[0], c[1], b), shares[c][b])
                    parts.append(sampler.table(rows, c, "train"))
            if parts:
                yield shuffle_merge(parts, seeding.rng(seed, task, "train", "shuffle", b))

    def per_cell(split: str, cell_list: list[Cell], n: int, pool: dict[Cell, UniqueCell]) -> Iterator[pa.Table]:
        for c in cell_list:
            u = pool.get(c) or UniqueCell(sampler, c, option)
            for b, m in enumerate(plan_rows(n, max(1, -(-n // BATCH_ROWS)))):
                if m:
                    yield sampler.table(u.take(seeding.rng(seed, task, split, c[0], c[1], b), m), c, split)

    plan = [("train", counts.train, cells, lambda: train()),
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


def shuffle_merge(parts: list[pa.Table], rng: np.random.Generator) -> pa.Table:
    """Concatenate ``parts`` in a uniformly random order of rows.

    Rows within a part are i.i.d., so a random interleaving that keeps each part's own row order
    has the distribution of a full shuffle, and its gather reads each part sequentially (a
    cache-friendly take, markedly faster than a random permutation for long list rows)."""
    sizes = np.array([t.num_rows for t in parts])
    labels = rng.permutation(np.repeat(np.arange(len(parts)), sizes))
    order = np.argsort(labels, kind="stable")  # output positions of part 0's rows, then part 1's, ...
    perm = np.empty(len(labels), dtype=np.int64)
    perm[order] = np.arange(len(labels))
    return pa.concat_tables(parts).take(perm)


def total_rows(grid: Grid, counts: Counts) -> int:
    n_train = len(grid.train_cells())
    return (n_train * (counts.train + counts.valid + counts.test)
            + (len(grid.systematic_cells()) + len(grid.interp_cells()) + len(grid.depth_cells())) * counts.test)


def write_grid_dataset(*, task: str, grid: Grid, sampler: CellSampler, counts: Counts, seed: int,
                       config: dict, vocab: Vocab, schema: pa.Schema, out: str | Path, overwrite: bool,
                       progress: bool, description: str, option: str = "train_per_cell") -> Path:
    """Generate every split of a grid task and write it atomically (DatasetWriter)."""
    from tqdm.auto import tqdm

    from benchgen.dataset import DatasetWriter

    writer = DatasetWriter(out, task=task, config=config, seed=seed, vocab=vocab, schema=schema,
                           overwrite=overwrite, description=description)
    with tqdm(total=total_rows(grid, counts), desc=task, unit="row", disable=not progress) as bar, writer:
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
