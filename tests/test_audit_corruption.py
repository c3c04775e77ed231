"""Every guarantee `benchgen audit` checks, broken one at a time in a written dataset.

Each case copies a clean dataset (which passes the audit), rewrites a shard so that exactly one
guarantee is violated, re-hashes the manifest (rows, depth histogram, sha256) so the format checks
stay quiet unless they are the target, then runs ``benchgen audit`` through the CLI and asserts
exit code 1 and a message naming the guarantee (a message absent from the clean audit).
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from fixtures.tasks import addition, induction, khop

from benchgen.cli import main
from benchgen.config import build_config
from benchgen.dataset import load

CONFIGS = {
    "addition": (addition, {"train_operands": "2,4,6", "train_widths": "2,3", "held_out": "4x3",
                            "interp_operands": "3", "test_operands": "7", "train_per_cell": 80,
                            "valid_per_cell": 20, "test_per_cell": 30, "seed": 1}),
    "induction": (induction, {"train_hops": "8,12", "train_lengths": "40,48", "held_out": "12x40",
                              "interp_hops": "10", "test_hops": "14", "train_per_cell": 80,
                              "valid_per_cell": 20, "test_per_cell": 30, "seed": 1}),
    "khop": (khop, {"structure": "permutation", "num_entities": 40, "num_relations": 4, "out_degree": 4,
                    "ood_fraction": 0.25,
                    "train_hops": "2,4", "interp_hops": "3", "test_hops": "5", "train_per_hop": 200,
                    "valid_per_hop": 20, "test_per_hop": 30, "systematic_per_hop": 30, "seed": 2}),
}


@pytest.fixture(scope="module")
def clean(tmp_path_factory) -> dict[str, tuple[Path, str]]:
    """One clean dataset per task and its audit output (which must pass)."""
    out = {}
    for task, (mod, over) in CONFIGS.items():
        cfg = build_config(mod.CONFIG, mod.PRESETS, None, over)
        path = mod.generate(cfg, tmp_path_factory.mktemp(task) / "d", progress=False)
        r = CliRunner().invoke(main, ["audit", str(path)])
        assert r.exit_code == 0, r.output
        out[task] = (path, r.output)
    return out


# --- rewriting a written dataset ------------------------------------------------------------------
def read(d: Path, split: str) -> list[dict]:
    return load(d).table(split).to_pylist()


def write(d: Path, split: str, rows: list[dict], rehash: bool = True, fix_depths: bool = True,
          schema_drop: str | None = None) -> None:
    """Replace a split's shards by one shard of ``rows``; re-hash the manifest unless told not to."""
    m = json.loads((d / "manifest.json").read_text())
    info = m["splits"][split]
    schema = pq.read_schema(d / info["shards"][0])
    if schema_drop:
        schema = schema.remove(schema.get_field_index(schema_drop))
    for s in info["shards"][1:]:
        (d / s).unlink()
    info["shards"] = info["shards"][:1]
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), d / info["shards"][0])
    if rehash:
        info["sha256"] = hashlib.sha256(hashlib.sha256((d / info["shards"][0]).read_bytes())
                                        .hexdigest().encode()).hexdigest()
        info["rows"] = len(rows)
    if fix_depths:
        depths, counts = np.unique([r["depth"] for r in rows], return_counts=True)
        info["depths"] = {str(k): int(v) for k, v in zip(depths.tolist(), counts.tolist())}
    (d / "manifest.json").write_text(json.dumps(m, indent=1))


def move(d: Path, src: str, dst: str, pick: Callable[[dict], bool] = lambda r: True, k: int = 0) -> None:
    """Overwrite row ``k`` of ``dst`` with the first row of ``src`` satisfying ``pick`` (keeping dst's id)."""
    row = next(r for r in read(d, src) if pick(r))
    rows = read(d, dst)
    rows[k] = {**row, "id": rows[k]["id"], "split": dst}
    write(d, dst, rows)


