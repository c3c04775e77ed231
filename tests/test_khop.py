"""khop generator: every split guarantee recomputed from the written files, independently."""

from __future__ import annotations

import json
from pathlib import Path

import networkx as nx
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from fixtures.tasks import khop
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from benchgen.cli import main
from benchgen.config import build_config, format_int_set, parse_int_set
from benchgen.dataset import load
from benchgen.errors import BenchgenError, ConfigError
from benchgen.pipeline.audit import audit
from benchgen.tasks.khop import graph as khop_graph

SMALL = {"num_entities": 40, "num_relations": 6, "out_degree": 4, "ood_fraction": 0.2,
         "train_hops": "2-3", "test_hops": "4,5", "train_per_hop": 300, "valid_per_hop": 30,
         "test_per_hop": 40, "systematic_per_hop": 50, "seed": 7}


def make(tmp_path: Path, name: str = "d", **over) -> Path:
    cfg = build_config(khop.KhopConfig, khop.PRESETS, over.pop("preset", None), {**SMALL, **over})
    return khop.generate(cfg, tmp_path / name, progress=False)


def rows(ds, split):
    return ds.table(split).to_pylist()


def nx_answer(g: nx.MultiDiGraph, head: int, rels: list[int]) -> tuple[int, list[int], int]:
    """Walk a query through the graph with networkx adjacency; returns (tail, bridges, n_ood)."""
    cur, path, ood = head, [], 0
    for r in rels:
        (nxt, data), = [(v, d) for _, v, k, d in g.out_edges(cur, keys=True, data=True) if k == r]
        cur = nxt
        path.append(cur)
        ood += data["is_ood"]
    return cur, path[:-1], ood


def kg_graph(path: Path) -> nx.MultiDiGraph:
    kg = pq.read_table(path / "kg.parquet").to_pylist()
    g = nx.MultiDiGraph()
    for t in kg:
        g.add_edge(t["head"], t["tail"], key=t["relation"], is_ood=t["is_ood"])
    return g


@pytest.mark.parametrize("structure,degree", [("random", 4), ("permutation", 6)])
def test_every_answer_is_the_graph_traversal(tmp_path, structure, degree):
    out = make(tmp_path, structure=structure, out_degree=degree)
    ds = load(out)
    g = kg_graph(out)
    E = ds.config["num_entities"]
    tokens = ds.vocab.tokens
    train_queries = set()
    for split in ds.splits:
        for r in rows(ds, split):
            toks = [tokens[i] for i in r["input_ids"]]
            head = int(toks[0][3:-1])
            rels = [int(t[3:-1]) for t in toks[1:]]
            tail, bridges, n_ood = nx_answer(g, head, rels)
            assert r["answer"] == f"<e_{tail}>" and r["prompt"] == "".join(toks)
            assert r["bridges"] == bridges and r["n_ood_hops"] == n_ood
            assert r["depth"] == len(rels) and 0 <= tail < E
            if split == "train":
                train_queries.add(tuple(r["input_ids"]))
                if r["depth"] > 1:
                    assert n_ood == 0 and r["depth"] in (2, 3)
            elif split == "test_systematic":
                assert n_ood == r["depth"] and r["depth"] in (2, 3)
            elif split == "test_depth":
                assert r["depth"] in (4, 5) and n_ood == 0
            else:
                assert n_ood == 0 and r["depth"] in (2, 3)
    for split in ("valid", "test_id", "test_systematic", "test_depth"):
        qs = {tuple(r["input_ids"]) for r in rows(ds, split)}
        assert not qs & train_queries, split
    # the train split holds every atomic triple exactly once as a 1-hop query
    atom = [r for r in rows(ds, "train") if r["depth"] == 1]
    assert len(atom) == g.number_of_edges() == E * degree
    assert audit(ds, validity=False) == []  # guarantees only: toy random graphs leak (test_validity)


def test_split_sizes_and_systematic_population(tmp_path):
    ds = load(make(tmp_path))
    m = ds.manifest["splits"]
    assert m["train"]["depths"] == {"1": 160, "2": 300, "3": 300}
    assert m["valid"]["depths"] == {"2": 30, "3": 30}
    assert m["test_id"]["depths"] == {"2": 40, "3": 40}
    assert m["test_depth"]["depths"] == {"4": 40, "5": 40}
    # systematic = min(cap, number of all-OOD chains), counted independently with networkx
    g = kg_graph(ds.path)
    ood = nx.MultiDiGraph([(u, v, k) for u, v, k, d in g.edges(keys=True, data=True) if d["is_ood"]])
    n2 = sum(ood.out_degree(v) for _, v in ood.edges())
    assert m["test_systematic"]["depths"]["2"] == min(50, n2)


