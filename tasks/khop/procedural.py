"""Procedural k-hop queries over the same knowledge graph the files use (same config and seed).

A depth-k item is a chain drawn uniformly over every k-edge chain of the ID subgraph (the files'
train, valid, test_id and test_depth population; OOD triples are only ever atomic facts in train),
with replacement; depth 1 draws an atomic fact uniformly over every triple, ID and OOD, as train holds
them all (so depth 1 has no held-out split).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from benchgen.errors import ConfigError
from benchgen.tasks.khop.config import KhopConfig
from benchgen.tasks.khop.generator import make_vocab, pad_chains, rows_table
from benchgen.tasks.khop.graph import ChainSampler, Subgraph, build_graph

MAX_DEPTH = 4096


class KhopProcedural:
    """:class:`benchgen.task.Procedural` for khop: one cell per depth (its hop count)."""

    knob = "hops"

    def __init__(self, cfg: KhopConfig):
        """The graph ``benchgen generate`` builds for ``cfg``, its ID subgraph and every triple."""
        cfg.validate()
        self.cfg, self.graph, self.vocab = cfg, build_graph(cfg), make_vocab(cfg)
        self.id_graph = Subgraph.of(self.graph, ood=False)
        h, r, t, _ = self.graph.triples()
        self.atomics = np.stack([h, r, t], axis=1).astype(np.int32)
        self._samplers: dict[int, ChainSampler] = {}

    def depths(self) -> tuple[int, ...]:
        """The training hops."""
        return tuple(sorted(self.cfg.train_hops))

    def levels(self) -> tuple[int, ...]:
        """Training, interpolation and test hops."""
        c = self.cfg
        return tuple(sorted({*c.train_hops, *c.interp_hops, *c.test_hops}))

    def _sampler(self, k: int) -> ChainSampler:
        """The chain sampler of ``k`` hops (built once; an empty population is one line)."""
        if k not in self._samplers:
            sampler = ChainSampler(self.id_graph, k)
            if not sampler.total:
                raise ConfigError("hops", f"the ID graph has no {k}-hop chains")
            self._samplers[k] = sampler
        return self._samplers[k]

    def cells(self, depth: int) -> list[int]:
        """One cell per depth; 1 = atomic facts."""
        if not 1 <= depth <= MAX_DEPTH:
            raise ConfigError("hops", f"expected 1..{MAX_DEPTH}, got {depth}")
        if depth > 1:
            self._sampler(depth)
        return [depth]

    def draw(self, rng: np.random.Generator, cell: int, m: int) -> dict[str, np.ndarray]:
        """``m`` uniform chains (or facts) of ``cell`` hops as ``key``."""
        if cell == 1:
            return {"key": self.atomics[rng.integers(0, len(self.atomics), size=m)]}
        return {"key": self._sampler(cell).draw(m, rng)}

    def table(self, rows: dict[str, np.ndarray], cell: int, split: str) -> pa.Table:
        """The chains rendered as khop rows."""
        chains = rows["key"]
        return rows_table(chains, np.full(len(chains), cell, dtype=np.int32), self.graph, self.vocab, self.cfg, split)

    def tables(self, parts: list[tuple[int, dict[str, np.ndarray]]], split: str) -> pa.Table:
        """Rows of several depths rendered in one call (one -1-padded chain matrix), in the given order."""
        chains, depth = pad_chains([rows["key"] for _, rows in parts])
        return rows_table(chains, depth, self.graph, self.vocab, self.cfg, split)

    def shared(self, cell: int) -> bool:
        """Atomic facts (depth 1) are all in train, as in the files."""
        return cell == 1