def edit(d: Path, split: str, fn: Callable[[dict], None], k: int = 0, **kw) -> None:
    rows = read(d, split)
    fn(rows[k])
    write(d, split, rows, **kw)


def other_letter(s: str) -> str:
    return "b" if s != "b" else "c"


def bump(s: str) -> str:
    return str(int(s) + 1)


def set_(key, value):
    return lambda r: r.__setitem__(key, value(r) if callable(value) else value)


def with_manifest(fn: Callable[[dict], None]) -> Callable[[Path], None]:
    def go(d: Path) -> None:
        m = json.loads((d / "manifest.json").read_text())
        fn(m)
        (d / "manifest.json").write_text(json.dumps(m, indent=1))
    return go


# --- cases: (id, corruption, words the audit must print) ------------------------------------------
COMMON = [
    ("shard-hash", lambda d: edit(d, "test_id", set_("answer", "x"), rehash=False),
     "shard contents do not match manifest sha256"),
    ("row-count", lambda d: (write(d, "valid", read(d, "valid")[:-1]), with_manifest(
        lambda m: m["splits"]["valid"].__setitem__("rows", m["splits"]["valid"]["rows"] + 1))(d)),
     "rows on disk, manifest says"),
    ("split-column", lambda d: edit(d, "test_id", set_("split", "train")), "rows whose split column is not"),
    ("id-prefix", lambda d: edit(d, "test_id", set_("id", lambda r: r["id"].replace("test_id", "tst"))),
     "ids not of the form"),
    ("depth-histogram", lambda d: edit(d, "valid", lambda r: None, fix_depths=False) or with_manifest(
        lambda m: m["splits"]["valid"]["depths"].__setitem__("999", 1))(d), "depth histogram"),
    ("missing-column", lambda d: write(d, "test_id", [{k: v for k, v in r.items() if k != "prompt"}
                                                      for r in read(d, "test_id")], schema_drop="prompt"),
     "split 'test_id': missing column 'prompt'"),
    ("duplicate-id", lambda d: edit(d, "test_id", set_("id", lambda r: read(d, "test_id")[1]["id"])),
     "ids are not unique"),
]

GRID = [  # the grid tasks' split guarantees (tasks/grid.py audit_cells)
    ("train-leak", lambda d: move(d, "test_id", "train"), "queries also occur in train"),
    ("depth-range", lambda d: move(d, "test_id", "test_depth"), "depths not above the largest training depth"),
    ("depth-cell", lambda d: move(d, "test_id", "test_depth"), "split 'test_depth': rows in cells"),
    ("held-out-cell", lambda d: move(d, "test_id", "test_systematic"), "split 'test_systematic': rows in cells"),
    ("train-in-held-out-cell", lambda d: move(d, "test_systematic", "train"), "split 'train': rows in cells"),
    ("interp-trained", lambda d: move(d, "test_id", "test_interp"), "split 'test_interp': depth"),
    ("interp-cell", lambda d: move(d, "test_id", "test_interp"), "split 'test_interp': rows in cells"),
    ("valid-test-overlap", lambda d: move(d, "test_id", "valid"), "valid and test_id share queries"),
    ("repeat", lambda d: move(d, "test_id", "test_id", k=1), "repeated queries"),
    ("systematic-leak", lambda d: move(d, "test_systematic", "train"), "'test_systematic': 1 queries also occur in train"),
]

