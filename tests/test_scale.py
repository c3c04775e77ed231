"""Scale (#14): worker processes write identical bytes; audit --sample; the streaming helpers."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pytest
from click.testing import CliRunner
from fixtures.tasks import khop
from fixtures.toy import dataset_files, shard_rows

from benchgen.cli import main
from benchgen.dataset import load
from benchgen.pipeline.audit import audit
from benchgen.tasks import baselines as common_baselines
from benchgen.tasks.khop import audit as khop_audit
from benchgen.tasks.khop import generator as khop_generator

SMALL = ["--num-entities", "40", "--num-relations", "6", "--out-degree", "4", "--ood-fraction", "0.2",
         "--train-hops", "2-3", "--test-hops", "4,5", "--train-per-hop", "300", "--valid-per-hop", "30",
         "--test-per-hop", "40", "--systematic-per-hop", "50", "--no-progress"]


files = dataset_files


@pytest.fixture
def small_shards(monkeypatch):
    """Shards of 300 rows, and worker processes even for tiny datasets."""
    shard_rows(monkeypatch, 300)
    monkeypatch.setattr(khop_generator, "MIN_PARALLEL_ROWS", 0)


def test_workers_1_and_2_write_identical_bytes(tmp_path, small_shards):
    runner = CliRunner()
    for name, extra in (("w1", ["--workers", "1"]), ("w2", ["--workers", "2"]), ("s8", ["--workers", "2", "--seed", "8"])):
        r = runner.invoke(main, ["generate", "khop", "--out", str(tmp_path / name), *SMALL, *extra])
        assert r.exit_code == 0, r.output
    w1, w2 = files(tmp_path / "w1"), files(tmp_path / "w2")
    assert w1 == w2
    man = json.loads(w1["manifest.json"])
    assert len(man["splits"]["train"]["shards"]) == 3  # 760 train rows in shards of 300: the pool path
    assert not any(".spill" in f or f.endswith(".part") for f in w1)  # spilled pieces are gone
    other = files(tmp_path / "s8")
    assert all(other[s] != w1[s] for s in man["splits"]["train"]["shards"])
    assert audit(load(tmp_path / "w2"), validity=False) == []


def test_sharded_train_is_one_global_shuffle(tmp_path, small_shards):
    """Shards hold the rows of the in-memory split_table shuffle, in the same order, ids by position."""
    from benchgen.config import build_config

    cfg = build_config(khop.KhopConfig, khop.PRESETS, None, {"num_entities": 40, "num_relations": 6,
                       "out_degree": 4, "train_hops": "2-3", "test_hops": "4", "train_per_hop": 300, "valid_per_hop": 20,
                       "test_per_hop": 20, "seed": 3})
    ds = load(khop.generate(cfg, tmp_path / "d", progress=False, workers=1))
    g, vocab = khop.build_graph(cfg), khop.make_vocab(cfg)
    sid = khop.Subgraph.of(g, ood=False)
    h, r, t, _ = g.triples()
    parts = [np.stack([h, r, t], axis=1)]
    for k in cfg.train_hops:
        parts.append(khop.sample_chains(sid, k, 300 + cfg.valid_per_hop + cfg.test_per_hop,
                                        khop.seeding.rng(cfg.seed, khop.NAME, "id", k))[:300])
    whole = khop.split_table(parts, g, vocab, cfg, "train", khop.seeding.rng(cfg.seed, khop.NAME, "train", "shuffle"))
    assert ds.table("train").equals(whole)


def test_workers_rejects_zero(tmp_path):
    r = CliRunner().invoke(main, ["generate", "khop", "--out", str(tmp_path / "x"), *SMALL, "--workers", "0"])
    assert r.exit_code == 2 and "--workers: expected an integer >= 1" in r.output


def test_audit_sample_says_so_and_still_catches_leaks(tmp_path):
    out = tmp_path / "d"
    runner = CliRunner()
    r = runner.invoke(main, ["generate", "khop", "--preset", "khop-small", "--out", str(out), "--no-progress"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(main, ["audit", str(out), "--sample", "50"])
    assert r.exit_code == 0, r.output
    assert "seeded sample of at most 50 rows per split (train 50 of 9,768" in r.output
    js = json.loads(runner.invoke(main, ["audit", str(out), "--sample", "50", "--json"]).output)
    assert js["sample"] == 50 and js["passed"] and "sampled" in js["checks"][-1]
    # a test query copied into train is found although the row walk is sampled (keys cover every row)
    ds = load(out)
    test_row = ds.table("test_id").slice(0, 1)
    shard = out / ds.manifest["splits"]["train"]["shards"][0]
    import pyarrow.parquet as pq

    train = pq.read_table(shard)
    leaked = pa.concat_tables([train, test_row.set_column(1, test_row.schema.field("split"), pa.array(["train"]))])
    pq.write_table(leaked, shard)
    problems = khop_audit.audit_khop_plain(load(out), sample=10)
    assert any("'test_id': 1 queries also occur in train" in p for p in problems)
    r = runner.invoke(main, ["audit", str(out), "--sample", "0"])
    assert r.exit_code != 0 and "expected a row count >= 1" in r.output


def test_query_keys_collide_only_on_equal_queries():
    lists = [[5, 1, 2], [5, 2, 1], [5, 1, 2], [5], [], [5, 1, 2, 0], [0, 5, 1, 2]]
    keys = khop_audit.query_keys(pa.array(lists, pa.list_(pa.int32())))
    assert keys[0] == keys[2] and len(set(keys.tolist())) == 6
    sliced = khop_audit.query_keys(pa.array(lists, pa.list_(pa.int32())).slice(2))
    assert sliced.tolist() == keys[2:].tolist()


def test_sorted_mode_matches_the_count_table():
    rng = np.random.default_rng(0)
    for _ in range(50):
        n = int(rng.integers(1, 400))
        keys = rng.integers(0, 30, n) * 10**12  # wide keys: the sort path
        values = rng.integers(0, 5, n)
        uk, modes = common_baselines.mode_by_key(keys, values)
        ref_keys, ref_modes = common_baselines.mode_by_key(keys // 10**12, values)  # dense path
        assert (uk // 10**12).tolist() == ref_keys.tolist() and modes.tolist() == ref_modes.tolist()


def test_streamed_id_join_matches_the_hashed_join(tmp_path, monkeypatch):
    """Few predicted ids stream the dataset's ids past them; many hash every id: same rows either way."""
    from benchgen.evaluators.scoring import score as scoring

    r = CliRunner().invoke(main, ["generate", "khop", "--out", str(tmp_path / "d"), *SMALL])
    assert r.exit_code == 0, r.output
    ds = load(tmp_path / "d")
    ids = pa.concat_arrays([ds.table(s, columns=["id"]).column("id").combine_chunks() for s in ds.splits])
    probe = pa.array([ids[5].as_py(), "khop/train/nope", ids[len(ids) - 1].as_py(), ids[5].as_py(), ids[900].as_py()])
    streamed, sizes = scoring._dataset_rows(ds, probe)
    monkeypatch.setattr(scoring, "STREAM_IDS_BELOW", 0)
    hashed, sizes2 = scoring._dataset_rows(ds, probe)
    assert streamed.tolist() == hashed.tolist() == [5, -1, len(ids) - 1, 5, 900]
    assert sizes.tolist() == sizes2.tolist() == [ds.manifest["splits"][s]["rows"] for s in ds.splits]


