"""k-hop rows from sampled chains, and every split streamed through the writer (bounded memory)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa

from benchgen import seeding
from benchgen.dataset import encode_shard
from benchgen.errors import ConfigError
from benchgen.progress import bar as progress_bar
from benchgen.schema import example_schema, make_ids, repeat_string
from benchgen.task import Writer
from benchgen.tasks.khop.config import KhopConfig
from benchgen.tasks.khop.graph import NAME, Graph, Subgraph, build_graph, sample_chains
from benchgen.vocab import SPECIALS, Vocab, list_array_from_matrix
from benchgen.workers import spawn_pool

EXTRA_FIELDS = [pa.field("bridges", pa.list_(pa.int32()), nullable=False),
                pa.field("n_ood_hops", pa.int32(), nullable=False)]
SCHEMA = example_schema(EXTRA_FIELDS)
KG_SCHEMA = pa.schema([("head", pa.int32()), ("relation", pa.int32()), ("tail", pa.int32()),
                       ("is_ood", pa.bool_())])


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
    parallel = workers > 1 and writer.supports_parts and total >= MIN_PARALLEL_ROWS
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


def generate(cfg: KhopConfig, writer: Writer, *, progress: bool = False, workers: int = 1) -> None:
    """Write a k-hop dataset through ``writer``: the graph as ``kg.parquet``, then every split.

    ``workers`` processes (1 = in-process) sample hops and encode train shards; the files are
    byte-identical for any number of workers.
    """
    steps = 2 + 2 * len(cfg.train_hops) + len(cfg.interp_hops) + len(cfg.test_hops) + 6
    with progress_bar(steps, "khop", "step", progress) as bar:
        def tick(label: str) -> None:
            bar.set_postfix_str(label)
            bar.update(1)

        g = build_graph(cfg)
        tick("graph")
        check_populations(cfg, g)
        writer.write_extra("kg.parquet", kg_table(g))
        write_splits(cfg, g, writer, workers, tick)
        bar.update(bar.total - bar.n)