TASK_CASES = {
    "addition": COMMON + GRID + [
        ("answer", lambda d: edit(d, "test_id", set_("answer", lambda r: bump(r["answer"]))),
         "answer != Python integer sum of the operands"),
        ("target-ids", lambda d: edit(d, "test_id", set_("target_ids", lambda r: r["target_ids"][:-1] + [
            addition.DIGIT0 + (r["target_ids"][-1] - addition.DIGIT0 + 1) % 10])),
         "target_ids do not spell the answer"),
        ("input-ids", lambda d: edit(d, "test_id", set_("input_ids", lambda r: r["input_ids"][::-1])),
         "input_ids do not spell the prompt"),
        ("depth", lambda d: edit(d, "test_id", set_("depth", lambda r: r["depth"] + 1)),
         "depth != number of operands"),
        ("width", lambda d: edit(d, "test_id", set_("width", lambda r: r["width"] + 1)),
         "an operand's digit count != width"),
        ("carries", lambda d: edit(d, "test_id", set_("carries", lambda r: r["carries"] + 1)),
         "carries != carry positions"),
        ("prompt-form", lambda d: edit(d, "test_id", set_("prompt", "1 - 2 =")), "prompt is not"),
    ],
    "induction": COMMON + GRID + [
        ("answer", lambda d: edit(d, "test_id", set_("answer", lambda r: other_letter(r["answer"]))),
         "answer != v[find_p(v, n)]"),
        ("target-ids", lambda d: edit(d, "test_id", set_("target_ids", lambda r: [r["target_ids"][0] ^ 1])),
         "target_ids do not spell the answer"),
        ("chain", lambda d: edit(d, "test_id", set_("chain_positions", lambda r: [*r["chain_positions"][:-1],
                                                                                  r["chain_positions"][-1] - 1])),
         "chain_positions != positions visited"),
        ("prompt", lambda d: edit(d, "test_id", set_("prompt", lambda r: r["prompt"][:-1] + other_letter(
            r["prompt"][-1]))), "prompt != rendered input_ids"),
        ("depth", lambda d: edit(d, "test_id", set_("depth", lambda r: r["depth"] + 1)),
         "depth != p written in the input"),
        ("width", lambda d: edit(d, "test_id", set_("width", lambda r: r["width"] + 1)), "width != sequence length"),
        ("undefined-chain", lambda d: edit(d, "test_id", set_("input_ids", _unique_last)),
         "the p-hop chain reaches position 0"),
    ],
}


def _unique_last(r: dict) -> list[int]:
    """input_ids whose last letter occurs nowhere before it (find1 falls off at the first hop)."""
    ids = list(r["input_ids"])
    n = r["width"]
    seq = ids[-n:]
    last = seq[-1]
    other = next(t for t in set(seq) if t != last)
    return ids[:-n] + [other if t == last else t for t in seq[:-1]] + [last]


# --- khop: guarantees re-derived from kg.parquet --------------------------------------------------
def kg(d: Path) -> dict[tuple[int, int], tuple[int, bool]]:
    t = pq.read_table(d / "kg.parquet").to_pydict()
    return {(h, r): (tl, o) for h, r, tl, o in zip(t["head"], t["relation"], t["tail"], t["is_ood"])}


def chain_row(d: Path, want: Callable[[list[bool]], bool], hops: int) -> dict:
    """A query of ``hops`` relations whose per-hop OOD flags satisfy ``want``, rendered consistently
    (answer, bridges, n_ood_hops all match the traversal) so only the split guarantee can fail."""
    g = kg(d)
    tok = load(d).vocab.tokens
    index = {t: i for i, t in enumerate(tok)}
    out_edges: dict[int, list[int]] = {}
    for h, r in g:
        out_edges.setdefault(h, []).append(r)
    rng = np.random.default_rng(0)
    for _ in range(200_000):
        cur = int(rng.choice(sorted(out_edges)))
        head, rels, path, flags = cur, [], [], []
        for _ in range(hops):
            r = int(rng.choice(out_edges[cur]))
            cur, ood = g[(cur, r)]
            rels.append(r)
            path.append(cur)
            flags.append(bool(ood))
        if want(flags):
            ids = [index[f"<e_{head}>"], *(index[f"<r_{r}>"] for r in rels)]
            joiner = load(d).vocab.joiner
            return {"depth": hops, "input_ids": ids, "target_ids": [index[f"<e_{cur}>"]],
                    "prompt": joiner.join(tok[i] for i in ids), "answer": f"<e_{cur}>",
                    "bridges": path[:-1], "n_ood_hops": sum(flags)}
    raise AssertionError("no such chain in the graph")


