"""The khop audit over whole record batches with numpy: the plain-Python walk of ``audit.py``, vectorised.

Same checks, same messages, same order as :func:`benchgen.tasks.khop.audit.audit_khop_plain` (a test
holds the two routes equal on clean and corrupted datasets), at numpy speed for 10M-row datasets.
Still independent of the generator: the graph is rebuilt from ``kg.parquet`` as an (entity,
relation) -> tail table, token ids are decoded through a table parsed from ``vocab.json``'s strings,
every chain is walked one hop at a time for all rows of a batch at once, and prompt/answer text is
rebuilt by joining the token strings in pyarrow. A ``kg.parquet`` that is not a function table (an id
out of range, or an (entity, relation) pair twice) goes to the plain route, whose networkx walk
defines what such a graph means.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from benchgen.dataset import load
from benchgen.tasks.audit_tally import Tally, open_pool, picked_batch, run_shards
from benchgen.tasks.baselines import unique_sorted
from benchgen.tasks.khop.audit import TOKEN, audit_khop_plain, query_overlaps, sample_rows
from benchgen.tasks.queries import query_keys, repeats

COLUMNS = ["depth", "input_ids", "target_ids", "prompt", "answer", "bridges", "n_ood_hops"]
# rank of each message within a row, as the plain walk appends them (orders messages first seen in one row)
RANK = {"decode": 0, "depth": 1, "text": 2, "missing": 3, "answer": 4, "bridges": 5, "ood": 6, "rule": 7}


@dataclass
class KG:
    """kg.parquet as tables: ``tails[e, r]`` (-1: no edge), ``ood[e, r]``, and the raw triples."""

    tails: np.ndarray
    ood: np.ndarray
    head: np.ndarray
    rel: np.ndarray
    tail: np.ndarray
    is_ood: np.ndarray


def read_kg(ds) -> KG | None:
    """The graph as a function table, or None when kg.parquet is not one (ids out of range, a pair twice)."""
    kg = ds.extra("kg.parquet")
    h, r, t = (kg.column(c).to_numpy().astype(np.int64) for c in ("head", "relation", "tail"))
    o = kg.column("is_ood").to_numpy(zero_copy_only=False).astype(bool)
    E, R = int(ds.config["num_entities"]), int(ds.config["num_relations"])
    if len(h) and (min(h.min(), r.min(), t.min()) < 0 or h.max() >= E or t.max() >= E or r.max() >= R):
        return None
    if len(unique_sorted(h * R + r)) != len(h):
        return None
    tails = np.full((E, R), -1, np.int64)
    ood = np.zeros((E, R), bool)
    tails[h, r], ood[h, r] = t, o
    return KG(tails, ood, h, r, t, o)


def graph_problems(g: KG, cfg: dict) -> list[str]:
    """The graph has the configured shape (degree, functional relations, bijections, OOD count)."""
    problems = []
    E, d = int(cfg["num_entities"]), cfg["out_degree"]
    if len(g.head) != cfg["num_entities"] * cfg["out_degree"]:
        problems.append(f"kg.parquet: {len(g.head)} triples, expected num_entities*out_degree")
    degree = np.bincount(g.head, minlength=E)  # pairs are distinct (read_kg), so relations are too
    if (degree != d).any():
        u = int(np.argmax(degree != d))
        problems.append(f"kg.parquet: entity {u} has relations {sorted(g.rel[g.head == u].tolist())} "
                        f"(expected {d} distinct)")
    if cfg["structure"] == "permutation":
        R = g.tails.shape[1]
        pairs, counts = np.unique(g.tail * R + g.rel, return_counts=True)
        if (counts > 1).any():
            problems.append(f"kg.parquet: relation not a bijection at entity {int(pairs[counts > 1].min() // R)}")
    if int(g.is_ood.sum()) != round(cfg["ood_fraction"] * len(g.head)):
        problems.append(f"kg.parquet: {int(g.is_ood.sum())} OOD triples, expected round(ood_fraction * {len(g.head)})")
    return problems


def token_table(tokens: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Per token id: kind (1 entity, 2 relation, 0 other) and number, parsed from the token strings."""
    kind, num = np.zeros(len(tokens), np.int8), np.zeros(len(tokens), np.int64)
    for i, t in enumerate(tokens):
        m = TOKEN.match(t)
        if m:
            kind[i], num[i] = (1 if m.group(1) == "e" else 2), int(m.group(2))
    return kind, num


