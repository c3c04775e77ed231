"""k-hop shortcut baselines: answer priors from the relations alone, and truncated chains.

A query is ``<e_h><r_1>...<r_k>`` (token ids: head entity, then k relations; ``depth`` = k) and
its answer one entity. Each baseline below ignores part of the chain; if one of them scores
above chance on a held-out split, that split can be solved without composing k facts.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from benchgen.tasks.baselines import (
    Baseline,
    Context,
    list_values,
    lookup,
    mode_by_key,
    mode_for,
    take_strings,
    unique_sorted,
)
from benchgen.tasks.grid.cells import row_hash
from benchgen.vocab import SPECIALS

ENT0 = len(SPECIALS)


def parse(ctx: Context, inputs: pa.Array) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(head entity, first relation, last relation, depth) per query, from its token ids."""
    rel0 = ENT0 + int(ctx.config["num_entities"])
    values, offsets = list_values(inputs)
    k = np.diff(offsets) - 1
    head = values[offsets[:-1]].astype(np.int64) - ENT0
    first = np.where(k > 0, values[np.minimum(offsets[:-1] + 1, len(values) - 1)].astype(np.int64) - rel0, -1)
    last = np.where(k > 0, values[offsets[1:] - 1].astype(np.int64) - rel0, -1)
    return head, first, last, k


def _train(ctx: Context) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(head entity, last relation, answer entity, bag key) per train query, in one pass over train
    (int32 where it fits: 10M-row trains stay small)."""
    def parse_batch(b: pa.RecordBatch) -> tuple[np.ndarray, ...]:
        head, _, last, _ = parse(ctx, b.column(0))
        ans, _ = list_values(b.column(1))
        return (head.astype(np.int32), last.astype(np.int32), (ans.astype(np.int64) - ENT0).astype(np.int32),
                _bag_keys(b.column(0)))
    return ctx.train_map("khop_train", ["input_ids", "target_ids"], parse_batch)


def _entities(ctx: Context, ent: np.ndarray) -> pa.Array:
    """Entity numbers rendered as answer strings (``""`` for -1)."""
    tokens = pa.array([f"<e_{i}>" for i in range(int(ctx.config["num_entities"]))], pa.string())
    return take_strings(tokens, ent)


def _tails(ctx: Context) -> np.ndarray:
    """tails[h, r] from kg.parquet (-1 where h lacks r)."""
    def make() -> np.ndarray:
        kg = ctx.ds.extra("kg.parquet")
        t = np.full((int(ctx.config["num_entities"]), int(ctx.config["num_relations"])), -1, np.int64)
        t[kg.column("head").to_numpy(), kg.column("relation").to_numpy()] = kg.column("tail").to_numpy()
        return t
    return ctx.memo("khop_tails", make)


def _relation_prior(ctx: Context) -> tuple[np.ndarray, np.ndarray]:
    _, last, ans, _ = _train(ctx)
    return ctx.memo("khop_rel_prior", lambda: mode_by_key(last, ans))


def last_relation_prior(ctx: Context, rows: pa.Table) -> pa.Array:
    """The most frequent train answer among queries ending in the same relation."""
    _, _, last, _ = parse(ctx, rows.column("input_ids"))
    keys, modes = _relation_prior(ctx)
    return _entities(ctx, lookup(last, keys, modes))


def head_last_relation_prior(ctx: Context, rows: pa.Table) -> pa.Array:
    """The most frequent train answer among queries with the same head and last relation."""
    R = int(ctx.config["num_relations"])
    head, _, last, _ = parse(ctx, rows.column("input_ids"))
    th, tlast, ans, _ = _train(ctx)
    query = head * R + last
    keys, modes = mode_for(th.astype(np.int64) * R + tlast, ans, query)
    rk, rm = _relation_prior(ctx)
    return _entities(ctx, lookup(query, keys, modes, lookup(last, rk, rm)))


def _bag_keys(inputs: pa.Array) -> np.ndarray:
    """Hash of (depth, head, sorted relations): equal for queries with the same head and multiset."""
    values, offsets = list_values(inputs)
    lengths = np.diff(offsets)
    keys = np.zeros(len(lengths), dtype=np.uint64)
    for n in unique_sorted(lengths):  # one matrix per query length (a handful of depths)
        sel = np.flatnonzero(lengths == n)
        m = values[offsets[sel][:, None] + np.arange(n)].astype(np.int64)
        m[:, 1:] = np.sort(m[:, 1:], axis=1)
        keys[sel] = row_hash(np.concatenate([np.full((len(sel), 1), n, np.int64), m], axis=1))
    return keys.view(np.int64)


def bag_of_relations(ctx: Context, rows: pa.Table) -> pa.Array:
    """The answer of a train query with the same head and the same multiset of relations, if any."""
    *_, ans, train_keys = _train(ctx)
    query = _bag_keys(rows.column("input_ids"))
    keys, modes = mode_for(train_keys, ans, query)
    return _entities(ctx, lookup(query, keys, modes))


def first_hop(ctx: Context, rows: pa.Table) -> pa.Array:
    """Follow only the first relation from the head in kg.parquet."""
    head, first, _, _ = parse(ctx, rows.column("input_ids"))
    tails = _tails(ctx)
    return _entities(ctx, np.where(first >= 0, tails[head, np.maximum(first, 0)], -1))


def last_hop(ctx: Context, rows: pa.Table) -> pa.Array:
    """Follow only the last relation, from the head, in kg.parquet."""
    head, _, last, _ = parse(ctx, rows.column("input_ids"))
    tails = _tails(ctx)
    return _entities(ctx, np.where(last >= 0, tails[head, np.maximum(last, 0)], -1))


BASELINES = [
    Baseline("last_relation_prior", last_relation_prior, "most frequent train tail of the final relation"),
    Baseline("head_last_relation_prior", head_last_relation_prior,
             "most frequent train answer for the same head and final relation"),
    Baseline("bag_of_relations", bag_of_relations,
             "answer of a train query with the same head and multiset of relations"),
    Baseline("first_hop", first_hop, "follow only the first hop in kg.parquet", exact_at=(1,)),
    Baseline("last_hop", last_hop, "follow only the last relation from the head in kg.parquet", exact_at=(1,)),
]
