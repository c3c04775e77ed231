"""Independent audit of a khop dataset: rebuild the graph from kg.parquet with networkx, decode
every query from its token strings, walk it, and check each split guarantee.

Deliberately shares no code with the generator (plain Python over networkx adjacency).
"""

from __future__ import annotations

import re

import networkx as nx

TOKEN = re.compile(r"^<([er])_(\d+)>$")


def load_graph(ds) -> nx.MultiDiGraph:
    """kg.parquet -> MultiDiGraph with one edge per triple, keyed by relation, is_ood attribute."""
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


def audit_khop(ds) -> list[str]:
    cfg = ds.config
    g = load_graph(ds)
    problems = graph_problems(g, cfg)
    step = {(u, k): (v, d["is_ood"]) for u, v, k, d in g.edges(keys=True, data=True)}
    tokens, joiner = ds.vocab.tokens, ds.vocab.joiner
    train_hops, test_hops = set(cfg["train_hops"]), set(cfg["test_hops"])
    interp_hops = set(cfg.get("interp_hops", ()))
    queries: dict[str, set[tuple]] = {}
    atomics_in_train: list[tuple] = []

    for split in ds.splits:
        qs: set[tuple] = set()
        bad: dict[str, int] = {}

        def flag(msg: str, bad=bad) -> None:
            bad[msg] = bad.get(msg, 0) + 1

        cols = ["id", "depth", "input_ids", "target_ids", "prompt", "answer", "bridges", "n_ood_hops"]
        for batch in ds.iter_batches(split, columns=cols):
            b = batch.to_pydict()
            for rid, depth, inp, tgt, prompt, answer, bridges, n_ood in zip(*(b[c] for c in cols)):
                try:
                    kinds, nums = decode(tokens, inp, rid)
                    tkinds, tnums = decode(tokens, tgt, rid)
                except ValueError as e:
                    flag(str(e).split(":")[1].strip())
                    continue
                if kinds[0] != "e" or any(k != "r" for k in kinds[1:]) or tkinds != ["e"]:
                    flag("query is not <e><r>...<r> -> <e>")
                    continue
                if depth != len(nums) - 1:
                    flag("depth != number of relations")
                if prompt != joiner.join(tokens[i] for i in inp) or answer != joiner.join(tokens[i] for i in tgt):
                    flag("prompt/answer text differs from the rendered tokens")
                cur, path, oods = nums[0], [], 0
                for r in nums[1:]:
                    if (cur, r) not in step:
                        cur = None
                        break
                    cur, ood = step[(cur, r)]
                    path.append(cur)
                    oods += ood
                if cur is None:
                    flag("chain follows a relation the entity does not have")
                    continue
                if cur != tnums[0]:
                    flag("answer differs from the graph traversal")
                if bridges != path[:-1]:
                    flag("bridges differ from the traversal's intermediate entities")
                if n_ood != oods:
                    flag("n_ood_hops differs from the traversal")
                q = tuple(nums)
                if q in qs:
                    flag("query repeated within the split")
                qs.add(q)
                hops = len(nums) - 1
                if split == "train":
                    if hops == 1:
                        atomics_in_train.append((nums[0], nums[1], tnums[0]))
                    elif hops not in train_hops:
                        flag(f"train composition of {hops} hops (train_hops {sorted(train_hops)})")
                    elif oods:
                        flag("train composition uses an OOD triple")
                elif split in ("valid", "test_id"):
                    if hops not in train_hops or oods:
                        flag(f"{split} query is not an ID composition of a training hop")
                elif split == "test_systematic":
                    if hops not in train_hops or oods != hops:
                        flag("test_systematic query is not an all-OOD composition of a training hop")
                elif split == "test_interp":
                    if (hops not in interp_hops or hops in train_hops or oods
                            or not min(train_hops) < hops < max(train_hops)):
                        flag("test_interp query is not an ID chain strictly between training hops, untrained")
                elif split == "test_depth":
                    if hops not in test_hops or hops <= max(train_hops) or oods:
                        flag("test_depth query is not an ID chain deeper than every training hop")
        problems += [f"split '{split}': {msg} ({n} rows)" for msg, n in bad.items()]
        queries[split] = qs

    if "train" in queries:
        atom_set = set(atomics_in_train)
        edges = {(u, k, v) for u, v, k in g.edges(keys=True)}
        if len(atom_set) != len(atomics_in_train) or atom_set != edges:
            problems.append("split 'train': 1-hop rows are not exactly the atomic triples of kg.parquet")
        for split in [s for s in queries if s != "train"]:
            overlap = queries[split] & queries["train"]
            if overlap:
                problems.append(f"split '{split}': {len(overlap)} queries also occur in train")
    if queries.get("valid", set()) & queries.get("test_id", set()):
        problems.append("valid and test_id share queries")
    return problems
