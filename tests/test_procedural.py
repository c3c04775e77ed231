"""benchgen.procedural and benchgen.Curriculum (issue 22, part 2): index stability, the train
distribution drawn from the files' own generator (answers recomputed by walking the written graph,
addition by Python integers), held-out queries never drawn by train (every query of a tiny graph
enumerated), the depth knob, and a curriculum driven by a scripted accuracy stream, saved and restored."""

from __future__ import annotations

import json
import random
from collections import Counter

import pytest

import benchgen
from benchgen.errors import BenchgenError
from benchgen.pipeline.procedural import BLOCK

TINY = {"structure": "permutation", "num_entities": 12, "num_relations": 3, "out_degree": 3, "ood_fraction": 0.2,
        "train_hops": "2,3", "test_hops": "4", "train_per_hop": 20, "valid_per_hop": 5, "test_per_hop": 5,
        "systematic_per_hop": 5}


def test_item_i_is_the_same_whatever_the_order():
    ds = benchgen.procedural("khop", preset="khop-small", seed=7)
    n = 3 * BLOCK + 17
    forward = [ds[i] for i in range(n)]
    fresh = benchgen.procedural("khop", preset="khop-small", seed=7)
    order = list(range(n))
    random.Random(1).shuffle(order)
    shuffled = {i: fresh[i] for i in order}
    assert [shuffled[i] for i in range(n)] == forward
    assert [x for _, x in zip(range(n), iter(benchgen.procedural("khop", preset="khop-small", seed=7)))] == forward
    far = 10**9 + 3  # an infinite stream is addressable anywhere, first or last
    assert fresh[far] == benchgen.procedural("khop", preset="khop-small", seed=7)[far]
    assert fresh[far]["metadata"]["index"] == far and fresh[far]["metadata"]["id"] == f"khop-train-{far}"
    other = benchgen.procedural("khop", preset="khop-small", seed=8)
    same = sum(other[i]["question"] == forward[i]["question"] for i in range(n))
    assert same < n // 20  # another seed: another graph and stream
    assert set(forward[0]) == {"question", "answer", "metadata"}
    assert {"depth", "split", "id", "index", "seed", "task"} <= set(forward[0]["metadata"])
    sized = benchgen.procedural("khop", preset="khop-small", seed=7, size=5)
    assert len(sized) == 5 and sized[-1] == forward[4] and list(sized) == forward[:5]
    with pytest.raises(IndexError):
        sized[5]
    with pytest.raises(TypeError, match="infinite"):
        len(ds)


def test_khop_items_follow_the_written_graph_and_the_train_distribution(tmp_path):
    files = benchgen.generate("khop", preset="khop-small", seed=3, output="benchgen")
    kg = files.extra("kg.parquet").to_pylist()
    tail = {(r["head"], r["relation"]): r["tail"] for r in kg}
    ood = {(r["head"], r["relation"]) for r in kg if r["is_ood"]}
    ds = benchgen.procedural("khop", preset="khop-small", seed=3)
    depths = Counter()
    for i in range(2 * BLOCK):
        item = ds[i]
        tokens = item["question"].strip("<>").split("><")
        e = int(tokens[0][2:])
        for t in tokens[1:]:
            assert (e, int(t[2:])) not in ood  # train compositions use ID triples only, as the files' do
            e = tail[(e, int(t[2:]))]
        assert item["answer"] == f"<e_{e}>"
        assert item["metadata"]["depth"] == len(tokens) - 1
        depths[item["metadata"]["depth"]] += 1
    assert set(depths) == {2, 3, 4}  # khop-small's training hops, about evenly
    assert min(depths.values()) > 0.25 * 2 * BLOCK
    deep = ds.with_depth(6)
    assert {deep[i]["metadata"]["depth"] for i in range(200)} == {6}


def test_held_out_queries_are_never_drawn_by_train():
    """A tiny graph: every 2-hop ID query is drawn; train and test split them, with no overlap."""
    train = benchgen.procedural("khop", seed=2, depth=2, held_out_share=0.25, **TINY)
    test = benchgen.procedural("khop", seed=2, depth=2, held_out_share=0.25, split="test", **TINY)
    a = set(train.table(0, 20 * BLOCK).column("prompt").to_pylist())
    b = set(test.table(0, 10 * BLOCK).column("prompt").to_pylist())
    files = benchgen.generate("khop", seed=2, output="benchgen", **TINY)
    kg = files.extra("kg.parquet").to_pylist()
    out = {}
    for r in kg:
        if not r["is_ood"]:
            out.setdefault(r["head"], []).append((r["relation"], r["tail"]))
    every = {f"<e_{h}><r_{r1}><r_{r2}>" for h in out for r1, m in out[h] for r2, _ in out.get(m, [])}
    assert a | b == every  # each split covers its whole part of the query space...
    assert not a & b  # ...and the parts are disjoint
    assert 0.1 < len(b) / len(every) < 0.4  # about the held-out share
    assert train.audit(5000) == [] and test.audit(5000) == []
    with pytest.raises(BenchgenError, match="every query of it is in train"):
        benchgen.procedural("khop", seed=2, depth=1, split="test", **TINY)


