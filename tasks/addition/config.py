"""Config and presets of the multi-operand addition task (one dataclass; presets as data)."""

from __future__ import annotations

from dataclasses import dataclass, field

from benchgen.config import Preset
from benchgen.errors import ConfigError
from benchgen.tasks.grid.cells import Counts, Grid, check_counts, check_populations
from benchgen.tasks.sizes import check_size

MAX_OPERANDS, MAX_WIDTH = 4096, 64


@dataclass
class AdditionConfig:
    """One addition dataset: the (operands, width) grid, split sizes, answer order, seed."""

    train_operands: tuple[int, ...] = field(default=(2, 3, 4), metadata={
        "help": "operand counts n in training, e.g. 2-4 or 2,4,8,16,32"})
    train_widths: tuple[int, ...] = field(default=(2, 3), metadata={
        "help": "digits per operand in training, e.g. 2-3"})
    held_out: tuple[tuple[int, int], ...] = field(default=((4, 3),), metadata={
        "help": "held-out (n x width) cells for test_systematic, e.g. 4x3,16x4; each n and width must "
                "occur in another training cell"})
    test_operands: tuple[int, ...] = field(default=(5, 6), metadata={
        "help": "operand counts of test_depth (all above max(train-operands)), at every training width"})
    interp_operands: tuple[int, ...] = field(default=(), metadata={
        "help": "operand counts of test_interp (strictly between training counts, never trained), at every "
                "training width, e.g. 24; empty for none"})
    train_per_cell: int = field(default=1200, metadata={"help": "train rows per training cell"})
    valid_per_cell: int = field(default=100, metadata={"help": "valid rows per training cell"})
    test_per_cell: int = field(default=200, metadata={
        "help": "rows per cell of test_id, test_systematic and test_depth"})
    reverse_answer: bool = field(default=False, metadata={
        "help": "write answer digits least significant first (length-generalisation convention)"})
    seed: int = field(default=0, metadata={"help": "random seed (same seed + config => identical files)"})

    def grid(self) -> Grid:
        return Grid(tuple(self.train_operands), tuple(self.train_widths), tuple(map(tuple, self.held_out)),
                    tuple(self.test_operands), depth_option="train_operands", width_option="train_widths",
                    held_out_option="held_out", test_option="test_operands",
                    interp_depths=tuple(self.interp_operands), interp_option="interp_operands")

    def counts(self) -> Counts:
        return Counts(self.train_per_cell, self.valid_per_cell, self.test_per_cell)

    def validate(self) -> None:
        """Reject impossible values before any work (one option named per error)."""
        for name in ("train_operands", "test_operands", "interp_operands"):
            bad = [n for n in getattr(self, name) if not 2 <= n <= MAX_OPERANDS]
            if bad:
                raise ConfigError(name, f"operand counts must be in 2..{MAX_OPERANDS}, got {bad}")
        bad = [w for w in self.train_widths if not 1 <= w <= MAX_WIDTH]
        if bad:
            raise ConfigError("train_widths", f"widths must be in 1..{MAX_WIDTH}, got {bad}")
        check_counts(self.counts())
        grid = self.grid()
        grid.validate()
        from benchgen.tasks.addition.generator import Sampler

        check_populations(Sampler(self), grid, self.counts())

    def check_size(self) -> None:
        check_size(self)


PRESETS = {
    "saunshi-addition": Preset(
        description="Saunshi et al. 2025's grid exactly: 3-digit operands (width 3 only), train n in "
                    "{2,4,8,16,32}; test_id holds the trained n (the paper's n=8,16,32), test_interp the "
                    "untrained n=24; no test_systematic or test_depth (the paper has none); 100,000 train "
                    "rows per n (500k), 1,000 per test cell",
        config={"train_operands": (2, 4, 8, 16, 32), "train_widths": (3,), "held_out": (),
                "test_operands": (), "interp_operands": (24,), "train_per_cell": 100_000,
                "valid_per_cell": 1000, "test_per_cell": 1000, "reverse_answer": False, "seed": 0},
    ),
    "addition-grid": Preset(
        description="Saunshi-style mixed grid: train n in {2,4,8,16,32} at widths 3 and 4 minus held-out "
                    "cell 16x4 (test_systematic), test_interp n=24, test_depth n in {40,48}; 100,000 "
                    "train rows per cell (900k), 1,000 per test cell",
        config={"train_operands": (2, 4, 8, 16, 32), "train_widths": (3, 4), "held_out": ((16, 4),),
                "test_operands": (40, 48), "interp_operands": (24,), "train_per_cell": 100_000,
                "valid_per_cell": 1000, "test_per_cell": 1000, "reverse_answer": False, "seed": 0},
    ),
    "addition-small": Preset(
        description="CPU-sized: widths {2,3}, train n in {2,3,4} minus held-out cell 4x3, test_depth "
                    "n in {5,6}; 1,200 train rows per cell (6,000), 200 per test cell",
        config={"train_operands": (2, 3, 4), "train_widths": (2, 3), "held_out": ((4, 3),),
                "test_operands": (5, 6), "train_per_cell": 1200, "valid_per_cell": 100,
                "test_per_cell": 200, "reverse_answer": False, "seed": 0},
    ),
}
