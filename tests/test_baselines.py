"""Non-reasoning baselines: each one on a tiny hand-built dataset whose predictions are worked out by
hand, then `benchgen baselines` end to end (results through the evaluator, floor rows, summary)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from click.testing import CliRunner
from fixtures.tasks import TASKS, addition, induction, khop
from fixtures.toy import commit

from benchgen.cli import main
from benchgen.dataset import DatasetWriter, load
from benchgen.errors import BenchgenError
from benchgen.evaluators.results import Results
from benchgen.pipeline.baselines import run_baselines
from benchgen.schema import make_ids
from benchgen.tasks.baselines import Context, lookup, mode_by_key, mode_for
from benchgen.tasks.baselines import for_task as _for_task
from benchgen.vocab import SPECIALS, list_array_from_matrix


def baselines_for(task: str):
    return _for_task(TASKS[task].TASK)


E, R = 4, 3  # khop toy graph: tails[h, r] = (h + r + 1) % 4, so a chain's answer is (h + sum r + k) % 4


def ragged(rows: list[list[int]]) -> pa.Array:
    lengths = np.array([len(r) for r in rows])
    m = np.zeros((len(rows), max(lengths)), np.int32)
    for i, r in enumerate(rows):
        m[i, :len(r)] = r
    return list_array_from_matrix(m, lengths)


def write(out: Path, task: str, config: dict, vocab, schema: pa.Schema, splits: dict[str, dict],
          extras: dict[str, pa.Table] | None = None) -> Path:
    """A dataset from explicit columns per split (``id``/``split`` added here)."""
    with DatasetWriter(out, task=task, config=config, seed=0, vocab=vocab, schema=schema) as w:
        for name, table in (extras or {}).items():
            w.write_extra(name, table)
        for split, cols in splits.items():
            n = len(cols["depth"])
            arrays = {"id": make_ids(task, split, 0, n), "split": pa.array([split] * n, pa.string()), **cols}
            w.write_split(split, [pa.table({f.name: arrays[f.name] for f in schema}, schema=schema)])
        commit(w)
    return out


# --- khop -----------------------------------------------------------------------------------------
def khop_rows(queries: list[tuple[int, ...]], vocab) -> dict:
    """Columns of khop rows ``(head, r_1, ..., r_k)`` with their true answers."""
    ent0, rel0 = len(SPECIALS), len(SPECIALS) + E
    inputs = [[ent0 + q[0]] + [rel0 + r for r in q[1:]] for q in queries]
    answers = [(q[0] + sum(q[1:]) + len(q) - 1) % E for q in queries]
    ids = ragged(inputs)
    return {"depth": pa.array([len(q) - 1 for q in queries], pa.int32()), "input_ids": ids,
            "target_ids": ragged([[ent0 + a] for a in answers]), "prompt": vocab.render(ids),
            "answer": pa.array([f"<e_{a}>" for a in answers]),
            "bridges": ragged([[] for _ in queries]), "n_ood_hops": pa.array([0] * len(queries), pa.int32())}


KHOP_TRAIN = [(h, r) for h in range(E) for r in range(R)] + [(0, 0, 1), (1, 2, 2), (2, 0, 0), (0, 1, 2)]
KHOP_TEST = [(3, 1, 0, 2), (0, 1, 0), (2, 2, 2, 2)]


@pytest.fixture(scope="module")
def khop_ds(tmp_path_factory):
    cfg = {"structure": "permutation", "num_entities": E, "num_relations": R, "out_degree": R}
    vocab = khop.make_vocab(khop.KhopConfig(num_entities=E, num_relations=R, out_degree=R, structure="permutation"))
    h, r = np.meshgrid(np.arange(E), np.arange(R), indexing="ij")
    kg = pa.table({"head": h.ravel().astype(np.int32), "relation": r.ravel().astype(np.int32),
                   "tail": ((h + r + 1) % E).ravel().astype(np.int32), "is_ood": np.zeros(E * R, bool)},
                  schema=khop.KG_SCHEMA)
    out = write(tmp_path_factory.mktemp("khop") / "d", "khop", cfg, vocab, khop.SCHEMA,
                {"train": khop_rows(KHOP_TRAIN, vocab), "test_depth": khop_rows(KHOP_TEST, vocab)},
                {"kg.parquet": kg})
    return load(out)


def predict(ds, name: str, split: str) -> list[str]:
    (b,) = [b for b in baselines_for(ds.task) if b.name == name]
    return b.predict(Context(ds), ds.table(split)).to_pylist()


@pytest.mark.parametrize("name,expected", [
    # last relation r2 / r0 / r2: train answers ending in r0 {1,2,3,0,0} -> 0; in r2 {3,0,1,2,3,1} -> 1 (tie: smaller)
    ("last_relation_prior", ["<e_1>", "<e_0>", "<e_1>"]),
    # (head, last relation): only the atomic (3,r2)->2, (0,r0)->1 and (2,r2)->1 (tails = h + r + 1)
    ("head_last_relation_prior", ["<e_2>", "<e_1>", "<e_1>"]),
    # only (0, {r0, r1}) was composed in train (as 0 r0 r1 -> 3)
    ("bag_of_relations", ["", "<e_3>", ""]),
    ("first_hop", ["<e_1>", "<e_2>", "<e_1>"]),
    ("last_hop", ["<e_2>", "<e_1>", "<e_1>"]),
    # train answers: each entity 3x among atomics, compositions 3, 3, 0, 1 -> <e_3>
    ("majority", ["<e_3>"] * 3),
    ("majority_per_depth", ["<e_3>"] * 3),   # depth 2 in train -> <e_3>; depth 3 unseen -> overall
    ("train_lookup", ["<e_3>"] * 3),         # no test prompt occurs in train: the majority answer
])
def test_khop_baselines_by_hand(khop_ds, name, expected):
    assert predict(khop_ds, name, "test_depth") == expected


def test_khop_truths_and_chance_guess(khop_ds):
    assert khop_ds.table("test_depth").column("answer").to_pylist() == ["<e_1>", "<e_3>", "<e_3>"]
    guesses = predict(khop_ds, "chance", "test_depth")
    assert set(guesses) <= {f"<e_{i}>" for i in range(E)}
    assert guesses == predict(khop_ds, "chance", "test_depth")  # seeded


def test_mode_by_key_ties_and_order():
    keys, modes = mode_by_key(np.array([5, 5, 5, 5, 1, 1, 9]), np.array([7, 2, 7, 2, 4, 3, 0]))
    assert keys.tolist() == [1, 5, 9] and modes.tolist() == [3, 2, 0]


@pytest.mark.parametrize("scale", [1, 10**12])  # dense key range, and wide keys (hashes)
def test_mode_for_gives_the_full_modes_on_the_queried_keys(scale):
    """Restricting the train keys to the queried ones changes no lookup (present keys or the default)."""
    rng = np.random.default_rng(scale % 97)
    for _ in range(100):
        keys = rng.integers(0, 40, int(rng.integers(1, 500))) * scale
        values = rng.integers(0, 6, len(keys))
        query = rng.integers(0, 50, int(rng.integers(1, 100))) * scale  # some keys train never saw
        full, restricted = mode_by_key(keys, values), mode_for(keys, values, query)
        assert lookup(query, *full, -7).tolist() == lookup(query, *restricted, -7).tolist()
        assert set(restricted[0].tolist()) == set(keys.tolist()) & set(query.tolist())


# --- addition -------------------------------------------------------------------------------------
def addition_rows(operands: list[list[str]], reverse: bool = False) -> dict:
    cfg = addition.AdditionConfig(reverse_answer=reverse)
    tables = []
    for ops in operands:
        n, w = len(ops), len(ops[0])
        digits = np.array([[int(c) for o in ops for c in o]], np.int8)
        tables.append(addition.Sampler(cfg).table({"key": digits}, (n, w), "x"))
    t = pa.concat_tables(tables)
    return {c: t.column(c).combine_chunks() for c in t.column_names if c != "split"}


@pytest.fixture(scope="module")
def addition_ds(tmp_path_factory):
    train = [["12", "30"], ["12", "30"], ["50", "50"], ["11", "11", "11"], ["11", "11", "11"], ["05", "05", "05"],
             ["123", "456"]]
    test = [["17", "28", "99"], ["95", "17"], ["999", "999", "999"], ["45", "45", "45", "45"]]
    out = write(tmp_path_factory.mktemp("add") / "d", "addition", {"reverse_answer": False}, addition.make_vocab(),
                addition.SCHEMA, {"train": addition_rows(train), "test_depth": addition_rows(test)})
    return load(out)


@pytest.mark.parametrize("name,expected", [
    ("carry_free_sum", ["24", "2", "777", "60"]),        # digit columns mod 10, leading zeros dropped
    ("first_two_sum", ["45", "112", "1998", "90"]),
    # (n, width) cells: 2x2 -> 42 (twice); 3x2 -> 33 (twice); 3x3 unseen -> depth 3 -> 33; 4x2 unseen -> overall
    ("majority_per_depth_width", ["33", "42", "33", "33"]),
    ("majority_per_depth", ["33", "42", "33", "33"]),
    ("majority", ["33"] * 4),                            # 33 and 42 tie twice each: the smaller string
])
def test_addition_baselines_by_hand(addition_ds, name, expected):
    assert predict(addition_ds, name, "test_depth") == expected


def test_addition_reverse_answers(tmp_path):
    rows = addition_rows([["17", "28", "99"], ["95", "17"]], reverse=True)
    out = write(tmp_path / "d", "addition", {"reverse_answer": True}, addition.make_vocab(), addition.SCHEMA,
                {"train": rows, "test_depth": rows})
    ds = load(out)
    assert predict(ds, "carry_free_sum", "test_depth") == ["42", "2"]
    assert predict(ds, "first_two_sum", "test_depth") == ["54", "211"]
    assert ds.table("test_depth").column("answer").to_pylist() == ["441", "211"]


# --- induction ------------------------------------------------------------------------------------
def induction_rows(seqs: list[str], answers: list[str], p: int = 1) -> dict:
    letter0 = len(SPECIALS) + 11
    head = [len(SPECIALS) + int(c) for c in str(p)] + [len(SPECIALS) + 10]
    ids = ragged([head + [letter0 + ord(c) - 97 for c in s] for s in seqs])
    return {"depth": pa.array([p] * len(seqs), pa.int32()), "input_ids": ids,
            "target_ids": ragged([[letter0 + ord(a) - 97] for a in answers]),
            "prompt": pa.array([f"{p}|{s}" for s in seqs]), "answer": pa.array(answers),
            "width": pa.array([len(s) for s in seqs], pa.int32()),
            "chain_positions": ragged([[len(s)] for s in seqs])}


def induction_ds(out: Path, train: list[str], test: list[str], test_answers: list[str], split="test_depth"):
    """Train answers are the letter at position 2 (0-indexed): the leak fixed_position must find."""
    return load(write(out, "induction", {"alphabet": 4}, induction.make_vocab(4), induction.SCHEMA,
                      {"train": induction_rows(train, [s[2] for s in train]),
                       split: induction_rows(test, test_answers, p=3)}))


TRAIN_SEQS = ["".join(row) for row in np.random.default_rng(0).choice(list("abcd"), size=(200, 8))]


def test_induction_baselines_by_hand(tmp_path):
    ds = induction_ds(tmp_path / "d", TRAIN_SEQS, ["abcabdda", "dcdcbbba", "ccaabbdd"], ["c", "d", "a"])
    assert predict(ds, "one_hop", "test_depth") == ["b", "", "d"]  # "dcdcbbba": a never occurred before
    assert predict(ds, "last_letter", "test_depth") == ["a", "a", "d"]
    assert predict(ds, "most_frequent_letter", "test_depth") == ["a", "b", "a"]  # ties: earliest letter
    assert predict(ds, "fixed_position", "test_depth") == ["c", "d", "a"]     # position 2 from the start
    assert predict(ds, "positional_probe", "test_depth") == ["c", "d", "a"]   # the probe learns it too


def test_baseline_registry():
    for task in ("khop", "addition", "induction"):
        names = [b.name for b in baselines_for(task)]
        assert names[:4] == ["chance", "majority", "majority_per_depth", "train_lookup"]
        assert len(names) == len(set(names))
    assert {b.name for b in baselines_for("induction") if not b.cheap} == {"chance", "positional_probe"}


# --- the command ----------------------------------------------------------------------------------
def test_baselines_command_end_to_end(khop_ds, tmp_path):
    out = tmp_path / "floors"
    r = CliRunner().invoke(main, ["baselines", str(khop_ds.path), "--out", str(out), "--bootstrap", "20"])
    assert r.exit_code == 0, r.output
    names = [b.name for b in baselines_for("khop")]
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == sorted(names)
    truth = khop_ds.table("test_depth").column("answer").to_pylist()
    for name in names:
        res = Results.from_json(out / name / "results.json")
        assert res.model["floor"] and res.model["fitted_on"] == "train" and res.fingerprint == khop_ds.fingerprint
        preds = pa.parquet.read_table(out / name / "predictions.parquet").column("prediction").to_pylist()
        hits = sum(p == t for p, t in zip(preds, truth))
        assert res.metrics["per_split"]["test_depth"]["correct"] == hits
    summary = json.loads((out / "summary.json").read_text())
    by_depth = {e["depth"]: e for e in summary["splits"]["test_depth"]}
    assert by_depth[2]["chance"] == 1.0 and by_depth[3]["chance"] == 0.5  # distinct answers per cell
    # at depth 2 majority, majority_per_depth and bag_of_relations are all right: the first listed wins
    assert by_depth[2]["best"] == {"baseline": "majority", "accuracy": 1.0,
                                   "ci_low": pytest.approx(0.2065, abs=1e-3), "ci_high": 1.0}
    assert "best shortcut baseline" in (out / "summary.md").read_text()
    assert "majority 1.000" in r.output
    again = CliRunner().invoke(main, ["baselines", str(khop_ds.path), "--out", str(out)])
    assert again.exit_code == 2 and "--overwrite" in again.output


def test_baselines_bad_input(khop_ds, tmp_path):
    with pytest.raises(BenchgenError, match=r"--only 'nope': not a khop baseline"):
        run_baselines(khop_ds, tmp_path / "o", only=["nope"])
    with pytest.raises(BenchgenError, match=r"--splits 'test_x': not in dataset"):
        run_baselines(khop_ds, tmp_path / "o", splits=["test_x"])
    r = CliRunner().invoke(main, ["baselines", str(khop_ds.path), "--only", "majority,first_hop", "--json",
                                  "--out", str(tmp_path / "j")])
    assert r.exit_code == 0, r.output
    assert set(json.loads(r.output)["baselines"]) == {"majority", "first_hop"}
