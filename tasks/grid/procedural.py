"""Procedural sampling for the (depth, width) grid tasks: the task's own cell sampler, one depth at a time.

At a depth d the train distribution is every cell (d, w) over the training widths that the files do
not hold out (held-out cells are test_systematic's and never train); cells whose population is empty
(e.g. more hops than a sequence length allows) are left out. Draws are independent and uniform within
a cell, exactly the files' sampler before their per-cell deduplication.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from benchgen.errors import ConfigError
from benchgen.tasks.grid.cells import Cell, CellSampler, Grid


class GridProcedural:
    """:class:`benchgen.task.Procedural` over a grid and its cell sampler."""

    def __init__(self, grid: Grid, sampler: CellSampler, knob: str, bounds: tuple[int, int]):
        """The grid, the task's cell sampler, the knob's name and its allowed range."""
        self.grid, self.sampler, self.knob, self.bounds = grid, sampler, knob, bounds

    def depths(self) -> tuple[int, ...]:
        """The training depths."""
        return tuple(sorted(self.grid.depths))

    def levels(self) -> tuple[int, ...]:
        """Training, interpolation and extrapolation depths."""
        g = self.grid
        return tuple(sorted({*g.depths, *g.interp_depths, *g.test_depths}))

    def cells(self, depth: int) -> list[Cell]:
        """The training widths at ``depth`` that are neither held out nor empty."""
        lo, hi = self.bounds
        if not lo <= depth <= hi:
            raise ConfigError(self.knob, f"expected {lo}..{hi}, got {depth}")
        held = set(self.grid.held_out)
        cells = [(depth, w) for w in self.grid.widths if (depth, w) not in held]
        try:
            cells = [c for c in cells if self.sampler.population(c) > 0]
        except (ValueError, OverflowError):
            cells = []
        if not cells:
            raise ConfigError(self.knob, f"no training width has {self.knob} = {depth} (widths "
                                         f"{list(self.grid.widths)}, held out {list(self.grid.held_out)})")
        return cells

    def draw(self, rng: np.random.Generator, cell: Cell, m: int) -> dict[str, np.ndarray]:
        """``m`` uniform rows of ``cell`` (the files' sampler)."""
        return self.sampler.draw(rng, cell, m)

    def table(self, rows: dict[str, np.ndarray], cell: Cell, split: str) -> pa.Table:
        """The rows rendered by the task's sampler."""
        return self.sampler.table(rows, cell, split)

    def shared(self, cell: Cell) -> bool:
        """No grid cell is train-only."""
        return False
