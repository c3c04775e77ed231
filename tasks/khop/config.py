"""Config and presets of the k-hop composition task (one dataclass; presets as data)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

from benchgen.config import Preset
from benchgen.errors import ConfigError
from benchgen.tasks.sizes import check_size


@dataclass
class KhopConfig:
    """One k-hop dataset: graph shape, OOD share, hop ranges and split sizes."""

    structure: Literal["random", "permutation"] = field(default="random", metadata={
        "help": "random: each entity gets out-degree distinct relations with uniform tails (Grokked); "
                "permutation: every relation is a bijection of the entities (Loop-Think-Generalize)"})
    num_entities: int = field(default=200, metadata={"help": "number of entities <e_i>"})
    num_relations: int = field(default=20, metadata={"help": "number of relations <r_j>"})
    out_degree: int = field(default=10, metadata={
        "help": "outgoing relations per entity (must equal num-relations for permutation)"})
    ood_fraction: float = field(default=0.1, metadata={
        "help": "share of atomic triples marked OOD (chosen by triple, not by entity)"})
    train_hops: tuple[int, ...] = field(default=(2,), metadata={
        "help": "composition depths in training, e.g. 2 or 2-5 (1-hop atomics are always in train)"})
    test_hops: tuple[int, ...] = field(default=(3, 4), metadata={
        "help": "depths of test_depth, all above max(train-hops), e.g. 3-4 or 6,8"})
    interp_hops: tuple[int, ...] = field(default=(), metadata={
        "help": "depths of test_interp: strictly between min and max train-hops and never trained, e.g. 3 "
                "with train-hops 2,4 (test-per-hop queries each); empty for none"})
    inferred_ratio: float | None = field(default=None, metadata={
        "help": "phi: train compositions = round(phi * |ID atomics|), split evenly over train-hops "
                "(alternative to train-per-hop)"})
    train_per_hop: int | None = field(default=2000, metadata={
        "help": "train compositions per training hop (alternative to inferred-ratio)"})
    cap_train: bool = field(default=False, metadata={
        "help": "a hop with fewer chains than train + valid + test keeps all chains left after valid and test "
                "for train (small graphs: shallow hops are short, deep hops stay large)"})
    valid_per_hop: int = field(default=200, metadata={"help": "valid queries per training hop"})
    test_per_hop: int = field(default=200, metadata={
        "help": "test_id queries per training hop, test_interp and test_depth queries per hop"})
    systematic_per_hop: int = field(default=200, metadata={
        "help": "at most this many test_systematic (OOD-only) queries per training hop "
                "(fewer when the OOD subgraph has fewer chains)"})
    seed: int = field(default=0, metadata={"help": "random seed (same seed + config => identical files)"})

    __exclusive__ = (("inferred_ratio", "train_per_hop"),)

    def estimated_rows(self) -> int:
        """Upper estimate of the rows written, per split as they are drawn (for the size limit)."""
        atomics = max(0, self.num_entities) * max(0, self.out_degree)
        train = (round(self.inferred_ratio * atomics) if self.inferred_ratio is not None
                 and math.isfinite(self.inferred_ratio) else len(self.train_hops) * max(0, self.train_per_hop or 0))
        per_train_hop = max(0, self.valid_per_hop) + max(0, self.test_per_hop) + max(0, self.systematic_per_hop)
        return (atomics + max(0, train) + len(self.train_hops) * per_train_hop
                + (len(self.test_hops) + len(self.interp_hops)) * max(0, self.test_per_hop))

    def validate(self) -> None:
        """Reject impossible values before any work (one option named per error)."""
        if self.structure not in ("random", "permutation"):
            raise ConfigError("structure", f"expected random or permutation, got {self.structure!r}")
        if self.num_entities < 2:
            raise ConfigError("num_entities", f"expected at least 2, got {self.num_entities}")
        if self.num_relations < 1:
            raise ConfigError("num_relations", f"expected at least 1, got {self.num_relations}")
        if not 1 <= self.out_degree <= self.num_relations:
            raise ConfigError("out_degree", f"expected 1..num-relations ({self.num_relations}), got {self.out_degree}")
        if self.structure == "permutation" and self.out_degree != self.num_relations:
            raise ConfigError("out_degree", f"structure=permutation needs out-degree == num-relations "
                                            f"({self.num_relations}), got {self.out_degree}")
        if not 0.0 <= self.ood_fraction < 1.0:
            raise ConfigError("ood_fraction", f"expected a value in [0, 1), got {self.ood_fraction}")
        if not self.train_hops:
            raise ConfigError("train_hops", "expected at least one hop count")
        if min(self.train_hops) < 2:
            raise ConfigError("train_hops", f"expected hops >= 2 (atomics are always in train), got {list(self.train_hops)}")
        if self.test_hops and min(self.test_hops) <= max(self.train_hops):
            overlap = sorted(h for h in self.test_hops if h <= max(self.train_hops))
            raise ConfigError("test_hops", f"must all be above max(train-hops) = {max(self.train_hops)}; got {overlap}")
        for h in self.interp_hops:
            if h in self.train_hops or not min(self.train_hops) < h < max(self.train_hops):
                raise ConfigError("interp_hops", f"hop {h} must be strictly between min and max train-hops "
                                                 f"{list(self.train_hops)} and not trained")
        if (self.inferred_ratio is None) == (self.train_per_hop is None):
            raise ConfigError("train_per_hop", "set exactly one of inferred-ratio or train-per-hop")
        if self.inferred_ratio is not None and self.inferred_ratio < 0:
            raise ConfigError("inferred_ratio", f"expected >= 0, got {self.inferred_ratio}")
        for name in ("train_per_hop", "valid_per_hop", "test_per_hop", "systematic_per_hop"):
            v = getattr(self, name)
            if v is not None and v < 0:
                raise ConfigError(name, f"expected a non-negative count, got {v}")

    def check_size(self) -> None:
        check_size(self)

    @property
    def n_triples(self) -> int:
        return self.num_entities * self.out_degree

    def train_counts(self) -> dict[int, int]:
        """Train compositions per training hop."""
        hops = list(self.train_hops)
        if self.train_per_hop is not None:
            return {h: self.train_per_hop for h in hops}
        n_id = self.n_triples - int(round(self.ood_fraction * self.n_triples))
        total = int(round(self.inferred_ratio * n_id))
        base, extra = divmod(total, len(hops))
        return {h: base + (i < extra) for i, h in enumerate(hops)}


PRESETS = {
    "grokked-composition": Preset(
        description="Wang et al. 2024 composition: 2000 entities, 200 relations, degree 20, 5% OOD, "
                    "2-hop, phi=7.2 (273.6k inferred facts), 3000 ID / up to 3000 OOD test queries; "
                    "test_depth adds 3-hop ID chains",
        config={"structure": "random", "num_entities": 2000, "num_relations": 200, "out_degree": 20,
                "ood_fraction": 0.05, "train_hops": (2,), "test_hops": (3,), "inferred_ratio": 7.2,
                "train_per_hop": None, "valid_per_hop": 3000, "test_per_hop": 3000,
                "systematic_per_hop": 3000, "seed": 0},
    ),
    "ltg-depth": Preset(
        description="Loop-Think-Generalize depth extrapolation: 200 entities, 10 permutation relations, "
                    "train hops 2-20 (15,000 each), test_depth hops 21-40 (750 each), no OOD",
        config={"structure": "permutation", "num_entities": 200, "num_relations": 10, "out_degree": 10,
                "ood_fraction": 0.0, "train_hops": tuple(range(2, 21)), "test_hops": tuple(range(21, 41)),
                "inferred_ratio": None, "train_per_hop": 15000, "valid_per_hop": 750,
                "test_per_hop": 750, "systematic_per_hop": 0, "seed": 0},
    ),
    "khop-depth-small": Preset(
        description="CPU depth extrapolation: 32 entities, 4 permutation relations, atomics + train hops 2-6 "
                    "(every chain left after valid/test, at most 20,000 per hop), test_depth hops 7-12 "
                    "(200 each), no OOD; chance 1/32",
        config={"structure": "permutation", "num_entities": 32, "num_relations": 4, "out_degree": 4,
                "ood_fraction": 0.0, "train_hops": (2, 3, 4, 5, 6), "test_hops": tuple(range(7, 13)),
                "inferred_ratio": None, "train_per_hop": 20000, "cap_train": True, "valid_per_hop": 100,
                "test_per_hop": 200, "systematic_per_hop": 0, "seed": 0},
    ),
    "khop-small": Preset(
        description="CPU-sized depth + systematic benchmark: 96 entities, 8 permutation relations, "
                    "15% OOD, train hops 2-4 (3000 each), test_depth hops 5-6",
        config={"structure": "permutation", "num_entities": 96, "num_relations": 8, "out_degree": 8,
                "ood_fraction": 0.15, "train_hops": (2, 3, 4), "test_hops": (5, 6),
                "inferred_ratio": None, "train_per_hop": 3000, "valid_per_hop": 200,
                "test_per_hop": 300, "systematic_per_hop": 300, "seed": 0},
    ),
}
