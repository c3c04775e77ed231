"""k-hop knowledge-graph composition (Grokked Transformers; Loop, Think & Generalize).

A knowledge graph of entities ``<e_i>`` and relations ``<r_j>``; a k-hop query
``<e_h><r_1>...<r_k>`` asks for the entity reached by following the chain. Splits:

- train: every atomic triple (ID and OOD) as a 1-hop query + ID-only compositions of ``train_hops``;
- valid / test_id: held-out ID compositions of ``train_hops`` (disjoint from train and each other);
- test_systematic: compositions of ``train_hops`` built only from OOD triples (each OOD triple is
  seen in training as an atomic fact, never inside a composition); mixed chains are dropped;
- test_interp: ID compositions of ``interp_hops`` (strictly between the smallest and largest
  training hop, never trained; empty unless asked);
- test_depth: ID compositions of ``test_hops`` (all deeper than any training hop).

Chains are drawn *uniformly* over all chains of a given length in the ID (or OOD) subgraph,
without replacement: exact path counts by dynamic programming weight each step, so sampling
is one vectorised gather per hop; small populations are enumerated instead.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import pyarrow as pa
from benchgen.tasks.parallel import resolve_workers, spawn_pool

from benchgen import seeding
from benchgen.config import to_dict
from benchgen.errors import ConfigError
from benchgen.schema import example_schema, make_ids, repeat_string
from benchgen.vocab import SPECIALS, Vocab, list_array_from_matrix

NAME = "khop"
DESCRIPTION = "k-hop composition over a random or permutation knowledge graph (systematic + depth splits)"
EXTRA_FIELDS = [pa.field("bridges", pa.list_(pa.int32()), nullable=False),
                pa.field("n_ood_hops", pa.int32(), nullable=False)]
SCHEMA = example_schema(EXTRA_FIELDS)
KG_SCHEMA = pa.schema([("head", pa.int32()), ("relation", pa.int32()), ("tail", pa.int32()),
                       ("is_ood", pa.bool_())])
ENUMERATE_LIMIT = 4_000_000  # enumerate every chain when the population is at most this


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
    "grokked-composition": {
        "description": "Wang et al. 2024 composition: 2000 entities, 200 relations, degree 20, 5% OOD, "
                       "2-hop, phi=7.2 (273.6k inferred facts), 3000 ID / up to 3000 OOD test queries; "
                       "test_depth adds 3-hop ID chains",
        "config": {"structure": "random", "num_entities": 2000, "num_relations": 200, "out_degree": 20,
                   "ood_fraction": 0.05, "train_hops": (2,), "test_hops": (3,), "inferred_ratio": 7.2,
                   "train_per_hop": None, "valid_per_hop": 3000, "test_per_hop": 3000,
                   "systematic_per_hop": 3000, "seed": 0},
    },
    "ltg-depth": {
        "description": "Loop-Think-Generalize depth extrapolation: 200 entities, 10 permutation relations, "
                       "train hops 2-20 (15,000 each), test_depth hops 21-40 (750 each), no OOD",
        "config": {"structure": "permutation", "num_entities": 200, "num_relations": 10, "out_degree": 10,
                   "ood_fraction": 0.0, "train_hops": tuple(range(2, 21)), "test_hops": tuple(range(21, 41)),
                   "inferred_ratio": None, "train_per_hop": 15000, "valid_per_hop": 750,
                   "test_per_hop": 750, "systematic_per_hop": 0, "seed": 0},
    },
    "khop-depth-small": {
        "description": "CPU depth extrapolation: 32 entities, 4 permutation relations, atomics + train hops 2-6 "
                       "(every chain left after valid/test, at most 20,000 per hop), test_depth hops 7-12 "
                       "(200 each), no OOD; chance 1/32",
        "config": {"structure": "permutation", "num_entities": 32, "num_relations": 4, "out_degree": 4,
                   "ood_fraction": 0.0, "train_hops": (2, 3, 4, 5, 6), "test_hops": tuple(range(7, 13)),
                   "inferred_ratio": None, "train_per_hop": 20000, "cap_train": True, "valid_per_hop": 100,
                   "test_per_hop": 200, "systematic_per_hop": 0, "seed": 0},
    },
    "khop-small": {
        "description": "CPU-sized depth + systematic benchmark: 96 entities, 8 permutation relations, "
                       "15% OOD, train hops 2-4 (3000 each), test_depth hops 5-6",
        "config": {"structure": "permutation", "num_entities": 96, "num_relations": 8, "out_degree": 8,
                   "ood_fraction": 0.15, "train_hops": (2, 3, 4), "test_hops": (5, 6),
                   "inferred_ratio": None, "train_per_hop": 3000, "valid_per_hop": 200,
                   "test_per_hop": 300, "systematic_per_hop": 300, "seed": 0},
    },
}
CONFIG = KhopConfig


# --- knowledge graph ---------------------------------------------------------------------------
@dataclass
class Graph:
    """Tail table ``tails[e, r]`` (-1 where e lacks r) and the OOD mask over the same table."""

    tails: np.ndarray
    is_ood: np.ndarray

    def triples(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        h, r = np.nonzero(self.tails >= 0)
        return h.astype(np.int32), r.astype(np.int32), self.tails[h, r], self.is_ood[h, r]


def build_graph(cfg: KhopConfig) -> Graph:
    """Random or permutation graph plus an OOD mask chosen by triple."""
    rng = seeding.rng(cfg.seed, NAME, "graph")
    E, R, d = cfg.num_entities, cfg.num_relations, cfg.out_degree
    tails = np.full((E, R), -1, dtype=np.int32)
    if cfg.structure == "permutation":
        tails[:] = np.argsort(rng.random((R, E)), axis=1).T.astype(np.int32)
    else:
        rels = np.argsort(rng.random((E, R)), axis=1)[:, :d]
        rows = np.repeat(np.arange(E), d)
        tails[rows, rels.reshape(-1)] = rng.integers(0, E, size=E * d, dtype=np.int32)
    is_ood = np.zeros((E, R), dtype=bool)
    h, r = np.nonzero(tails >= 0)
    n_ood = int(round(cfg.ood_fraction * len(h)))
    pick = rng.choice(len(h), size=n_ood, replace=False)
    is_ood[h[pick], r[pick]] = True
    return Graph(tails, is_ood)


@dataclass
class Subgraph:
    """CSR view of the ID or OOD edges: edges of entity e are ``indptr[e]:indptr[e+1]``."""

    indptr: np.ndarray
    rel: np.ndarray
    dst: np.ndarray

    @classmethod
    def of(cls, g: Graph, ood: bool) -> Subgraph:
        mask = (g.tails >= 0) & (g.is_ood == ood)
        src, rel = np.nonzero(mask)  # row-major: sorted by src, then relation
        indptr = np.zeros(g.tails.shape[0] + 1, dtype=np.int64)
        np.cumsum(np.bincount(src, minlength=g.tails.shape[0]), out=indptr[1:])
        return cls(indptr, rel.astype(np.int32), g.tails[src, rel])

    @property
    def src(self) -> np.ndarray:
        return np.repeat(np.arange(len(self.indptr) - 1), np.diff(self.indptr))

    def path_counts(self, k: int) -> list[np.ndarray]:
        """``counts[m][e]`` = number of m-edge walks from e (float64; counts[0] = 1)."""
        counts = [np.ones(len(self.indptr) - 1)]
        src = self.src
        for _ in range(k):
            counts.append(np.bincount(src, weights=counts[-1][self.dst], minlength=len(self.indptr) - 1))
        return counts

    def n_chains(self, k: int) -> float:
        return float(self.path_counts(k)[k].sum())


def enumerate_chains(sg: Subgraph, k: int) -> np.ndarray:
    """All k-edge chains as rows ``[e_0, r_1, e_1, ..., r_k, e_k]`` (vectorised frontier expansion)."""
    paths = np.stack([sg.src, sg.rel, sg.dst], axis=1).astype(np.int32)
    for _ in range(k - 1):
        last = paths[:, -1]
        deg = sg.indptr[last + 1] - sg.indptr[last]
        rep = np.repeat(np.arange(len(paths)), deg)
        first = np.repeat(sg.indptr[last], deg)
        within = np.arange(len(rep)) - np.repeat(np.cumsum(deg) - deg, deg)
        e = first + within
        paths = np.concatenate([paths[rep], sg.rel[e, None], sg.dst[e, None]], axis=1)
    return paths


def sample_chains(sg: Subgraph, k: int, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` distinct k-edge chains drawn uniformly (rows ``[e_0, r_1, e_1, ..., r_k, e_k]``)."""
    if n == 0:
        return np.zeros((0, 2 * k + 1), dtype=np.int32)
    counts = sg.path_counts(k)
    total = counts[k].sum()
    if total < n:  # callers check populations first; this is a guard
        raise ValueError(f"asked {n} chains of {k} hops, only {int(total)} exist")
    if total <= ENUMERATE_LIMIT and total <= 8 * n:
        every = enumerate_chains(sg, k)
        return every[rng.choice(len(every), size=n, replace=False)]
    out = np.zeros((0, 2 * k + 1), dtype=np.int32)
    start_cdf = np.cumsum(counts[k] / total)
    # dense per-entity edge tables: slot j of entity e is edge indptr[e] + j (padding: -1)
    deg = np.diff(sg.indptr)
    slots = np.arange(max(int(deg.max()), 1))
    edge = np.where(slots[None, :] < deg[:, None], sg.indptr[:-1, None] + slots[None, :], -1)
    # per remaining-hop cumulative choice probabilities within each entity's edges
    cum = []
    for remaining in range(k, 0, -1):
        w = np.where(edge >= 0, counts[remaining - 1][sg.dst[np.maximum(edge, 0)]], 0.0)
        rowtot = w.sum(axis=1, keepdims=True)
        c = np.cumsum(np.divide(w, rowtot, out=np.zeros_like(w), where=rowtot > 0), axis=1)
        if np.all((w == w[:, :1]) | (edge < 0)):  # equal weights in every row (e.g. a permutation graph)
            cum.append((None, None))
            continue
        # rounding can leave u above the row's last cumulative value: fall back to its last live edge
        last_live = w.shape[1] - 1 - np.argmax(w[:, ::-1] > 0, axis=1)
        cum.append((np.where(edge >= 0, c, 2.0), last_live))
    while len(out) < n:
        m = int((n - len(out)) * 1.2) + 64
        cur = np.minimum(np.searchsorted(start_cdf, rng.random(m), side="right"), len(start_cdf) - 1)
        batch = np.empty((m, 2 * k + 1), dtype=np.int32)  # filled column by column: no int64 copy
        batch[:, 0] = cur
        for i, (c, last_live) in enumerate(cum):
            if c is None:
                e = edge[cur, np.minimum((rng.random(m) * deg[cur]).astype(np.int64), deg[cur] - 1)]
            else:
                j = (c[cur] <= rng.random(m)[:, None]).sum(axis=1)
                e = edge[cur, np.minimum(j, last_live[cur])]
            batch[:, 2 * i + 1] = sg.rel[e]
            batch[:, 2 * i + 2] = cur = sg.dst[e]
        out = unique_rows(np.concatenate([out, batch]))
    return out[:n]


