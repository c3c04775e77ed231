"""addition generator: every answer recomputed with Python integers from the written files."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from fixtures.tasks import addition
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from benchgen.cli import main
from benchgen.config import build_config
from benchgen.dataset import load
from benchgen.errors import ConfigError
from benchgen.pipeline.audit import audit

SMALL = {"train_operands": "2-4", "train_widths": "1-2", "held_out": "3x2", "test_operands": "5,7",
         "train_per_cell": 60, "valid_per_cell": 10, "test_per_cell": 15, "seed": 3}


def make(tmp_path: Path, name: str = "d", **over) -> Path:
    cfg = build_config(addition.AdditionConfig, addition.PRESETS, over.pop("preset", None), {**SMALL, **over})
    return addition.generate(cfg, tmp_path / name, progress=False)


def carries_of(ops: list[str]) -> int:
    """Carry positions: column j (from the right) carries iff sum(o mod 10^(j+1)) >= 10^(j+1)."""
    w = len(ops[0])
    return sum(sum(int(o) % 10 ** (j + 1) for o in ops) >= 10 ** (j + 1) for j in range(w))


def check_rows(ds, reverse: bool) -> dict[str, list[dict]]:
    """Independent recomputation of every row; returns rows by split."""
    tokens = ds.vocab.tokens
    out = {}
    for split in ds.splits:
        rows = ds.table(split).to_pylist()
        for r in rows:
            assert r["prompt"].endswith(" =")
            ops = r["prompt"][:-2].split(" + ")
            assert len(ops) == r["depth"] and all(len(o) == r["width"] and o.isdigit() for o in ops)
            total = str(sum(int(o) for o in ops))
            assert r["answer"] == (total[::-1] if reverse else total)
            assert "".join(tokens[i] for i in r["target_ids"]) == r["answer"]
            assert "".join(tokens[i] for i in r["input_ids"]) == "+".join(ops) + "="
            assert r["carries"] == carries_of(ops)
            assert r["split"] == split and r["id"].startswith(f"addition/{split}/")
        out[split] = rows
    return out


@pytest.mark.parametrize("reverse", [False, True])
def test_every_answer_is_the_python_integer_sum(tmp_path, reverse):
    ds = load(make(tmp_path, reverse_answer=reverse))
    rows = check_rows(ds, reverse)
    cells = {s: {(r["depth"], r["width"]) for r in rs} for s, rs in rows.items()}
    train_cells = {(n, w) for n in (2, 3, 4) for w in (1, 2)} - {(3, 2)}
    assert cells["train"] == cells["valid"] == cells["test_id"] == train_cells
    assert cells["test_systematic"] == {(3, 2)}  # held out of train, present in test_systematic
    assert cells["test_depth"] == {(5, 1), (5, 2), (7, 1), (7, 2)}
    assert min(d for d, _ in cells["test_depth"]) > max(d for d, _ in cells["train"])
    train_q = [tuple(r["input_ids"]) for r in rows["train"]]
    assert len(set(train_q)) == len(train_q) == 5 * 60
    for split in ("valid", "test_id", "test_systematic", "test_depth"):
        q = {tuple(r["input_ids"]) for r in rows[split]}
        assert len(q) == len(rows[split]) and not q & set(train_q), split
    assert not {tuple(r["input_ids"]) for r in rows["valid"]} & {tuple(r["input_ids"]) for r in rows["test_id"]}
    assert ds.manifest["splits"]["test_depth"]["depths"] == {"5": 30, "7": 30}
    assert audit(ds) == []


def test_tiny_cells_are_deduplicated_against_train(tmp_path):
    # cell 2x1 has only 100 distinct operand pairs: 60 + 10 + 15 of them must all differ
    ds = load(make(tmp_path, train_operands="2,3", held_out="", train_widths="1", test_operands="4",
                   train_per_cell=70, valid_per_cell=10, test_per_cell=20))
    rows = check_rows(ds, False)
    two = [tuple(r["input_ids"]) for s in ("train", "valid", "test_id") for r in rows[s] if r["depth"] == 2]
    assert len(two) == 100 and len(set(two)) == 100  # the whole population, each once
    assert "test_systematic" not in ds.splits  # no held-out cells -> split omitted


def test_same_seed_identical_bytes_and_seeds_differ(tmp_path):
    over = {"train_widths": "3-4", "held_out": "3x4"}
    a, b = make(tmp_path, "a", seed=42, **over), make(tmp_path, "b", seed=42, **over)
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert files and all((a / f).read_bytes() == (b / f).read_bytes() for f in files)
    c = make(tmp_path, "c", seed=43, **over)
    qa = {tuple(x) for x in load(a).table("train")["input_ids"].to_pylist()}
    qc = {tuple(x) for x in load(c).table("train")["input_ids"].to_pylist()}
    assert len(qa & qc) <= 3  # 300 rows from populations of 10^6+: overlap only by chance


def test_presets_validate_and_small_preset_has_all_families(tmp_path):
    for name in addition.PRESETS:
        build_config(addition.AdditionConfig, addition.PRESETS, name, {})
    cfg = build_config(addition.AdditionConfig, addition.PRESETS, "saunshi-addition", {})
    # the paper's grid exactly: train n in {2,4,8,16,32} at width 3, evaluate n in {8,16,24,32}
    assert (cfg.train_operands, cfg.train_widths, cfg.interp_operands) == ((2, 4, 8, 16, 32), (3,), (24,))
    assert not cfg.held_out and not cfg.test_operands
    g = cfg.grid()
    assert {8, 16, 32} <= {d for d, _ in g.train_cells()} and g.interp_cells() == [(24, 3)]
    assert g.systematic_cells() == [] and g.depth_cells() == []
    ds = load(addition.generate(build_config(addition.AdditionConfig, addition.PRESETS, "addition-small", {}),
                                tmp_path / "s", progress=False))
    assert set(ds.splits) == {"train", "valid", "test_id", "test_systematic", "test_depth"}
    assert 3000 <= ds.manifest["splits"]["train"]["rows"] <= 10000
    assert audit(ds) == []


@pytest.mark.parametrize("over,words", [
    ({"held_out": "5x2"}, "option 'held-out': cell 5x2: depth 5 is not a training depth"),
    ({"held_out": "3x9"}, "option 'held-out': cell 3x9: width 9 is not a training width"),
    ({"test_operands": "4,6"}, "option 'test-operands': must all be above the largest training depth 4"),
    ({"train_per_cell": 100}, "option 'train-per-cell': cell 2x1 has only 100 distinct rows"),
    ({"train_operands": "1-3"}, "option 'train-operands': operand counts must be in 2.."),
    ({"train_widths": "0-2"}, "option 'train-widths': widths must be in 1.."),
    ({"valid_per_cell": -1}, "option 'valid-per-cell': expected a non-negative count"),
    ({"train_per_cell": 0}, "option 'train-per-cell': expected at least 1"),
    ({"held_out": "3x"}, "option 'held-out': expected cells like"),
    ({"interp_operands": "3"}, "option 'interp-operands': depth 3 is a training depth"),
    ({"train_operands": "2,4", "held_out": "", "interp_operands": "5"},
     "option 'interp-operands': depth 5 is not strictly between the smallest and largest training depths 2 and 4"),
    ({"train_operands": "2,4", "held_out": "", "interp_operands": "1"},
     "option 'interp-operands': operand counts must be in 2.."),
])
def test_bad_configs_are_rejected_with_a_clear_message(tmp_path, over, words):
    with pytest.raises(ConfigError) as e:
        make(tmp_path, **over)
    assert words in str(e.value)
    assert not (tmp_path / "d").exists()


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=st.sets(st.integers(2, 5), min_size=1, max_size=3), widths=st.sets(st.integers(1, 4), min_size=2, max_size=3),
       reverse=st.booleans(), seed=st.integers(0, 2**31))
def test_random_small_configs(tmp_path_factory, ops, widths, reverse, seed):
    held = f"{max(ops)}x{max(widths)}" if len(ops) > 1 else ""
    cfg = build_config(addition.AdditionConfig, addition.PRESETS, None, {
        "train_operands": sorted(ops), "train_widths": sorted(widths), "held_out": held,
        "test_operands": str(max(ops) + 1), "train_per_cell": 20, "valid_per_cell": 5, "test_per_cell": 5,
        "reverse_answer": reverse, "seed": seed})
    ds = load(addition.generate(cfg, tmp_path_factory.mktemp("h") / "d", progress=False))
    rows = check_rows(ds, reverse)
    n_train = len(ops) * len(widths) - bool(held)
    assert len(rows["train"]) == 20 * n_train
    assert ("test_systematic" in ds.splits) == bool(held)
    assert audit(ds) == []


def test_audit_catches_a_wrong_answer(tmp_path):
    out = make(tmp_path)
    shard = out / load(out).manifest["splits"]["test_id"]["shards"][0]
    t = pq.read_table(shard)
    answers = t["answer"].to_pylist()
    answers[0] = str(int(answers[0]) + 1)
    pq.write_table(t.set_column(t.schema.get_field_index("answer"), "answer", __import__("pyarrow").array(answers)), shard)
    problems = audit(load(out))
    assert any("answer != Python integer sum" in p for p in problems)


def test_cli_generate_and_audit(tmp_path):
    runner = CliRunner()
    out = tmp_path / "cli"
    r = runner.invoke(main, ["generate", "addition", "--preset", "addition-small", "--train-per-cell", "50",
                             "--held-out", "3x3", "--reverse-answer", "--out", str(out), "--no-progress"])
    assert r.exit_code == 0, r.output
    assert load(out).config["held_out"] == [[3, 3]] and load(out).config["reverse_answer"] is True
    r = runner.invoke(main, ["audit", str(out)])
    assert r.exit_code == 0 and "audit passed" in r.output
    r = runner.invoke(main, ["generate", "addition", "--held-out", "9x3", "--out", str(tmp_path / "bad")])
    assert r.exit_code == 2 and "option 'held-out'" in r.output


def test_interp_split_holds_untrained_depths_strictly_inside_the_trained_range(tmp_path):
    ds = load(make(tmp_path, train_operands="2,4,6", held_out="4x2", interp_operands="3,5", test_operands="7"))
    rows = check_rows(ds, reverse=False)
    assert ds.splits == ["train", "valid", "test_id", "test_systematic", "test_interp", "test_depth"]
    cells = {s: {(r["depth"], r["width"]) for r in rs} for s, rs in rows.items()}
    assert cells["test_interp"] == {(3, 1), (3, 2), (5, 1), (5, 2)}
    trained = {d for d, _ in cells["train"]}
    assert trained == {2, 4, 6} and not trained & {d for d, _ in cells["test_interp"]}
    assert len(rows["test_interp"]) == 4 * 15
    assert audit(ds) == []