def test_inferred_ratio_counts(tmp_path):
    ds = load(make(tmp_path, train_per_hop=None, inferred_ratio=1.5, train_hops="2"))
    n_id = 160 - 32
    assert ds.manifest["splits"]["train"]["depths"]["2"] == round(1.5 * n_id)


def test_same_seed_identical_bytes_and_seeds_differ(tmp_path):
    a, b = make(tmp_path, "a", seed=42), make(tmp_path, "b", seed=42)
    for f in sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file()):
        assert (a / f).read_bytes() == (b / f).read_bytes(), f
    c = make(tmp_path, "c", seed=43)
    qa = {tuple(x) for x in load(a).table("test_id")["input_ids"].to_pylist()}
    qc = {tuple(x) for x in load(c).table("test_id")["input_ids"].to_pylist()}
    assert len(qa & qc) <= 2  # 80 of ~900 possible 2/3-hop queries each: overlap by chance only


def test_seeds_42_43_share_almost_no_composed_queries(tmp_path):
    over = {"num_entities": 500, "num_relations": 20, "out_degree": 10, "train_per_hop": 2000,
            "train_hops": "2", "test_hops": "3"}
    qa = load(make(tmp_path, "a", seed=42, **over)).table("train")
    qb = load(make(tmp_path, "b", seed=43, **over)).table("train")

    def composed(t):
        return {tuple(x) for x, d in zip(t["input_ids"].to_pylist(), t["depth"].to_pylist()) if d > 1}

    assert len(composed(qa) & composed(qb)) < 0.05 * 2000


def test_sampling_path_is_uniform_valid_and_unique(tmp_path, monkeypatch):
    monkeypatch.setattr(khop_graph, "ENUMERATE_LIMIT", 0)  # force the DP-weighted sampler
    ds = load(make(tmp_path))
    assert audit(ds) == []
    # uniformity: on a permutation graph every chain is equally likely; heads should be ~uniform
    cfg = build_config(khop.KhopConfig, khop.PRESETS, None, {**SMALL, "structure": "permutation", "out_degree": 6,
                                                             "ood_fraction": 0.0})
    g = khop.build_graph(cfg)
    sg = khop.Subgraph.of(g, ood=False)
    chains = khop.sample_chains(sg, 3, 5000, np.random.default_rng(0))
    assert len(khop.unique_rows(chains)) == 5000
    counts = np.bincount(chains[:, 0], minlength=40)
    assert counts.min() > 125 * 0.6 and counts.max() < 125 * 1.4


def test_load_dataset_with_hf_datasets(tmp_path):
    datasets = pytest.importorskip("datasets")
    out = make(tmp_path)
    d = datasets.load_dataset(str(out), cache_dir=str(tmp_path / "cache"))
    # the card maps the `valid` files to the Hub's `validation` split name (benchgen.pipeline.card)
    assert set(d.keys()) == {"train", "validation", "test_id", "test_systematic", "test_depth"}
    assert set(d["validation"]["split"]) == {"valid"}
    assert d["train"].num_rows == 760
    assert d["test_depth"].features["depth"].dtype == "int32"
    assert d["test_depth"].features["input_ids"].feature.dtype == "int32"
    card = (out / "README.md").read_text()
    assert "path: data/test_systematic-*.parquet" in card


def test_shard_naming_and_manifest(tmp_path, monkeypatch):
    from fixtures.toy import shard_rows

    cfg = build_config(khop.KhopConfig, khop.PRESETS, None, SMALL)
    shard_rows(monkeypatch, 300)
    out = khop.generate(cfg, tmp_path / "s", progress=False)
    man = json.loads((out / "manifest.json").read_text())
    assert man["splits"]["train"]["shards"] == [f"data/train-0000{i}-of-00003.parquet" for i in range(3)]
    assert sum(pq.ParquetFile(out / s).metadata.num_rows for s in man["splits"]["train"]["shards"]) == 760
    assert audit(load(out), validity=False) == []  # guarantees only (validity: test_validity.py)