def unique_rows(a: np.ndarray) -> np.ndarray:
    """Drop repeated query rows keeping first occurrences in order (dedup on packed row bytes)."""
    a = np.ascontiguousarray(a)
    key = a.view(np.dtype((np.void, a.dtype.itemsize * a.shape[1]))).ravel()
    _, first = np.unique(key, return_index=True)
    return a[np.sort(first)]


# --- rows ----------------------------------------------------------------------------------------
def make_vocab(cfg: KhopConfig) -> Vocab:
    ents = [f"<e_{i}>" for i in range(cfg.num_entities)]
    rels = [f"<r_{j}>" for j in range(cfg.num_relations)]
    return Vocab(list(SPECIALS) + ents + rels, joiner="")


def pad_chains(parts: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Chain arrays of any lengths as one -1-padded matrix plus each row's depth."""
    K = max((p.shape[1] - 1) // 2 for p in parts)
    n = sum(len(p) for p in parts)
    chains = np.full((n, 2 * K + 1), -1, dtype=np.int32)
    depth = np.empty(n, dtype=np.int32)
    i = 0
    for p in parts:
        chains[i:i + len(p), :p.shape[1]] = p
        depth[i:i + len(p)] = (p.shape[1] - 1) // 2
        i += len(p)
    return chains, depth


def rows_table(chains: np.ndarray, depth: np.ndarray, g: Graph, vocab: Vocab, cfg: KhopConfig, split: str,
               start: int = 0) -> pa.Table:
    """Rows of one split (or one shard of it, ids from ``start``) from a padded chain matrix."""
    n = len(chains)
    ent0, rel0 = len(SPECIALS), len(SPECIALS) + cfg.num_entities
    nodes, rels = chains[:, 0::2], chains[:, 1::2]
    has = rels >= 0
    inputs = np.concatenate([nodes[:, :1] + ent0, np.where(has, rels + rel0, 0)], axis=1)
    target = nodes[np.arange(n), depth][:, None] + ent0
    if g.is_ood.any():
        n_ood = (g.is_ood[np.maximum(nodes[:, :-1], 0), np.maximum(rels, 0)] & has).sum(axis=1, dtype=np.int32)
    else:  # no OOD triples (e.g. ltg-depth): skip the (rows x hops) gather
        n_ood = np.zeros(n, dtype=np.int32)
    input_ids, target_ids = list_array_from_matrix(inputs, depth + 1), list_array_from_matrix(target)
    return pa.table([
        make_ids(NAME, split, start, n),
        repeat_string(split, n),
        pa.array(depth),
        input_ids,
        target_ids,
        vocab.render(input_ids),
        vocab.render(target_ids),
        list_array_from_matrix(nodes[:, 1:], depth - 1),
        pa.array(n_ood),
    ], schema=SCHEMA)


def split_table(parts: list[np.ndarray], g: Graph, vocab: Vocab, cfg: KhopConfig, split: str,
                shuffle: np.random.Generator | None = None) -> pa.Table:
    """Rows of one split from chain arrays of any lengths (padded to one matrix, optionally shuffled)."""
    chains, depth = pad_chains(parts)
    if shuffle is not None:
        order = shuffle.permutation(len(chains))
        chains, depth = chains[order], depth[order]
    return rows_table(chains, depth, g, vocab, cfg, split)


def capped_counts(cfg: KhopConfig, sid: Subgraph) -> dict[int, int]:
    """Train compositions per hop; with cap-train, at most what the graph holds beyond valid + test."""
    counts = cfg.train_counts()
    if cfg.cap_train:
        held = cfg.valid_per_hop + cfg.test_per_hop
        counts = {h: int(max(0, min(n, sid.n_chains(h) - held))) for h, n in counts.items()}
    return counts


def check_populations(cfg: KhopConfig, g: Graph) -> tuple[Subgraph, Subgraph]:
    """Fail before sampling when more unique queries are asked than the ID graph holds."""
    sid, sood = Subgraph.of(g, ood=False), Subgraph.of(g, ood=True)
    counts = capped_counts(cfg, sid)
    for h in cfg.train_hops:
        need = counts[h] + cfg.valid_per_hop + cfg.test_per_hop
        have = sid.n_chains(h)
        if need > have:
            raise ConfigError("train_per_hop" if cfg.train_per_hop is not None else "inferred_ratio",
                              f"asked {need:,} unique {h}-hop ID queries (train {counts[h]:,} + valid "
                              f"{cfg.valid_per_hop:,} + test {cfg.test_per_hop:,}) but the graph has only {int(have):,}")
    for split, hops in (("test_interp", cfg.interp_hops), ("test_depth", cfg.test_hops)):
        for h in hops:
            have = sid.n_chains(h)
            if cfg.test_per_hop > have:
                raise ConfigError("test_per_hop", f"asked {cfg.test_per_hop:,} unique {h}-hop ID queries for "
                                                  f"{split} but the graph has only {int(have):,}")
    return sid, sood


# --- streaming generation -------------------------------------------------------------------------
# Work units are pure functions of (config, graph, seed, unit): phase 1 samples every hop from its
# own seeded stream (train chains are spilled to disk, cut by output shard); phase 2 builds each
# train shard from its spilled pieces. Units run in-process or on a process pool with the same
# results, so the bytes written are identical for any number of workers.
MIN_PARALLEL_ROWS = 400_000  # below this many rows, starting worker processes costs more than it saves


def train_order(cfg: KhopConfig, n: int) -> np.ndarray:
    """Output position of every train row (input order: atomics, then hops), from the train shuffle."""
    order = seeding.rng(cfg.seed, NAME, "train", "shuffle").permutation(n)
    dest = np.empty(n, dtype=np.int64)
    dest[order] = np.arange(n)
    return dest


def spill_train(chains: np.ndarray, dest: np.ndarray, rows_per_shard: int, spill: Path, unit: int) -> None:
    """Write the rows of one unit bound for each train shard as ``<unit>-<shard>.npy`` ([position, chain...])."""
    shard = dest // rows_per_shard
    by = np.argsort(shard, kind="stable")
    bounds = np.searchsorted(shard[by], np.arange(int(shard.max()) + 2)) if len(shard) else [0]
    for s in range(len(bounds) - 1):
        rows = by[bounds[s]:bounds[s + 1]]
        if len(rows):
            piece = np.concatenate([(dest[rows] % rows_per_shard)[:, None].astype(np.int32), chains[rows]], axis=1)
            np.save(spill / f"{unit:04d}-{s:06d}.npy", piece)


def sample_unit(cfg: KhopConfig, g: Graph, kind: str, k: int, n: int, dest: np.ndarray | None,
                rows_per_shard: int, spill: Path, unit: int) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Phase 1: one hop of one purpose; for ``id`` spill its train rows and return (valid, test_id)."""
    sg = Subgraph.of(g, ood=kind == "ood")
    chains = sample_chains(sg, k, n, seeding.rng(cfg.seed, NAME, kind, k))
    if kind != "id":
        return chains
    a = len(dest)
    spill_train(chains[:a], dest, rows_per_shard, spill, unit)
    b = a + cfg.valid_per_hop
    return chains[a:b].copy(), chains[b:].copy()  # copies: views would keep every hop's chains alive


def train_shard(cfg: KhopConfig, g: Graph, shard: int, size: int, units: list[tuple[int, int]], width: int,
                rows_per_shard: int, spill: Path, part: Path | None, dictionary_columns: list[str]):
    """Phase 2: train shard ``shard`` from its spilled pieces; encode it to ``part`` or return the table."""
    chains = np.full((size, 2 * width + 1), -1, dtype=np.int32)
    depth = np.zeros(size, dtype=np.int32)
    for unit, k in units:
        path = spill / f"{unit:04d}-{shard:06d}.npy"
        if path.exists():
            piece = np.load(path)
            chains[piece[:, 0], :2 * k + 1] = piece[:, 1:]
            depth[piece[:, 0]] = k
            path.unlink()
    table = rows_table(chains, depth, g, make_vocab(cfg), cfg, "train", shard * rows_per_shard)
    if part is None:
        return table
    from benchgen.dataset import encode_shard

    encode_shard(table, part, dictionary_columns)
    d, c = np.unique(depth, return_counts=True)
    return dict(zip(d.tolist(), c.tolist()))


def write_splits(cfg: KhopConfig, g: Graph, writer, workers: int, tick: Callable[[str], None]) -> None:
    """Sample every split and write it through ``writer``, train shard by shard (bounded memory).

    Memory stays near one hop's chains plus one shard per worker: train rows are spilled to the
    writer's temp dir cut by output shard, then each shard is assembled, permuted into place and
    encoded. The train order is the one global shuffle (a permutation of row positions only).
    """
    import shutil
    import tempfile

    from benchgen.dataset import DatasetWriter

    sid, sood = check_populations(cfg, g)
    counts = capped_counts(cfg, sid)
    R = writer.rows_per_shard
    h, r, t, _ = g.triples()
    atomics = np.stack([h, r, t], axis=1)
    sizes = [len(atomics)] + [counts[k] for k in cfg.train_hops]
    n_train = sum(sizes)
    dest = train_order(cfg, n_train)
    offsets = np.cumsum([0] + sizes)
    units: list[tuple] = []  # (kind, hop, n, dest slice, unit index)
    for i, k in enumerate(cfg.train_hops, start=1):
        units.append(("id", k, counts[k] + cfg.valid_per_hop + cfg.test_per_hop,
                      dest[offsets[i]:offsets[i + 1]], i))
    for k in cfg.train_hops:
        n_sys = int(min(cfg.systematic_per_hop, sood.n_chains(k)))
        if n_sys:
            units.append(("ood", k, n_sys, None, -1))
    units += [("interp", k, cfg.test_per_hop, None, -1) for k in cfg.interp_hops if cfg.test_per_hop]
    units += [("depth", k, cfg.test_per_hop, None, -1) for k in cfg.test_hops if cfg.test_per_hop]
    total = n_train + sum(u[2] for u in units if u[0] != "id")
    parallel = workers > 1 and type(writer) is DatasetWriter and total >= MIN_PARALLEL_ROWS
    base = getattr(writer, "tmp", None)
    spill = Path(tempfile.mkdtemp(prefix=".spill-", dir=base))
    pool = spawn_pool(workers) if parallel else None
    try:
        spill_train(atomics, dest[:offsets[1]], R, spill, 0)
        del dest
        args = [(cfg, g, kind, k, n, sl, R, spill, unit) for kind, k, n, sl, unit in units]
        if pool is not None:  # largest units first, so the last one to finish is short
            futures = {(a[2], a[3]): pool.submit(sample_unit, *a)
                       for a in sorted(args, key=lambda a: -a[4] * a[3])}
            results = {key: f.result() for key, f in futures.items()}
        else:
            results = {}
            for a in args:
                results[(a[2], a[3])] = sample_unit(*a)
                tick(f"{a[3]}-hop {a[2]}")
        del args, units
        width = max(cfg.train_hops)
        pieces = [(0, 1)] + [(i, k) for i, k in enumerate(cfg.train_hops, start=1)]
        n_shards = -(-n_train // R)
        shard_args = [(cfg, g, s, min(R, n_train - s * R), pieces, width, R, spill) for s in range(n_shards)]
        if pool is not None:
            parts = [writer.part_path("train", s) for s in range(n_shards)]
            futs = [pool.submit(train_shard, *a, parts[s], writer.dictionary_columns) for s, a in enumerate(shard_args)]
            depth_counts: dict[int, int] = {}
            for f in futs:
                for dv, c in f.result().items():
                    depth_counts[dv] = depth_counts.get(dv, 0) + c
            writer.add_parts("train", parts, depth_counts)
        else:
            writer.write_split("train", (train_shard(*a, None, []) for a in shard_args))
        tick("wrote train")
        for split, kind in (("valid", 0), ("test_id", 1), ("test_systematic", "ood"), ("test_interp", "interp"),
                            ("test_depth", "depth")):
            if isinstance(kind, int):
                parts_ = [results[("id", k)][kind] for k in cfg.train_hops]
            else:
                hops = {"ood": cfg.train_hops, "interp": cfg.interp_hops, "depth": cfg.test_hops}[kind]
                parts_ = [results[(kind, k)] for k in hops if (kind, k) in results]
            parts_ = [p for p in parts_ if len(p)]
            if parts_:
                writer.write_split(split, [split_table(parts_, g, make_vocab(cfg), cfg, split)])
                tick(f"wrote {split}")
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
        shutil.rmtree(spill, ignore_errors=True)


def kg_table(g: Graph) -> pa.Table:
    h, r, t, ood = g.triples()
    return pa.table([h, r, t, ood], schema=KG_SCHEMA)


def generate(cfg: KhopConfig, out: str | Path, overwrite: bool = False, progress: bool = True,
             workers: int | None = None) -> Path:
    """Generate a k-hop dataset into ``out`` (atomic write; refuses to overwrite unless asked).

    ``workers`` processes (default: the CPUs this job may use; 1 = in-process) sample hops and encode train
    shards; the files are byte-identical for any number of workers.
    """
    from benchgen.dataset import DatasetWriter, check_target
    from benchgen.progress import bar as progress_bar

    cfg.validate()
    workers = resolve_workers(workers)
    check_target(out, overwrite)
    steps = 2 + 2 * len(cfg.train_hops) + len(cfg.interp_hops) + len(cfg.test_hops) + 6
    with progress_bar(steps, "khop", "step", progress) as bar:
        def tick(label: str) -> None:
            bar.set_postfix_str(label)
            bar.update(1)

        g = build_graph(cfg)
        vocab = make_vocab(cfg)
        tick("graph")
        check_populations(cfg, g)
        writer = DatasetWriter(out, task=NAME, config=to_dict(cfg), seed=cfg.seed, vocab=vocab,
                               schema=SCHEMA, overwrite=overwrite, description=__doc__ or "")
        with writer:
            writer.write_extra("kg.parquet", kg_table(g))
            write_splits(cfg, g, writer, workers, tick)
        bar.update(bar.total - bar.n)
    return Path(out)


def audit(dataset, sample: int | None = None) -> list[str]:
    """Independent re-derivation of every split guarantee (see tasks/khop_audit.py); ``sample``:
    walk only that many seeded rows per split."""
    from benchgen.tasks.khop_audit import audit_khop

    return audit_khop(dataset, sample=sample)
