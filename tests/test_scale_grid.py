"""Scale (#14) for the grid tasks: worker processes write the in-process bytes for any --workers."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from fixtures.tasks import addition, induction
from fixtures.toy import dataset_files, shard_rows

from benchgen.cli import main
from benchgen.config import build_config
from benchgen.dataset import load
from benchgen.errors import ConfigError
from benchgen.pipeline.audit import audit
from benchgen.tasks.grid import cells as grid
from benchgen.tasks.grid import stream

# (2, 1) holds exactly the 100 distinct rows asked (80 + 10 + 10): later sampling rounds run in the main process
ADDITION = ["--train-operands", "2,3", "--train-widths", "1,2", "--held-out", "3x2", "--test-operands", "4",
            "--train-per-cell", "80", "--valid-per-cell", "10", "--test-per-cell", "10"]
INDUCTION = ["--alphabet", "3", "--train-hops", "2,3", "--train-lengths", "8,10", "--held-out", "3x8",
             "--test-hops", "4", "--train-per-cell", "60", "--valid-per-cell", "10", "--test-per-cell", "10"]


files = dataset_files


@pytest.fixture
def small_units(monkeypatch) -> list[int]:
    """Train batches and sampling rounds of 16 rows in shards of 50 (batches straddle shards), worker processes even for
    tiny datasets; returns a list that counts the process pools started."""
    shard_rows(monkeypatch, 50)
    monkeypatch.setattr(stream, "MIN_PARALLEL_ROWS", 0)
    monkeypatch.setattr(grid, "BATCH_ROWS", 16)
    monkeypatch.setattr(stream, "BATCH_ROWS", 16)
    pools: list[int] = []
    spawn = stream.spawn_pool

    def counted(workers: int):
        pools.append(workers)
        return spawn(workers)

    monkeypatch.setattr(stream, "spawn_pool", counted)
    return pools


@pytest.mark.parametrize("task,options", [("addition", ADDITION), ("induction", INDUCTION)])
def test_any_number_of_workers_writes_identical_bytes(tmp_path, small_units, task, options):
    runner = CliRunner()
    runs = (("w1", ["--workers", "1"]), ("w2", ["--workers", "2"]), ("w3", ["--workers", "3"]),
            ("s7", ["--workers", "2", "--seed", "7"]))
    for name, extra in runs:
        r = runner.invoke(main, ["generate", task, "--out", str(tmp_path / name), "--no-progress", *options, *extra])
        assert r.exit_code == 0, r.output
    assert small_units == [2, 3, 2]  # every run with workers > 1 took the pool path
    w1 = files(tmp_path / "w1")
    assert files(tmp_path / "w2") == w1
    assert files(tmp_path / "w3") == w1
    train = json.loads(w1["manifest.json"])["splits"]["train"]
    assert train["rows"] % 50 and len(train["shards"]) == -(-train["rows"] // 50) >= 4  # the last shard is short
    assert not any(".spill" in f or f.endswith(".part") for f in w1)  # spilled rounds are gone
    other = files(tmp_path / "s7")
    assert all(other[s] != w1[s] for s in train["shards"])
    assert audit(load(tmp_path / "w2"), validity=False) == []


def test_workers_default_to_in_process_below_the_threshold(tmp_path, monkeypatch):
    """Small datasets never start processes, whatever --workers says."""
    monkeypatch.setattr(stream, "spawn_pool", lambda workers: pytest.fail("started a pool"))
    cfg = build_config(addition.AdditionConfig, addition.PRESETS, "addition-small", {})
    addition.generate(cfg, tmp_path / "a", progress=False, workers=4)


@pytest.mark.parametrize("task", ["addition", "induction"])
def test_workers_zero_is_a_one_line_error(tmp_path, task):
    options = ADDITION if task == "addition" else INDUCTION
    r = CliRunner().invoke(main, ["generate", task, "--out", str(tmp_path / "x"), *options, "--workers", "0"])
    assert r.exit_code == 2
    assert "--workers: expected an integer >= 1" in r.output
    assert "Traceback" not in r.output and len(r.output.strip().splitlines()) == 1
    assert not (tmp_path / "x").exists()


def test_generate_rejects_workers_below_one(tmp_path):
    cfg = build_config(induction.InductionConfig, induction.PRESETS, "phop-small", {})
    with pytest.raises(ConfigError, match="workers"):
        induction.generate(cfg, tmp_path / "x", progress=False, workers=0)
    assert not (tmp_path / "x").exists()