def test_audit_catches_corruption(tmp_path):
    out = make(tmp_path)
    shard = out / load(out).manifest["splits"]["test_id"]["shards"][0]
    t = pq.read_table(shard)
    answers = t["target_ids"].to_pylist()
    answers[0] = [answers[0][0] + 1 if answers[0][0] + 1 < 4 + 40 else 4]
    t = t.set_column(t.schema.get_field_index("target_ids"), t.schema.field("target_ids"),
                     pa.array(answers, pa.list_(pa.int32())))
    pq.write_table(t, shard)
    problems = audit(load(out))
    assert any("answer differs" in p for p in problems)
    assert any("sha256" in p for p in problems)
    r = CliRunner().invoke(main, ["audit", str(out)])
    assert r.exit_code == 1 and "VIOLATION" in r.output


def test_audit_catches_train_leak(tmp_path):
    out = make(tmp_path)
    ds = load(out)
    shard = out / ds.manifest["splits"]["train"]["shards"][0]
    train = pq.read_table(shard)
    leak = ds.table("test_id").slice(0, 1)
    leak = leak.set_column(0, "id", pa.array(["khop/train/999999999"])).set_column(
        1, "split", pa.array(["train"]))
    pq.write_table(pa.concat_tables([train, leak.cast(train.schema)]), shard)
    assert any("also occur in train" in p for p in audit(load(out)))


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(structure=st.sampled_from(["random", "permutation"]), E=st.integers(5, 30), R=st.integers(2, 6),
       frac=st.sampled_from([0.0, 0.1, 0.3]), hops=st.sampled_from(["2", "2-3", "3"]), seed=st.integers(0, 2**31))