def put(d: Path, split: str, row: dict, k: int = 0) -> None:
    rows = read(d, split)
    rows[k] = {**rows[k], **row}
    write(d, split, rows)


def flip_ood(d: Path) -> None:
    t = pq.read_table(d / "kg.parquet")
    ood = t["is_ood"].to_pylist()
    ood[ood.index(False)] = True
    pq.write_table(t.set_column(t.schema.get_field_index("is_ood"), "is_ood", pa.array(ood)), d / "kg.parquet")
    with_manifest(lambda m: m["extras"].__setitem__(
        "kg.parquet", hashlib.sha256((d / "kg.parquet").read_bytes()).hexdigest()))(d)


TASK_CASES["khop"] = COMMON + [
    ("kg-hash", lambda d: (d / "kg.parquet").write_bytes((d / "kg.parquet").read_bytes() + b"\0"),
     "task file kg.parquet: contents do not match"),
    ("kg-ood-count", flip_ood, "OOD triples, expected"),
    ("systematic-mixed", lambda d: put(d, "test_systematic", chain_row(d, lambda f: any(f) and not all(f), 2)),
     "test_systematic query is not an all-OOD composition"),
    ("systematic-id", lambda d: put(d, "test_systematic", chain_row(d, lambda f: not any(f), 2)),
     "test_systematic query is not an all-OOD composition"),
    ("depth-ood", lambda d: put(d, "test_depth", chain_row(d, lambda f: any(f), 5)),
     "test_depth query is not an ID chain deeper"),
    ("depth-shallow", lambda d: move(d, "test_id", "test_depth"), "test_depth query is not an ID chain deeper"),
    ("interp-trained", lambda d: move(d, "test_id", "test_interp"), "test_interp query is not an ID chain"),
    ("interp-ood", lambda d: put(d, "test_interp", chain_row(d, lambda f: any(f), 3)),
     "test_interp query is not an ID chain"),
    ("id-ood", lambda d: put(d, "test_id", chain_row(d, lambda f: any(f) and not all(f), 2)),
     "test_id query is not an ID composition"),
    ("train-ood", lambda d: put(d, "train", chain_row(d, lambda f: any(f) and not all(f), 2),
                                k=next(i for i, r in enumerate(read(d, "train")) if r["depth"] == 2)),
     "train composition uses an OOD triple"),
    ("train-hop", lambda d: put(d, "train", chain_row(d, lambda f: not any(f), 3),
                                k=next(i for i, r in enumerate(read(d, "train")) if r["depth"] == 2)),
     "train composition of 3 hops"),
    ("atomics", lambda d: move(d, "test_id", "train", k=next(i for i, r in enumerate(read(d, "train"))
                                                             if r["depth"] == 1)),
     "1-hop rows are not exactly the atomic triples"),
    ("train-leak", lambda d: move(d, "test_id", "train", k=next(i for i, r in enumerate(read(d, "train"))
                                                                if r["depth"] == 2)),
     "'test_id': 1 queries also occur in train"),
    ("valid-test-overlap", lambda d: move(d, "test_id", "valid"), "valid and test_id share queries"),
    ("repeat", lambda d: move(d, "test_id", "test_id", k=1), "query repeated within the split"),
    ("answer", lambda d: edit(d, "test_id", set_("target_ids", lambda r: [r["input_ids"][0]])),
     "answer differs from the graph traversal"),
    ("bridges", lambda d: edit(d, "test_id", set_("bridges", lambda r: [r["bridges"][0] + 1])),
     "bridges differ from the traversal"),
    ("n-ood", lambda d: edit(d, "test_id", set_("n_ood_hops", 1)), "n_ood_hops differs from the traversal"),
    ("depth", lambda d: edit(d, "test_id", set_("depth", 7)), "depth != number of relations"),
    ("text", lambda d: edit(d, "test_id", set_("prompt", "x")), "prompt/answer text differs"),
]


