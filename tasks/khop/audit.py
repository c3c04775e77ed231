"""Independent audit of a khop dataset: rebuild the graph from kg.parquet with networkx, decode
every query from its token strings, walk it, and check each split guarantee.

This plain-Python walk is the reference route; ``benchgen audit`` runs the same checks vectorised
(``audit_numpy.py``), and a test holds the two equal on clean and corrupted datasets.

Deliberately shares no code with the generator (plain Python over networkx adjacency). Memory
stays bounded on 10M-row datasets: rows are walked one record batch at a time, and repeats and
overlaps between splits are found from a 64-bit key per query, confirmed on the token lists.
With ``sample``, only a seeded sample of rows per split is walked.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa

from benchgen.tasks.queries import overlap, query_keys, repeats, split_keys  # noqa: F401 (re-exported)

if TYPE_CHECKING:
    import networkx as nx

TOKEN = re.compile(r"^<([er])_(\d+)>$")


def load_graph(ds) -> nx.MultiDiGraph:
    """kg.parquet -> MultiDiGraph with one edge per triple, keyed by relation, is_ood attribute."""
    import networkx as nx  # the plain route only

    kg = ds.extra("kg.parquet").to_pydict()
    g = nx.MultiDiGraph()
    g.add_nodes_from(range(int(ds.config["num_entities"])))
    for h, r, t, ood in zip(kg["head"], kg["relation"], kg["tail"], kg["is_ood"]):
        g.add_edge(h, t, key=r, is_ood=bool(ood))
    return g


def graph_problems(g: nx.MultiDiGraph, cfg: dict) -> list[str]:
    """The graph has the configured shape (degree, functional relations, bijections, OOD count)."""
    problems = []
    n_edges = g.number_of_edges()
    if n_edges != cfg["num_entities"] * cfg["out_degree"]:
        problems.append(f"kg.parquet: {n_edges} triples, expected num_entities*out_degree")
    for u in g.nodes:
        keys = [k for _, _, k in g.out_edges(u, keys=True)]
        if len(keys) != cfg["out_degree"] or len(set(keys)) != len(keys):
            problems.append(f"kg.parquet: entity {u} has relations {sorted(keys)} (expected {cfg['out_degree']} distinct)")
            break
    if cfg["structure"] == "permutation":
        for u in g.nodes:
            in_keys = [k for _, _, k in g.in_edges(u, keys=True)]
            if len(set(in_keys)) != len(in_keys):
                problems.append(f"kg.parquet: relation not a bijection at entity {u}")
                break
    n_ood = sum(1 for *_, d in g.edges(data=True) if d["is_ood"])
    if n_ood != round(cfg["ood_fraction"] * n_edges):
        problems.append(f"kg.parquet: {n_ood} OOD triples, expected round(ood_fraction * {n_edges})")
    return problems


def decode(tokens: list[str], ids: list[int], what: str) -> tuple[list[str], list[int]]:
    kinds, nums = [], []
    for i in ids:
        m = TOKEN.match(tokens[i]) if 0 <= i < len(tokens) else None
        if m is None:
            raise ValueError(f"{what}: token id {i} is not an entity or relation")
        kinds.append(m.group(1))
        nums.append(int(m.group(2)))
    return kinds, nums


def sample_rows(ds, split: str, sample: int | None) -> np.ndarray | None:
    """Sorted row numbers of a seeded sample of ``split`` (None: every row)."""
    n = ds.manifest["splits"][split]["rows"]
    if sample is None or sample >= n:
        return None
    rng = np.random.default_rng([int(ds.manifest.get("seed") or 0), sample, *split.encode()])
    return np.sort(rng.choice(n, size=sample, replace=False))


ROW_COLUMNS = ["id", "depth", "input_ids", "target_ids", "prompt", "answer", "bridges", "n_ood_hops"]


def walk_row(row: dict, step: dict, tokens: list[str], joiner: str) -> tuple[list[str], tuple | None]:
    """Decode one row, walk its chain in the graph and compare every column with the walk.

    Returns the problems and, for a well-formed row, (entities and relations, answer entity, hops,
    OOD hops)."""
    try:
        kinds, nums = decode(tokens, row["input_ids"], row["id"])
        tkinds, tnums = decode(tokens, row["target_ids"], row["id"])
    except ValueError as e:
        return [str(e).split(":")[1].strip()], None
    if kinds[0] != "e" or any(k != "r" for k in kinds[1:]) or tkinds != ["e"]:
        return ["query is not <e><r>...<r> -> <e>"], None
    flags = []
    if row["depth"] != len(nums) - 1:
        flags.append("depth != number of relations")
    if (row["prompt"] != joiner.join(tokens[i] for i in row["input_ids"])
            or row["answer"] != joiner.join(tokens[i] for i in row["target_ids"])):
        flags.append("prompt/answer text differs from the rendered tokens")
    cur, path, oods = nums[0], [], 0
    for r in nums[1:]:
        if (cur, r) not in step:
            return [*flags, "chain follows a relation the entity does not have"], None
        cur, ood = step[(cur, r)]
        path.append(cur)
        oods += ood
    if cur != tnums[0]:
        flags.append("answer differs from the graph traversal")
    if row["bridges"] != path[:-1]:
        flags.append("bridges differ from the traversal's intermediate entities")
    if row["n_ood_hops"] != oods:
        flags.append("n_ood_hops differs from the traversal")
    return flags, (nums, tnums[0], len(nums) - 1, oods)


def split_rule(split: str, hops: int, oods: int, train: set[int], interp: set[int], test: set[int]) -> str | None:
    """The split guarantee a walked row breaks, if any (1-hop train rows are checked as atomics)."""
    if split == "train":
        if hops != 1 and hops not in train:
            return f"train composition of {hops} hops (train_hops {sorted(train)})"
        if hops != 1 and oods:
            return "train composition uses an OOD triple"
    elif split in ("valid", "test_id"):
        if hops not in train or oods:
            return f"{split} query is not an ID composition of a training hop"
    elif split == "test_systematic":
        if hops not in train or oods != hops:
            return "test_systematic query is not an all-OOD composition of a training hop"
    elif split == "test_interp":
        if hops not in interp or hops in train or oods or not min(train) < hops < max(train):
            return "test_interp query is not an ID chain strictly between training hops, untrained"
    elif split == "test_depth":
        if hops not in test or hops <= max(train) or oods:
            return "test_depth query is not an ID chain deeper than every training hop"
    return None


def audit_split(ds, split: str, picked: np.ndarray | None, step: dict, atomics: list[tuple]) -> dict[str, int]:
    """Walk the (sampled) rows of one split; count each problem; collect train's 1-hop rows into ``atomics``."""
    cfg = ds.config
    train, test, interp = set(cfg["train_hops"]), set(cfg["test_hops"]), set(cfg.get("interp_hops", ()))
    tokens, joiner = ds.vocab.tokens, ds.vocab.joiner
    bad: dict[str, int] = {}
    start = 0
    for batch in ds.iter_batches(split, columns=ROW_COLUMNS):
        n = batch.num_rows
        if picked is not None:
            lo, hi = np.searchsorted(picked, [start, start + n])
            batch = batch.take(pa.array(picked[lo:hi] - start))
        start += n
        b = batch.to_pydict()
        for values in zip(*(b[c] for c in ROW_COLUMNS)):
            flags, walked = walk_row(dict(zip(ROW_COLUMNS, values)), step, tokens, joiner)
            if walked is not None:
                nums, answer, hops, oods = walked
                if split == "train" and hops == 1:
                    atomics.append((nums[0], nums[1], answer))
                rule = split_rule(split, hops, oods, train, interp, test)
                flags += [rule] if rule else []
            for msg in flags:
                bad[msg] = bad.get(msg, 0) + 1
    return bad


