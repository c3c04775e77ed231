"""The knowledge graph of a k-hop dataset and uniform sampling of chains over it (vectorised)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from benchgen import seeding
from benchgen.tasks.khop.config import KhopConfig

NAME = "khop"
ENUMERATE_LIMIT = 4_000_000  # enumerate every chain when the population is at most this


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


class ChainSampler:
    """Uniform k-edge chains of a subgraph, with replacement: exact path counts weight each step, so one
    draw is one vectorised gather per hop. Built once per (subgraph, k); ``draw`` is cheap."""

    def __init__(self, sg: Subgraph, k: int):
        """Path counts and per-hop choice tables of ``sg`` for k-edge chains."""
        self.sg, self.k = sg, k
        counts = sg.path_counts(k)
        self.total = counts[k].sum()
        self.start_cdf = np.cumsum(counts[k] / self.total) if self.total else np.zeros(0)
        # dense per-entity edge tables: slot j of entity e is edge indptr[e] + j (padding: -1)
        self.deg = deg = np.diff(sg.indptr)
        slots = np.arange(max(int(deg.max()), 1))
        self.edge = edge = np.where(slots[None, :] < deg[:, None], sg.indptr[:-1, None] + slots[None, :], -1)
        # per remaining-hop cumulative choice probabilities within each entity's edges
        self.cum = []
        for remaining in range(k, 0, -1):
            w = np.where(edge >= 0, counts[remaining - 1][sg.dst[np.maximum(edge, 0)]], 0.0)
            rowtot = w.sum(axis=1, keepdims=True)
            c = np.cumsum(np.divide(w, rowtot, out=np.zeros_like(w), where=rowtot > 0), axis=1)
            if np.all((w == w[:, :1]) | (edge < 0)):  # equal weights in every row (e.g. a permutation graph)
                self.cum.append((None, None))
                continue
            # rounding can leave u above the row's last cumulative value: fall back to its last live edge
            last_live = w.shape[1] - 1 - np.argmax(w[:, ::-1] > 0, axis=1)
            self.cum.append((np.where(edge >= 0, c, 2.0), last_live))

    def draw(self, m: int, rng: np.random.Generator) -> np.ndarray:
        """``m`` chains drawn independently and uniformly (rows ``[e_0, r_1, e_1, ..., r_k, e_k]``)."""
        sg, edge, deg, k = self.sg, self.edge, self.deg, self.k
        cur = np.minimum(np.searchsorted(self.start_cdf, rng.random(m), side="right"), len(self.start_cdf) - 1)
        batch = np.empty((m, 2 * k + 1), dtype=np.int32)  # filled column by column: no int64 copy
        batch[:, 0] = cur
        for i, (c, last_live) in enumerate(self.cum):
            if c is None:
                e = edge[cur, np.minimum((rng.random(m) * deg[cur]).astype(np.int64), deg[cur] - 1)]
            else:
                j = (c[cur] <= rng.random(m)[:, None]).sum(axis=1)
                e = edge[cur, np.minimum(j, last_live[cur])]
            batch[:, 2 * i + 1] = sg.rel[e]
            batch[:, 2 * i + 2] = cur = sg.dst[e]
        return batch


def sample_chains(sg: Subgraph, k: int, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` distinct k-edge chains drawn uniformly (rows ``[e_0, r_1, e_1, ..., r_k, e_k]``)."""
    if n == 0:
        return np.zeros((0, 2 * k + 1), dtype=np.int32)
    total = sg.path_counts(k)[k].sum()
    if total < n:  # callers check populations first; this is a guard
        raise ValueError(f"asked {n} chains of {k} hops, only {int(total)} exist")
    if total <= ENUMERATE_LIMIT and total <= 8 * n:
        every = enumerate_chains(sg, k)
        return every[rng.choice(len(every), size=n, replace=False)]
    sampler = ChainSampler(sg, k)
    out = np.zeros((0, 2 * k + 1), dtype=np.int32)
    while len(out) < n:
        out = unique_rows(np.concatenate([out, sampler.draw(int((n - len(out)) * 1.2) + 64, rng)]))
    return out[:n]


def unique_rows(a: np.ndarray) -> np.ndarray:
    """Drop repeated query rows keeping first occurrences in order.

    Rows are hashed to 64 bits and sorted by hash; a row alone with its hash is unique, and only
    rows sharing a hash (repeats, or a rare collision) are compared byte for byte (``np.unique`` on
    the packed row bytes), so the rows kept are exactly the first occurrences."""
    a = np.ascontiguousarray(a)
    if len(a) < 2:
        return a
    with np.errstate(over="ignore"):
        h = (a.astype(np.uint64) + np.uint64(1)) @ np.cumprod(np.full(a.shape[1], 0x100000001B3, np.uint64),
                                                             dtype=np.uint64)
    order = np.argsort(h, kind="stable")
    hs = h[order]
    same = np.zeros(len(a), bool)  # sorted position shares its hash with a neighbour
    same[1:] = hs[1:] == hs[:-1]
    same[:-1] |= same[1:]
    keep = order[~same]
    shared = np.sort(order[same])
    if len(shared):
        key = a[shared].view(np.dtype((np.void, a.dtype.itemsize * a.shape[1]))).ravel()
        _, first = np.unique(key, return_index=True)
        keep = np.concatenate([keep, shared[first]])
    return a[np.sort(keep)]
