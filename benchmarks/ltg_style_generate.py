"""A plain-Python k-hop generator written the way the Loop-Think-Generalize scripts are: per-chain
random walks, a Python set for uniqueness, JSON out. It is the anchor for `benchmarks/generate.py`
(what researchers run today), not part of benchgen; it makes the `ltg-depth` shape.

Shape (as benchgen's `ltg-depth` preset): 200 entities, 10 relations each a random permutation of
the entities, 2,000 atomic facts; per hop 2..20 draw unique chains by random walk (start at a random
atomic fact, follow a random outgoing edge k-1 times) and keep 15,000 train + 750 valid + 750
test; per hop 21..40, 750 test chains.

Usage: ``python benchmarks/ltg_style_generate.py OUT_DIR [--seed 0]``; prints the row count.
"""

from __future__ import annotations

import argparse
import json
import os
import random


def build_graph(rng: random.Random, n_ent: int, n_rel: int) -> dict[int, list[tuple[int, int]]]:
    """Each relation a random bijection of the entities: graph[h] = [(r, t), ...]."""
    graph: dict[int, list[tuple[int, int]]] = {h: [] for h in range(n_ent)}
    for r in range(n_rel):
        tails = list(range(n_ent))
        rng.shuffle(tails)
        for h in range(n_ent):
            graph[h].append((r, tails[h]))
    return graph


def walk(rng: random.Random, graph: dict[int, list[tuple[int, int]]], k: int) -> tuple[int, tuple[int, ...], int]:
    """One random walk of k hops: (head, relations, tail)."""
    head = rng.randrange(len(graph))
    node, rels = head, []
    for _ in range(k):
        r, node = rng.choice(graph[node])
        rels.append(r)
    return head, tuple(rels), node


def item(head: int, rels: tuple[int, ...], tail: int) -> dict[str, str]:
    """The LTG scripts' JSON item: input text and target text."""
    return {"input_text": f"<e_{head}>" + "".join(f"<r_{r}>" for r in rels), "target_text": f"<e_{tail}>"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    graph = build_graph(rng, 200, 10)
    splits: dict[str, list[dict[str, str]]] = {"train": [], "valid": [], "test": []}
    for h, edges in graph.items():
        for r, t in edges:
            splits["train"].append(item(h, (r,), t))
    for k in range(2, 41):
        want = 16_500 if k <= 20 else 750
        seen: set[tuple[int, tuple[int, ...]]] = set()
        chains = []
        while len(chains) < want:
            head, rels, tail = walk(rng, graph, k)
            if (head, rels) in seen:
                continue
            seen.add((head, rels))
            chains.append(item(head, rels, tail))
        if k <= 20:
            splits["train"] += chains[:15_000]
            splits["valid"] += chains[15_000:15_750]
            splits["test"] += chains[15_750:]
        else:
            splits["test"] += chains
    os.makedirs(args.out, exist_ok=True)
    for name, rows in splits.items():
        with open(os.path.join(args.out, f"{name}.json"), "w") as f:
            json.dump(rows, f)
    print(sum(len(v) for v in splits.values()))


if __name__ == "__main__":
    main()
