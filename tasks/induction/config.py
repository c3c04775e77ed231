"""Config and presets of the p-hop induction task (one dataclass; presets as data)."""

from __future__ import annotations

from dataclasses import dataclass, field

from benchgen.config import Preset
from benchgen.errors import ConfigError
from benchgen.tasks.grid.cells import Counts, Grid, check_counts, check_populations
from benchgen.tasks.sizes import check_size

MAX_LENGTH = 8192


@dataclass
class InductionConfig:
    """One p-hop dataset: alphabet, the (p, length) grid, split sizes, seed."""

    alphabet: int = field(default=4, metadata={"help": "number of letters (2..26)"})
    train_hops: tuple[int, ...] = field(default=(8, 12), metadata={
        "help": "hop counts p in training, e.g. 1-3 or 16,32"})
    train_lengths: tuple[int, ...] = field(default=(256, 320), metadata={
        "help": "sequence lengths n in training, e.g. 128,256"})
    held_out: tuple[tuple[int, int], ...] = field(default=((12, 256),), metadata={
        "help": "held-out (p x length) cells for test_systematic, e.g. 32x128; each p and length must "
                "occur in another training cell"})
    test_hops: tuple[int, ...] = field(default=(16,), metadata={
        "help": "hop counts of test_depth (all above max(train-hops)), at every training length"})
    interp_hops: tuple[int, ...] = field(default=(), metadata={
        "help": "hop counts of test_interp (strictly between training hops, never trained), at every "
                "training length; empty for none"})
    train_per_cell: int = field(default=2000, metadata={"help": "train rows per training cell"})
    valid_per_cell: int = field(default=200, metadata={"help": "valid rows per training cell"})
    test_per_cell: int = field(default=2000, metadata={
        "help": "rows per cell of test_id, test_systematic and test_depth"})
    seed: int = field(default=0, metadata={"help": "random seed (same seed + config => identical files)"})

    def grid(self) -> Grid:
        return Grid(tuple(self.train_hops), tuple(self.train_lengths), tuple(map(tuple, self.held_out)),
                    tuple(self.test_hops), depth_option="train_hops", width_option="train_lengths",
                    held_out_option="held_out", test_option="test_hops", interp_depths=tuple(self.interp_hops),
                    interp_option="interp_hops")

    def counts(self) -> Counts:
        return Counts(self.train_per_cell, self.valid_per_cell, self.test_per_cell)

    def validate(self) -> None:
        """Reject impossible values before any work (one option named per error)."""
        if not 2 <= self.alphabet <= 26:
            raise ConfigError("alphabet", f"expected 2..26 letters, got {self.alphabet}")
        for name in ("train_hops", "test_hops", "interp_hops"):
            bad = [p for p in getattr(self, name) if p < 1]
            if bad:
                raise ConfigError(name, f"hop counts must be >= 1, got {bad}")
        bad = [n for n in self.train_lengths if not 3 <= n <= MAX_LENGTH]
        if bad:
            raise ConfigError("train_lengths", f"lengths must be in 3..{MAX_LENGTH}, got {bad}")
        check_counts(self.counts())
        grid = self.grid()
        grid.validate()
        for option, cells in (("train_hops", grid.train_cells()), ("held_out", grid.systematic_cells()),
                              ("interp_hops", grid.interp_cells()), ("test_hops", grid.depth_cells())):
            for p, n in cells:
                if p > n - 2:
                    raise ConfigError(option, f"cell {p}x{n}: a {p}-hop chain needs length >= {p + 2}")
        from benchgen.tasks.induction.generator import Sampler

        check_populations(Sampler(self), grid, self.counts())

    def check_size(self) -> None:
        check_size(self)


NATURAL = ("Every cell is natural: the conditioned law is sampled exactly, and uniform sequences "
           "meet the condition with probability >= 0.97 there, so chains have their unconditioned gaps")


def _saunshi(p: int) -> Preset:
    """Saunshi et al. 2025's one-p grid: alphabet 4, length 256, train and test at p (one model per p)."""
    return Preset(
        description=f"Saunshi et al. 2025's p={p} grid exactly: alphabet 4, length 256, train and test at "
                    f"p={p} (one model per p); 100,000 train rows, 1,000 valid and test_id. " + NATURAL,
        config={"alphabet": 4, "train_hops": (p,), "train_lengths": (256,), "held_out": (), "test_hops": (),
                "interp_hops": (), "train_per_cell": 100_000, "valid_per_cell": 1000,
                "test_per_cell": 1000, "seed": 0},
    )


PRESETS = {
    "saunshi-phop-16": _saunshi(16),
    "saunshi-phop-32": _saunshi(32),
    "phop-grid": Preset(
        description="Saunshi-style mixed grid: alphabet 4, p in {16,32} at lengths {256,512} minus "
                    "held-out cell 32x256 (test_systematic), test_interp p=24, test_depth p=48 at both "
                    "lengths; 100,000 train rows per cell (300k), 1,000 per test cell. " + NATURAL,
        config={"alphabet": 4, "train_hops": (16, 32), "train_lengths": (256, 512),
                "held_out": ((32, 256),), "test_hops": (48,), "interp_hops": (24,),
                "train_per_cell": 100_000, "valid_per_cell": 1000, "test_per_cell": 1000, "seed": 0},
    ),
    "phop-small": Preset(
        description="CPU-sized: alphabet 4, p in {8,12} at lengths {256,320} minus held-out cell 12x256, "
                    "test_interp p=10, test_depth p=16; 2,000 train rows per cell (6,000), 2,000 per test "
                    "cell. p >= 8 because shallower p lets letter shortcuts beat chance; lengths >= 256 and "
                    "2,000-row test cells because the most frequent letter is naturally right ~0.25+0.3/sqrt(n) "
                    "of the time (0.285 at n=128), which 400-row cells cannot tell from a leak. " + NATURAL,
        config={"alphabet": 4, "train_hops": (8, 12), "train_lengths": (256, 320), "held_out": ((12, 256),),
                "test_hops": (16,), "interp_hops": (10,), "train_per_cell": 2000, "valid_per_cell": 200,
                "test_per_cell": 2000, "seed": 0},
    ),
}
