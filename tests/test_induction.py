"""p-hop induction generator: every answer recomputed by a literal find_p from the written files."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from fixtures.tasks import induction
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from benchgen.cli import main
from benchgen.config import build_config
from benchgen.dataset import load
from benchgen.errors import ConfigError
from benchgen.pipeline.audit import audit

SMALL = {"alphabet": 3, "train_hops": "1-3", "train_lengths": "10,14", "held_out": "3x14", "test_hops": "4,6",
         "train_per_cell": 80, "valid_per_cell": 10, "test_per_cell": 20, "seed": 5}


def make(tmp_path: Path, name: str = "d", **over) -> Path:
    cfg = build_config(induction.InductionConfig, induction.PRESETS, over.pop("preset", None), {**SMALL, **over})
    return induction.generate(cfg, tmp_path / name, progress=False)


def find1(v: list, i: int) -> int:
    """Literal definition, 1-indexed (v[0] unused): max({0} | {j <= i : v_{j-1} = v_i})."""
    return max([0] + [j for j in range(2, i + 1) if v[j - 1] == v[i]])


def find_chain(v: list, p: int) -> list[int]:
    """[find_0(v, n), ..., find_p(v, n)]; stops at 0."""
    chain = [len(v) - 1]
    for _ in range(p):
        chain.append(find1(v, chain[-1]))
        if chain[-1] == 0:
            break
    return chain


def check_rows(ds) -> dict[str, list[dict]]:
    tokens = ds.vocab.tokens
    letters = [t for t in tokens if len(t) == 1 and t.isalpha()]
    assert letters == [chr(ord("a") + i) for i in range(ds.config["alphabet"])]
    out = {}
    for split in ds.splits:
        rows = ds.table(split).to_pylist()
        for r in rows:
            p, n = r["depth"], r["width"]
            assert r["prompt"] == f"{p}|" + "".join(tokens[i] for i in r["input_ids"][-n:])
            assert "".join(tokens[i] for i in r["input_ids"]) == r["prompt"]
            v = [None] + [tokens[i] for i in r["input_ids"][-n:]]
            chain = find_chain(v, p)
            assert len(chain) == p + 1 and chain[-1] != 0
            assert r["answer"] == v[chain[-1]] and [tokens[i] for i in r["target_ids"]] == [r["answer"]]
            assert r["chain_positions"] == chain  # every intermediate hop
            assert r["split"] == split and r["id"].startswith(f"induction/{split}/")
        out[split] = rows
    return out


def test_every_answer_is_find_p(tmp_path):
    ds = load(make(tmp_path))
    rows = check_rows(ds)
    cells = {s: {(r["depth"], r["width"]) for r in rs} for s, rs in rows.items()}
    train_cells = {(p, n) for p in (1, 2, 3) for n in (10, 14)} - {(3, 14)}
    assert cells["train"] == cells["valid"] == cells["test_id"] == train_cells
    assert cells["test_systematic"] == {(3, 14)}
    assert cells["test_depth"] == {(4, 10), (4, 14), (6, 10), (6, 14)}
    train_q = [tuple(r["input_ids"]) for r in rows["train"]]
    assert len(train_q) == len(set(train_q)) == 5 * 80
    for split in ("valid", "test_id", "test_systematic", "test_depth"):
        q = {tuple(r["input_ids"]) for r in rows[split]}
        assert len(q) == len(rows[split]) and not q & set(train_q), split
    assert audit(ds, validity=False) == []  # shallow p: letter shortcuts are natural here


def brute_support(a: int, p: int, n: int) -> set[tuple]:
    """All sequences whose p-hop chain visits p+1 distinct non-zero positions (exhaustive)."""
    out = set()
    for seq in itertools.product(range(a), repeat=n):
        chain = find_chain([None, *seq], p)
        if len(chain) == p + 1 and chain[-1] != 0 and len(set(chain)) == p + 1:
            out.add(seq)
    return out


@pytest.mark.parametrize("a,p,n", [(2, 1, 5), (3, 2, 6), (2, 3, 7), (4, 2, 5), (3, 4, 6)])
def test_support_formula_and_sampler_support_match_brute_force(a, p, n):
    support = brute_support(a, p, n)
    assert induction.support_size(a, p, n) == len(support)
    s = induction.Sampler(induction.InductionConfig(alphabet=a))
    got = s.draw(np.random.default_rng(0), (p, n), 40_000)
    drawn = {tuple(r) for r in got["key"].tolist()}
    assert drawn == support  # never outside the support, and reaches all of it
    for seq, chain in zip(got["key"][:500].tolist(), got["chain"][:500].tolist()):
        assert find_chain([None, *seq], p) == chain


def test_chain_positions_follow_the_conditioned_law():
    """P(i_1, i_2) ∝ ((a-1)/a)^(n - i_2) (not uniform subsets, the old leak): 10 position pairs."""
    s = induction.Sampler(induction.InductionConfig(alphabet=4))
    got = s.draw(np.random.default_rng(1), (2, 7), 60_000)
    pairs, counts = np.unique(got["chain"][:, 1:], axis=0, return_counts=True)
    assert len(pairs) == 10  # C(5, 2) pairs 7 > i_1 > i_2 >= 2
    w = 0.75 ** (7 - pairs[:, 1])
    expected = 60_000 * w / w.sum()
    assert np.all(np.abs(counts - expected) < 5 * np.sqrt(expected))
    assert counts.max() > 2 * counts.min()  # far from uniform: the law is not the old sampler's


def test_same_seed_identical_bytes_and_seeds_differ(tmp_path):
    over = {"train_lengths": "24,32", "held_out": "3x32"}
    a, b = make(tmp_path, "a", seed=42, **over), make(tmp_path, "b", seed=42, **over)
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert files and all((a / f).read_bytes() == (b / f).read_bytes() for f in files)
    c = make(tmp_path, "c", seed=43, **over)
    qa = {tuple(x) for x in load(a).table("train")["input_ids"].to_pylist()}
    qc = {tuple(x) for x in load(c).table("train")["input_ids"].to_pylist()}
    assert len(qa & qc) <= 2


def test_presets_validate_and_small_preset_has_all_families(tmp_path):
    for name in induction.PRESETS:
        build_config(induction.InductionConfig, induction.PRESETS, name, {})
    for p in (16, 32):  # the paper trains and tests one model per p at length 256
        cfg = build_config(induction.InductionConfig, induction.PRESETS, f"saunshi-phop-{p}", {})
        assert (cfg.alphabet, cfg.train_hops, cfg.train_lengths) == (4, (p,), (256,))
        assert not cfg.held_out and not cfg.test_hops and not cfg.interp_hops
    ds = load(induction.generate(build_config(induction.InductionConfig, induction.PRESETS, "phop-small", {}),
                                 tmp_path / "s", progress=False))
    assert ds.splits == ["train", "valid", "test_id", "test_systematic", "test_interp", "test_depth"]
    assert ds.manifest["splits"]["test_interp"]["depths"] == {"10": 4000}
    assert audit(ds) == []  # every guarantee, the baseline floors included


def test_long_sequences_sampled_at_preset_scale_are_correct():
    s = induction.Sampler(induction.InductionConfig(alphabet=4))
    for p, n in ((16, 256), (32, 128), (64, 128)):
        got = s.draw(np.random.default_rng(p), (p, n), 300)
        for seq, chain in zip(got["key"].tolist(), got["chain"].tolist()):
            assert find_chain([None, *seq], p) == chain


@pytest.mark.parametrize("over,words", [
    ({"held_out": "5x14"}, "option 'held-out': cell 5x14: depth 5 is not a training depth"),
    ({"held_out": "2x12"}, "option 'held-out': cell 2x12: width 12 is not a training width"),
    ({"test_hops": "3,5"}, "option 'test-hops': must all be above the largest training depth 3"),
    ({"test_hops": "9"}, "option 'test-hops': cell 9x10: a 9-hop chain needs length >= 11"),
    ({"train_hops": "1-9", "held_out": "", "test_hops": "10"}, "option 'train-hops': cell 9x10: a 9-hop chain needs length >= 11"),
    ({"alphabet": 1}, "option 'alphabet': expected 2..26"),
    ({"alphabet": 27}, "option 'alphabet': expected 2..26"),
    ({"alphabet": 2, "train_lengths": "6,7", "held_out": "", "test_hops": "4"},
     "option 'train-per-cell': cell 1x6 has only 30 distinct rows"),
    ({"test_per_cell": -2}, "option 'test-per-cell': expected a non-negative count"),
    ({"train_hops": "0-2"}, "option 'train-hops': hop counts must be >= 1"),
    ({"interp_hops": "2"}, "option 'interp-hops': depth 2 is a training depth"),
    ({"interp_hops": "4"}, "option 'interp-hops': depth 4 is not strictly between"),
    ({"train_hops": "1,3", "held_out": "", "interp_hops": "2", "test_hops": "13"},
     "option 'test-hops': cell 13x10: a 13-hop chain needs length >= 15"),
])
def test_bad_configs_are_rejected_with_a_clear_message(tmp_path, over, words):
    with pytest.raises(ConfigError) as e:
        make(tmp_path, **over)
    assert words in str(e.value)
    assert not (tmp_path / "d").exists()


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(a=st.integers(2, 6), hops=st.sets(st.integers(1, 4), min_size=2, max_size=3),
       lengths=st.sets(st.integers(10, 20), min_size=2, max_size=2), seed=st.integers(0, 2**31))
def test_random_small_configs(tmp_path_factory, a, hops, lengths, seed):
    cfg = build_config(induction.InductionConfig, induction.PRESETS, None, {
        "alphabet": a, "train_hops": sorted(hops), "train_lengths": sorted(lengths),
        "held_out": f"{max(hops)}x{max(lengths)}", "test_hops": str(max(hops) + 1), "train_per_cell": 30,
        "valid_per_cell": 5, "test_per_cell": 5, "seed": seed})
    ds = load(induction.generate(cfg, tmp_path_factory.mktemp("h") / "d", progress=False))
    rows = check_rows(ds)
    assert len(rows["train"]) == 30 * (len(hops) * 2 - 1)
    assert audit(ds, validity=False) == []


def test_audit_catches_a_wrong_answer_and_chain(tmp_path):
    out = make(tmp_path)
    shard = out / load(out).manifest["splits"]["test_systematic"]["shards"][0]
    t = pq.read_table(shard)
    answers = t["answer"].to_pylist()
    answers[0] = "a" if answers[0] != "a" else "b"
    chains = t["chain_positions"].to_pylist()
    chains[1][1] -= 1
    t = t.set_column(t.schema.get_field_index("answer"), "answer", pa.array(answers))
    t = t.set_column(t.schema.get_field_index("chain_positions"), t.schema.field("chain_positions"),
                     pa.array(chains, pa.list_(pa.int32())))
    pq.write_table(t, shard)
    problems = audit(load(out))
    assert any("answer != v[find_p(v, n)]" in p for p in problems)
    assert any("chain_positions != positions visited" in p for p in problems)


def test_cli_generate_and_audit(tmp_path):
    runner = CliRunner()
    out = tmp_path / "cli"
    r = runner.invoke(main, ["generate", "induction", "--preset", "phop-small", "--train-per-cell", "100",
                             "--test-hops", "14,16", "--interp-hops", "9,10", "--out", str(out), "--no-progress"])
    assert r.exit_code == 0, r.output
    assert load(out).manifest["splits"]["test_depth"]["depths"] == {"14": 4000, "16": 4000}
    assert load(out).manifest["splits"]["test_interp"]["depths"] == {"9": 4000, "10": 4000}
    r = runner.invoke(main, ["audit", str(out), "--json"])
    checks = {c["check"]: c["violations"] for c in json.loads(r.output)["checks"]}
    assert "validity" in checks and all(not v for v in checks.values()), checks  # baseline floors too
    r = runner.invoke(main, ["generate", "induction", "--alphabet", "30", "--out", str(tmp_path / "bad")])
    assert r.exit_code == 2 and "option 'alphabet'" in r.output