CASES = [(task, name, fn, words) for task, cases in TASK_CASES.items() for name, fn, words in cases]


@pytest.mark.parametrize("task,name,corrupt,words", CASES, ids=[f"{t}-{n}" for t, n, _, _ in CASES])
def test_audit_names_each_violated_guarantee(clean, tmp_path, task, name, corrupt, words):
    src, clean_output = clean[task]
    d = tmp_path / "d"
    shutil.copytree(src, d)
    corrupt(d)
    r = CliRunner().invoke(main, ["audit", str(d)])
    assert r.exit_code == 1, r.output
    assert "audit failed" in r.output
    if words is not None:
        assert words in r.output and words not in clean_output, r.output


def test_grid_writer_never_writes_into_out_before_it_is_complete(tmp_path, monkeypatch):
    """While splits stream, --out does not exist; a failure mid-write leaves nothing behind."""
    mod, over = CONFIGS["induction"]
    cfg = build_config(mod.CONFIG, mod.PRESETS, None, over)
    out = tmp_path / "o"
    real = induction.Sampler.table
    calls = {"n": 0}

    def table(self, rows, cell, split):
        calls["n"] += 1
        assert not out.exists(), "the writer touched --out before the dataset was complete"
        if split == "test_interp":
            raise RuntimeError("boom")
        return real(self, rows, cell, split)

    monkeypatch.setattr(induction.Sampler, "table", table)
    with pytest.raises(RuntimeError, match="boom"):
        induction.generate(cfg, out, progress=False)
    assert calls["n"] > 3 and not out.exists() and list(tmp_path.iterdir()) == []
    monkeypatch.setattr(induction.Sampler, "table", real)
    induction.generate(cfg, out, progress=False)
    assert (out / "manifest.json").exists()


# --- the vectorised audits against the plain-Python reference routes ------------------------------
def _routes(task: str):
    """(vectorised audit, plain-Python audit) of a task: the one benchgen runs and its reference."""
    if task == "khop":
        from benchgen.tasks.khop.audit import audit_khop_plain
        from benchgen.tasks.khop.audit_numpy import audit_khop
        return audit_khop, audit_khop_plain
    if task == "induction":
        from benchgen.tasks.induction.audit import audit_plain as plain
        from benchgen.tasks.induction.audit_numpy import audit as fast
        return fast, plain
    from benchgen.tasks.addition.audit import audit_plain
    from benchgen.tasks.addition.audit_numpy import audit as fast
    return fast, audit_plain


ROUTE_CASES = [(t, n, fn) for t, n, fn, _ in CASES
               if n not in ("shard-hash", "row-count", "missing-column", "kg-hash")]  # files checks: not the task's


@pytest.mark.parametrize("task,name,corrupt", ROUTE_CASES, ids=[f"{t}-{n}" for t, n, _ in ROUTE_CASES])
def test_vectorised_audit_equals_plain_route(clean, tmp_path, task, name, corrupt):
    """Same problems, same counts, same order as the plain-Python walk, on every corruption."""
    src, _ = clean[task]
    d = tmp_path / "d"
    shutil.copytree(src, d)
    corrupt(d)
    fast, plain = _routes(task)
    assert fast(load(d)) == plain(load(d))


@pytest.mark.parametrize("task", ["khop", "addition", "induction"])
def test_vectorised_audit_on_workers_equals_one_process(clean, tmp_path, task, monkeypatch):
    """Shards checked on 2 worker processes give the report of one process (a corrupted dataset)."""
    from benchgen.tasks import audit_tally

    src, _ = clean[task]
    d = tmp_path / "d"
    shutil.copytree(src, d)
    edit(d, "test_id", set_("depth", lambda r: r["depth"] + 1))
    fast, plain = _routes(task)
    one = fast(load(d), workers=1)
    monkeypatch.setattr(audit_tally, "MIN_PARALLEL_ROWS", 0)
    assert one and fast(load(d), workers=2) == one == plain(load(d))