def offsets_values(arr: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """Row offsets (from 0) and flat int64 values of a list<int> array."""
    off = arr.offsets.to_numpy().astype(np.int64)
    return off - off[0], arr.values.to_numpy()[off[0]:off[-1]].astype(np.int64)


def decode_problems(inp, tgt, kind: np.ndarray, found: Tally, base: int) -> np.ndarray:
    """Rows whose tokens are out of the vocabulary or not ``<e><r>...<r> -> <e>``; returns the good rows."""
    (io, iv), (to, tv) = inp, tgt
    V = len(kind)
    n = len(io) - 1
    bad_id = np.full(n, -1, np.int64)  # the first id that is no entity or relation (input, then target)
    for off, val in ((to, tv), (io, iv)):  # input last: its first bad id wins, as the plain decode reads it first
        bad = (val < 0) | (val >= V)
        bad[~bad] = kind[val[~bad]] == 0
        pos = np.flatnonzero(bad)
        rows = np.searchsorted(off, pos, side="right") - 1
        first = np.unique(rows, return_index=True)
        bad_id[first[0]] = val[pos[first[1]]]
    for i in unique_sorted(bad_id[bad_id >= 0]):
        found.add(f"token id {int(i)} is not an entity or relation", bad_id == i, RANK["decode"], base)
    ok = bad_id < 0
    ilen, tlen = np.diff(io), np.diff(to)
    safe = np.where((iv >= 0) & (iv < V), iv, 0)
    k = kind[safe]
    is_rel = np.ones(len(iv), bool)
    is_rel[io[:-1][ilen > 0]] = False
    shape_bad = np.zeros(n, bool)
    wrong = np.flatnonzero(np.where(is_rel, k != 2, k != 1))
    shape_bad[np.searchsorted(io, wrong, side="right") - 1] = True
    tk = kind[np.where((tv >= 0) & (tv < V), tv, 0)]
    shape_bad |= (ilen == 0) | (tlen != 1)
    shape_bad[tlen == 1] |= tk[to[:-1][tlen == 1]] != 1
    found.add("query is not <e><r>...<r> -> <e>", ok & shape_bad, RANK["decode"], base)
    return ok & ~shape_bad


def rendered(off: np.ndarray, val: np.ndarray, strings: pa.Array, joiner: str) -> pa.Array:
    """The token strings of every row joined by ``joiner`` (ids clipped: only well-formed rows are read)."""
    words = strings.take(pa.array(np.clip(val, 0, len(strings) - 1)))
    return pc.binary_join(pa.ListArray.from_arrays(pa.array(off.astype(np.int64)), words), joiner)


@dataclass
class Walk:
    """Every well-formed row's chain walked through the tail table."""

    ok: np.ndarray        # walked to the end (every relation exists)
    end: np.ndarray       # entity reached
    oods: np.ndarray      # OOD triples used
    path: np.ndarray      # (rows, max hops) entities after each hop (-1 past a row's end)


def walk(io: np.ndarray, iv: np.ndarray, good: np.ndarray, num: np.ndarray, g: KG) -> Walk:
    """Follow every good row's relations from its head entity, one hop for all rows at a time.

    Rows are ordered by hop count (longest first), so the rows still walking at hop j are a prefix."""
    n = len(io) - 1
    R = g.tails.shape[1]
    hops = np.where(good, np.diff(io) - 1, 0)
    order = np.argsort(-hops, kind="stable")
    h = hops[order]
    K = int(h[0]) if n else 0
    live = np.searchsorted(-h, -np.arange(K), side="left")  # rows with more than j hops, per hop j
    safe = np.clip(iv, 0, len(num) - 1) if len(iv) else iv
    start = io[:-1][order]
    cur = np.where(good[order], num[safe[np.minimum(start, max(len(iv) - 1, 0))]] if len(iv) else 0, 0)
    tails, ood = g.tails.reshape(-1), g.ood.reshape(-1)
    rel = num[safe] if len(iv) else np.zeros(0, np.int64)  # every token's number (relations after the head)
    first = start + 1
    alive = np.ones(n, bool)
    oods = np.zeros(n, np.int64)
    path = np.full((K, n), -1, np.int64)  # hop-major: each hop writes one contiguous row
    for j in range(K):
        m = int(live[j])
        at = cur[:m] * R + rel[first[:m] + j]
        nxt = tails[at]
        gone = nxt < 0
        alive[:m] &= ~gone
        oods[:m] += ood[at]
        cur[:m] = np.where(gone, 0, nxt)
        path[j, :m] = nxt
    back = np.empty(n, np.int64)
    back[order] = np.arange(n)
    return Walk(good & alive[back], cur[back], oods[back], path[:, back].T)


def bridges_match(b: pa.Array, w: Walk, hops: np.ndarray) -> np.ndarray:
    """Per row: its bridges column equals the walk's intermediate entities."""
    bo, bv = offsets_values(b)
    blen = np.diff(bo)
    K = max(w.path.shape[1] - 1, 0)
    same = blen == np.maximum(hops - 1, 0)
    fits = same & (blen <= K)
    got = np.full((len(blen), K), -1, np.int64)
    inside = np.arange(K)[None, :] < np.where(fits, blen, 0)[:, None]
    keep = np.repeat(fits, blen)
    got[inside] = bv[keep]
    return same & fits & ((got == w.path[:, :K]) | ~inside).all(axis=1)


def rule_problems(split: str, hops: np.ndarray, oods: np.ndarray, rows: np.ndarray, cfg: dict, found: Tally,
                  base: int) -> None:
    """The split guarantee each walked row breaks (1-hop train rows are checked as atomics)."""
    train = sorted(set(cfg["train_hops"]))
    trained, tested = np.isin(hops, train), np.isin(hops, list(cfg["test_hops"]))
    interp = np.isin(hops, list(cfg.get("interp_hops", ())))
    rank = RANK["rule"]
    if split == "train":
        wrong_hop = rows & (hops != 1) & ~trained
        for k in unique_sorted(hops[wrong_hop]):
            found.add(f"train composition of {int(k)} hops (train_hops {train})", wrong_hop & (hops == k), rank, base)
        found.add("train composition uses an OOD triple", rows & (hops != 1) & trained & (oods > 0), rank, base)
    elif split in ("valid", "test_id"):
        found.add(f"{split} query is not an ID composition of a training hop", rows & (~trained | (oods > 0)),
                  rank, base)
    elif split == "test_systematic":
        found.add("test_systematic query is not an all-OOD composition of a training hop",
                  rows & (~trained | (oods != hops)), rank, base)
    elif split == "test_interp":
        between = (min(train) < hops) & (hops < max(train))
        found.add("test_interp query is not an ID chain strictly between training hops, untrained",
                  rows & (~interp | trained | (oods > 0) | ~between), rank, base)
    elif split == "test_depth":
        found.add("test_depth query is not an ID chain deeper than every training hop",
                  rows & (~tested | (hops <= max(train)) | (oods > 0)), rank, base)


def audit_batch(b: pa.RecordBatch, split: str, g: KG, ds, table: tuple[np.ndarray, np.ndarray],
                found: Tally, base: int, atomics: list[np.ndarray]) -> None:
    """Every per-row check on one record batch (the plain walk's ``walk_row`` + ``split_rule``)."""
    kind, num = table
    vocab = ds.vocab
    inp, tgt = offsets_values(b.column("input_ids")), offsets_values(b.column("target_ids"))
    good = decode_problems(inp, tgt, kind, found, base)
    (io, iv), (to, tv) = inp, tgt
    hops = np.diff(io) - 1
    depth = b.column("depth").to_numpy(zero_copy_only=False)
    found.add("depth != number of relations", good & (depth != hops), RANK["depth"], base)
    strings = pa.array(vocab.tokens, pa.string())
    text_ok = pc.and_(pc.equal(b.column("prompt"), rendered(io, iv, strings, vocab.joiner)),
                      pc.equal(b.column("answer"), rendered(to, tv, strings, vocab.joiner)))
    text_ok = pc.fill_null(text_ok, False).to_numpy(zero_copy_only=False)
    found.add("prompt/answer text differs from the rendered tokens", good & ~text_ok, RANK["text"], base)
    w = walk(io, iv, good, num, g)
    found.add("chain follows a relation the entity does not have", good & ~w.ok, RANK["missing"], base)
    ok = good & w.ok
    answer = num[np.clip(tv[np.minimum(to[:-1], max(len(tv) - 1, 0))], 0, len(num) - 1)] if len(tv) else w.end
    found.add("answer differs from the graph traversal", ok & (w.end != answer), RANK["answer"], base)
    found.add("bridges differ from the traversal's intermediate entities",
              ok & ~bridges_match(b.column("bridges"), w, hops), RANK["bridges"], base)
    found.add("n_ood_hops differs from the traversal", ok & (b.column("n_ood_hops").to_numpy() != w.oods),
              RANK["ood"], base)
    rule_problems(split, hops, w.oods, ok, ds.config, found, base)
    if split == "train":
        one = ok & (hops == 1)
        atomics.append(np.stack([num[iv[io[:-1][one]]], num[iv[io[:-1][one] + 1]], answer[one]], axis=1))


def audit_shard(ds, split: str, shard: int, start: int, picked: np.ndarray | None
                ) -> tuple[Tally, np.ndarray, np.ndarray]:
    """Every per-row check on one shard (``ds``: the dataset or its path, in a worker): the problems
    found, the query key of every row and the 1-hop train rows (head, relation, answer)."""
    ds = load(ds) if isinstance(ds, str) else ds
    g, table = read_kg(ds), token_table(ds.vocab.tokens)
    found, keys, atomics = Tally(), [], []
    for batch in pq.ParquetFile(ds.shards(split)[shard]).iter_batches(batch_size=65536, columns=COLUMNS):
        keys.append(query_keys(batch.column("input_ids")))
        checked, base = picked_batch(batch, picked, start)
        start += batch.num_rows
        if checked.num_rows:
            audit_batch(checked, split, g, ds, table, found, base, atomics)
    return (found, np.concatenate(keys) if keys else np.zeros(0, np.uint64),
            np.concatenate(atomics) if atomics else np.zeros((0, 3), np.int64))


def audit_split(ds, split: str, picked: np.ndarray | None, pool, atomics: list[np.ndarray]
                ) -> tuple[list[tuple[str, int]], np.ndarray]:
    """Check the (sampled) rows of one split shard by shard (on ``pool`` when given); returns
    (message, rows) in the plain walk's order and the query keys of every row."""
    results = run_shards(ds, split, audit_shard, (picked,), pool)
    found = Tally()
    for part, _, atoms in results:
        found.merge(part)
        atomics.append(atoms)
    keys = [k for _, k, _ in results]
    return found.messages(), (np.concatenate(keys) if keys else np.zeros(0, np.uint64))


def audit_khop(ds, sample: int | None = None, workers: int | None = 1) -> list[str]:
    """Every split guarantee (as :func:`audit_khop_plain`, vectorised); ``sample``: check only that many
    seeded rows per split in the per-row part (uniqueness and disjointness still cover every row);
    ``workers`` processes check shards (datasets of 1M rows or more; None: the CPUs this job may use)."""
    g = read_kg(ds)
    if g is None:
        return audit_khop_plain(ds, sample)
    problems = graph_problems(g, ds.config)
    keys: dict[str, np.ndarray] = {}
    atomics: list[np.ndarray] = []
    sampled = False
    pool = open_pool(ds, workers)
    try:
        for split in ds.splits:
            picked = sample_rows(ds, split, sample)
            sampled |= picked is not None
            bad, keys[split] = audit_split(ds, split, picked, pool, atomics)
            repeated = repeats(ds, split, keys[split])
            if repeated:
                bad.append(("query repeated within the split", repeated))
            problems += [f"split '{split}': {msg} ({n} rows)" for msg, n in bad]
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    return problems + cross_split_problems(ds, g, keys, atomics, sampled)


def cross_split_problems(ds, g: KG, keys: dict[str, np.ndarray], atomics: list[np.ndarray], sampled: bool
                         ) -> list[str]:
    """Train's 1-hop rows are exactly the atomic triples; no test query occurs in train; valid and
    test_id are disjoint."""
    problems = []
    if "train" in keys:
        E, R = g.tails.shape
        got = np.concatenate(atomics) if atomics else np.zeros((0, 3), np.int64)
        inside = (got >= 0).all(axis=1) & (got[:, 0] < E) & (got[:, 1] < R) & (got[:, 2] < E)
        code = np.where(inside, (got[:, 0] * R + got[:, 1]) * E + got[:, 2], -1 - np.arange(len(got)))
        edges = (g.head * R + g.rel) * E + g.tail
        distinct = unique_sorted(code)
        ok = len(distinct) == len(code) and np.isin(distinct, edges).all() and (sampled or len(distinct) == len(edges))
        if not ok:
            problems.append("split 'train': 1-hop rows are not exactly the atomic triples of kg.parquet")
    return problems + query_overlaps(ds, keys)