def audit_khop_plain(ds, sample: int | None = None) -> list[str]:
    """Every split guarantee, row by row in plain Python (the reference route; ``audit_numpy`` is the
    same audit vectorised); ``sample``: walk only that many seeded rows per split (uniqueness,
    disjointness and the checks in benchgen.pipeline.audit still cover every row)."""
    g = load_graph(ds)
    problems = graph_problems(g, ds.config)
    step = {(u, k): (v, d["is_ood"]) for u, v, k, d in g.edges(keys=True, data=True)}
    keys: dict[str, np.ndarray] = {}
    atomics_in_train: list[tuple] = []
    sampled = False
    for split in ds.splits:
        keys[split] = split_keys(ds, split)
        picked = sample_rows(ds, split, sample)
        sampled |= picked is not None
        bad = audit_split(ds, split, picked, step, atomics_in_train)
        repeated = repeats(ds, split, keys[split])
        if repeated:
            bad["query repeated within the split"] = repeated
        problems += [f"split '{split}': {msg} ({n} rows)" for msg, n in bad.items()]
    return problems + cross_split_problems(ds, g, keys, atomics_in_train, sampled)


def cross_split_problems(ds, g: nx.MultiDiGraph, keys: dict[str, np.ndarray], atomics_in_train: list[tuple],
                         sampled: bool) -> list[str]:
    """Train's 1-hop rows are exactly the atomic triples; no test query occurs in train; valid and
    test_id are disjoint."""
    problems = []
    if "train" in keys:
        atom_set = set(atomics_in_train)
        edges = {(u, k, v) for u, v, k in g.edges(keys=True)}
        # sampled: every sampled 1-hop row must be a triple; coverage needs every row
        if len(atom_set) != len(atomics_in_train) or not (atom_set <= edges if sampled else atom_set == edges):
            problems.append("split 'train': 1-hop rows are not exactly the atomic triples of kg.parquet")
    return problems + query_overlaps(ds, keys)


def query_overlaps(ds, keys: dict[str, np.ndarray]) -> list[str]:
    """No query of another split occurs in train; valid and test_id are disjoint (keys, confirmed)."""
    problems = []
    if "train" in keys:
        for split in [s for s in keys if s != "train"]:
            n = overlap(ds, split, keys[split], "train", keys["train"])
            if n:
                problems.append(f"split '{split}': {n} queries also occur in train")
    if "valid" in keys and "test_id" in keys and overlap(ds, "valid", keys["valid"], "test_id", keys["test_id"]):
        problems.append("valid and test_id share queries")
    return problems