def test_addition_items_and_held_out_cells():
    ds = benchgen.procedural("addition", seed=1, train_operands="2,3", train_widths="2,3", held_out="3x3",
                             test_operands="5", interp_operands=())
    seen = set()
    for i in range(BLOCK):
        item = ds[i]
        operands = [int(x) for x in item["question"].rstrip(" =").split(" + ")]
        assert int(item["answer"]) == sum(operands)
        seen.add((item["metadata"]["depth"], item["metadata"]["width"]))
    assert seen == {(2, 2), (2, 3), (3, 2)}  # 3x3 is test_systematic's cell: never train
    five = ds.with_depth(5)
    assert {five[i]["metadata"]["depth"] for i in range(50)} == {5}
    with pytest.raises(BenchgenError):
        ds.with_depth(1)  # addition has at least two operands


def test_speed_is_vectorised():
    """Not the benchmark (benchmarks/procedural.py): a guard that items stay far from per-row Python."""
    import time

    ds = benchgen.procedural("khop", preset="khop-small")
    ds[0]
    start = time.process_time()  # CPU seconds of this process: other jobs on the machine do not count
    n = sum(1 for _ in zip(range(50_000), iter(ds)))
    assert n / (time.process_time() - start) > 20_000


class Learner:
    """Scripted: answers right with probability acc[depth] (a seeded stream), wrong otherwise."""

    ACC = {2: 0.97, 3: 0.9, 4: 0.72, 5: 0.45, 6: 0.2}

    def __init__(self, seed: int):
        self.rng = random.Random(seed)

    def rewards(self, items: list[dict]) -> list[float]:
        answers = [it["answer"] if self.rng.random() < self.ACC[it["metadata"]["depth"]] else "wrong" for it in items]
        return [benchgen.score_answer(a, it) for a, it in zip(answers, items)]


def _run(cur, learner, batches: int) -> list[int]:
    levels = []
    for _ in range(batches):
        cur.update(learner.rewards(cur.sample(16)))
        levels.append(cur.level)
    return levels


def test_curriculum_holds_the_target_and_resumes_exactly():
    cur = benchgen.Curriculum("khop", preset="khop-small", target=0.7, band=0.1, window=64)
    assert cur.levels == (2, 3, 4, 5, 6) and cur.level == 2
    levels = _run(cur, Learner(0), 200)
    assert levels[0] == 2 and max(levels) >= 4
    tail = Counter(levels[100:])
    assert tail.most_common(1)[0][0] == 4  # where the learner's accuracy is nearest the target
    assert all(h["to"] > h["from"] for h in cur.history if h["accuracy"] > 0.8)
    assert all(h["to"] < h["from"] for h in cur.history if h["accuracy"] < 0.6)

    # save mid-way, restore in a fresh object: the same levels and the same items follow
    a = benchgen.Curriculum("khop", preset="khop-small", window=64)
    learner = Learner(5)
    _run(a, learner, 60)
    state = json.loads(json.dumps(a.state_dict()))
    rng_state = learner.rng.getstate()
    rest = _run(a, learner, 60)
    items_a = a.sample(8)
    b = benchgen.Curriculum.from_state(state)
    assert isinstance(b, benchgen.Curriculum)
    learner.rng.setstate(rng_state)
    assert _run(b, learner, 60) == rest and b.sample(8) == items_a


def test_curriculum_moves_on_exact_streams():
    cur = benchgen.Curriculum("addition", window=10, target=0.5, band=0.2)
    assert cur.level == 2
    cur.update([1.0] * 10)
    assert cur.level == 3 and cur.accuracy is None  # a fresh window at the new level
    cur.update([0.6] * 10)
    assert cur.level == 3  # within the band: stays
    cur.update([0.0] * 10)
    assert cur.level == 2
    cur.update([0.0] * 10)
    assert cur.level == 2  # the bottom of the ladder
    assert [(h["from"], h["to"]) for h in cur.history] == [(2, 3), (3, 2)]
    with pytest.raises(BenchgenError, match="expected a value in"):
        cur.update(2.0)
    with pytest.raises(BenchgenError, match="target"):
        benchgen.Curriculum("addition", target=1.5)