def test_property_random_configs(tmp_path_factory, structure, E, R, frac, hops, seed):
    deg = R if structure == "permutation" else max(1, R // 2)
    over = {"structure": structure, "num_entities": E, "num_relations": R, "out_degree": deg,
            "ood_fraction": frac, "train_hops": hops, "test_hops": "5", "train_per_hop": 10,
            "valid_per_hop": 3, "test_per_hop": 4, "systematic_per_hop": 5, "seed": seed}
    tmp = tmp_path_factory.mktemp("p")
    try:
        cfg = build_config(khop.KhopConfig, khop.PRESETS, None, over)
        out = khop.generate(cfg, tmp / "d", progress=False)
    except ConfigError as e:  # too few chains in a tiny or sparse graph: must be the population check
        assert "unique" in str(e) and "graph has only" in str(e)
        return
    ds = load(out)
    assert audit(ds, validity=False) == []  # guarantees only: tiny random configs can leak
    assert ds.manifest["splits"]["test_depth"]["depths"] == {"5": 4}


def test_int_sets():
    assert parse_int_set("2-5,8") == (2, 3, 4, 5, 8)
    assert parse_int_set("2,4,8") == (2, 4, 8)
    assert format_int_set((2, 3, 4, 5, 8)) == "2-5,8"
    with pytest.raises(ConfigError, match="train-hops"):
        parse_int_set("2-x", "train_hops")
    with pytest.raises(ConfigError, match="empty"):
        parse_int_set("5-2", "train_hops")


@pytest.mark.parametrize("args,needle", [
    (["--train-hops", "2-4", "--test-hops", "3-5"], "option 'test-hops'"),
    (["--out-degree", "30"], "option 'out-degree'"),
    (["--test-per-hop", "-1"], "option 'test-per-hop'"),
    (["--train-per-hop", "99999999"], "option 'train-per-hop'"),
    (["--structure", "permutation", "--out-degree", "3"], "option 'out-degree'"),
    (["--ood-fraction", "1.5"], "option 'ood-fraction'"),
    (["--train-hops", "1-2"], "option 'train-hops'"),
    (["--train-hops", "a-b"], "option 'train-hops'"),
    (["--train-hops", "2,4", "--test-hops", "6", "--interp-hops", "4"], "option 'interp-hops'"),
    (["--train-hops", "2,4", "--test-hops", "6", "--interp-hops", "5"], "option 'interp-hops'"),
])
def test_cli_bad_config(tmp_path, args, needle):
    r = CliRunner().invoke(main, ["generate", "khop", "--out", str(tmp_path / "x"), "--no-progress", *args])
    assert r.exit_code == 2, r.output
    assert needle in r.output and r.output.count("\n") == 1
    assert not (tmp_path / "x").exists()
    assert not list(tmp_path.glob(".x.tmp-*"))


def test_cli_generate_info_overwrite(tmp_path):
    runner = CliRunner()
    out = tmp_path / "k"
    r = runner.invoke(main, ["generate", "khop", "--preset", "khop-small", "--out", str(out), "--no-progress"])
    assert r.exit_code == 0, r.output
    assert "test_systematic" in r.output
    before = (out / "manifest.json").read_bytes()
    r = runner.invoke(main, ["generate", "khop", "--out", str(out), "--no-progress"])
    assert r.exit_code == 2 and "--overwrite" in r.output
    assert (out / "manifest.json").read_bytes() == before  # existing data intact
    r = runner.invoke(main, ["info", str(out)])
    assert r.exit_code == 0 and "test_depth" in r.output and "5: 300" in r.output
    r = runner.invoke(main, ["audit", str(out)])
    assert r.exit_code == 0 and "audit passed" in r.output
    r = runner.invoke(main, ["generate", "khop", "--seed", "3", "--out", str(out), "--overwrite", "--no-progress"])
    assert r.exit_code == 0 and load(out).manifest["seed"] == 3
    r = runner.invoke(main, ["tasks"])
    assert "grokked-composition" in r.output and "ltg-depth" in r.output


def test_cli_bad_dataset_dirs(tmp_path):
    runner = CliRunner()
    r = runner.invoke(main, ["info", str(tmp_path / "missing")])
    assert r.exit_code == 2 and "does not exist" in r.output
    (tmp_path / "empty").mkdir()
    r = runner.invoke(main, ["audit", str(tmp_path / "empty")])
    assert r.exit_code == 2 and "manifest.json" in r.output
    out = make(tmp_path)
    (out / "manifest.json").write_text("{not json")
    r = runner.invoke(main, ["info", str(out)])
    assert r.exit_code == 2 and "corrupt" in r.output
    out2 = make(tmp_path, "d2")
    (out2 / load(out2).manifest["splits"]["valid"]["shards"][0]).unlink()
    r = runner.invoke(main, ["audit", str(out2)])
    assert r.exit_code == 2 and "missing" in r.output


def test_unknown_preset_and_option():
    with pytest.raises(BenchgenError, match="preset"):
        build_config(khop.KhopConfig, khop.PRESETS, "nope", {})
    with pytest.raises(BenchgenError, match="bogus"):
        build_config(khop.KhopConfig, khop.PRESETS, None, {"bogus": 1})


@pytest.mark.parametrize("preset", list(khop.PRESETS))
def test_every_preset_fits_its_graph(preset):
    """Each preset's requested unique queries exist in the graph it builds (no sampling needed)."""
    cfg = build_config(khop.KhopConfig, khop.PRESETS, preset, {})
    sid, sood = khop.check_populations(cfg, khop.build_graph(cfg))
    if cfg.ood_fraction > 0:
        assert all(sood.n_chains(k) > 0 for k in cfg.train_hops)


def test_presets_are_valid_and_sized_as_the_papers():
    g = build_config(khop.KhopConfig, khop.PRESETS, "grokked-composition", {})
    assert g.train_counts() == {2: 273600}
    ltg = build_config(khop.KhopConfig, khop.PRESETS, "ltg-depth", {})
    assert ltg.train_hops == tuple(range(2, 21)) and ltg.test_hops == tuple(range(21, 41))
    # a preset value can be overridden by its alternative
    g2 = build_config(khop.KhopConfig, khop.PRESETS, "grokked-composition", {"train_per_hop": 10})
    assert g2.inferred_ratio is None and g2.train_counts() == {2: 10}


def test_interp_hops_are_untrained_id_chains_inside_the_trained_range(tmp_path):
    out = make(tmp_path, train_hops="2,4", interp_hops="3", test_hops="5")
    ds = load(out)
    assert ds.splits == ["train", "valid", "test_id", "test_systematic", "test_interp", "test_depth"]
    g = kg_graph(out)
    interp = rows(ds, "test_interp")
    assert len(interp) == 40 and {r["depth"] for r in interp} == {3}
    assert 3 not in {r["depth"] for r in rows(ds, "train")}
    tokens = ds.vocab.tokens
    for r in interp:  # an ID chain whose answer is the networkx walk
        ids = [int(tokens[i][3:-1]) for i in r["input_ids"]]
        tail, bridges, ood = nx_answer(g, ids[0], ids[1:])
        assert (tokens[r["target_ids"][0]], r["bridges"], ood) == (f"<e_{tail}>", bridges, 0)
    assert audit(ds) == []