def test_size_limit_counts_khop_splits_as_drawn():
    """The row estimate follows the splits (test hops draw test_per_hop only): a 10M config passes, 21M is refused."""
    from benchgen.config import build_config
    from benchgen.errors import ConfigError

    ten_m = {"train_hops": tuple(range(4, 41)), "test_hops": (41, 42, 43, 44), "train_per_hop": 270_000}
    cfg = build_config(khop.KhopConfig, khop.PRESETS, "ltg-depth", ten_m)
    written = 2_000 + 37 * (270_000 + 750 + 750) + 4 * 750  # atomics, train + valid + test_id, test_depth
    assert cfg.estimated_rows() == written
    with pytest.raises(ConfigError, match="about 20,7"):
        build_config(khop.KhopConfig, khop.PRESETS, "ltg-depth", {**ten_m, "train_per_hop": 560_000})
    grokked = build_config(khop.KhopConfig, khop.PRESETS, "grokked-composition", {})
    assert 324_609 <= grokked.estimated_rows() <= 1.05 * 324_609  # writes 324,609 (systematic is "at most")


def test_default_workers_follow_the_affinity_mask(monkeypatch):
    """A job pinned to 3 cores (taskset, cpusets, Slurm) starts 3 workers, whatever the machine has."""
    import os

    from benchgen.workers import resolve_workers

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 5, 9}, raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 64)
    assert resolve_workers(None) == 3 and resolve_workers(1) == 1
    with pytest.raises(Exception, match="expected at least 1"):
        resolve_workers(0)
