"""Trustworthy on disk (issue #10): --overwrite kinds, exclusive moves, rollback, no unpickling,
model-visible columns, one clear line for every bad input, umask modes, safe leaderboard exports.

Every CLI fault asserts: the exit code, exactly one stderr line without "Traceback", precious
files intact, and no hidden ``.NAME.tmp-*`` / ``.NAME.old-*`` leftovers.
"""

from __future__ import annotations

import errno
import json
import os
import pickle
import signal
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from benchgen import atomic
from benchgen.cli import main
from benchgen.dataset import load
from benchgen.errors import BenchgenError

TINY = ["--structure", "permutation", "--num-entities", "12", "--num-relations", "3", "--out-degree", "3",
        "--train-hops", "2", "--test-hops", "3", "--train-per-hop", "40", "--valid-per-hop", "5",
        "--test-per-hop", "5", "--systematic-per-hop", "5", "--no-progress"]
# an addition config that takes a few seconds to write (for kill/race tests)
BIG = ["addition", "--train-operands", "3-6", "--train-widths", "4,5", "--held-out", "6x5", "--test-operands",
       "7,8", "--train-per-cell", "60000", "--no-progress"]


def cli(*args, input=None):
    """Run the CLI in-process; return (exit code, stdout, stderr, exception)."""
    r = CliRunner().invoke(main, [str(a) for a in args], input=input)
    return r.exit_code, r.stdout, r.stderr, r.exception


def assert_one_line(code, err, exc=None, want_code=2, match=None):
    """Exit ``want_code``, a single stderr line, no traceback, no uncaught exception."""
    assert code == want_code, (code, err, exc)
    assert exc is None or isinstance(exc, SystemExit), repr(exc)
    lines = [x for x in err.strip().splitlines() if x.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    if match:
        assert match in lines[0], lines[0]


def hidden(d: Path) -> list[str]:
    """Temp/backup leftovers (.NAME.tmp-*, .NAME.old-*) in a directory."""
    return sorted(p.name for p in d.iterdir() if p.name.startswith(".") and (".tmp-" in p.name or ".old-" in p.name))


def bg(*args, **kw) -> subprocess.CompletedProcess:
    """Run the real ``benchgen`` console entry in a subprocess."""
    return subprocess.run([sys.executable, "-m", "benchgen", *map(str, args)], capture_output=True, text=True,
                          timeout=kw.pop("timeout", 300), **kw)


def tiny_khop(tmp_path_factory, seed: int) -> Path:
    """The TINY khop dataset at ``seed``, generated through the CLI."""
    out = tmp_path_factory.mktemp(f"safety-seed{seed}") / "khop"
    code, _, err, exc = cli("generate", "khop", *TINY, "--seed", str(seed), "--out", out)
    assert code == 0, (err, exc)
    return out


@pytest.fixture(scope="module")
def ds(tmp_path_factory) -> Path:
    return tiny_khop(tmp_path_factory, 1)


@pytest.fixture(scope="module")
def ds_other_seed(tmp_path_factory) -> Path:
    return tiny_khop(tmp_path_factory, 2)


@pytest.fixture(scope="module")
def preds(ds, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("preds") / "p.parquet"
    code, _, err, _ = cli("predict-oracle", ds, "--noise", "0.2", "--out", out)
    assert code == 0, err
    return out


@pytest.fixture(scope="module")
def results_dir(ds, preds, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("res") / "eval"
    code, _, err, _ = cli("evaluate", ds, "--predictions", preds, "--no-plots", "--out", out)
    assert code == 0, err
    return out


def thesis(tmp_path: Path) -> Path:
    d = tmp_path / "thesis"
    d.mkdir()
    (d / "thesis.tex").write_text("precious")
    return d


# --- 1. --overwrite replaces only what benchgen wrote -------------------------------------------
@pytest.mark.parametrize("command", ["generate", "evaluate", "export", "train"])
def test_overwrite_refuses_foreign_directory(command, ds, preds, tmp_path):
    d = thesis(tmp_path)
    args = {"generate": ["generate", "khop", *TINY],
            "evaluate": ["evaluate", ds, "--predictions", preds],
            "export": ["export", "lm-eval", ds],
            "train": ["train", "--data", ds, "--preset", "cpu-khop-looped"]}[command]
    code, _, err, exc = cli(*args, "--out", d, "--overwrite")
    assert_one_line(code, err, exc, match="not a benchgen")
    assert "thesis.tex" in err
    assert (d / "thesis.tex").read_text() == "precious" and sorted(os.listdir(d)) == ["thesis.tex"]
    assert hidden(tmp_path) == []


def test_report_and_leaderboard_never_replace_user_files(results_dir, tmp_path):
    d = thesis(tmp_path)
    (d / "plots").mkdir()
    (d / "plots" / "fig.png").write_text("mine")
    code, _, err, exc = cli("report", results_dir / "results.json", "--out", d)
    assert_one_line(code, err, exc, match="not a benchgen report directory")
    assert (d / "plots" / "fig.png").read_text() == "mine" and not (d / "report.md").exists()
    notes = tmp_path / "notes.md"
    notes.write_text("my notes")
    code, _, err, exc = cli("leaderboard", results_dir, "--out", notes)
    assert_one_line(code, err, exc, match="not a benchgen leaderboard")
    assert notes.read_text() == "my notes"
    board = tmp_path / "board.md"  # a board benchgen wrote is replaced with --overwrite, as every --out
    assert cli("leaderboard", results_dir, "--out", board)[0] == 0
    code, _, err, exc = cli("leaderboard", results_dir, "--out", board)
    assert_one_line(code, err, exc, match="already exists (pass --overwrite to replace it)")
    assert cli("leaderboard", results_dir, "--out", board, "--overwrite")[0] == 0 and hidden(tmp_path) == []
    code, _, err, exc = cli("leaderboard", results_dir, "--out", notes, "--overwrite")  # never a user's file
    assert_one_line(code, err, exc, match="not a benchgen leaderboard")
    assert notes.read_text() == "my notes"


def test_evaluate_out_on_the_dataset_is_refused(ds, preds):
    before = load(ds).fingerprint
    code, _, err, exc = cli("evaluate", ds, "--predictions", preds, "--out", ds, "--overwrite")
    assert_one_line(code, err, exc, match="holds a benchgen dataset, not a benchgen results directory")
    assert load(ds).fingerprint == before and not (ds / "results.json").exists()
    assert cli("audit", ds)[0] == 0


def test_overwrite_same_kind_replaces(tmp_path):
    out = tmp_path / "k"
    assert cli("generate", "khop", *TINY, "--seed", "5", "--out", out)[0] == 0
    code, _, err, exc = cli("generate", "khop", *TINY, "--seed", "6", "--out", out)
    assert_one_line(code, err, exc, match="already exists and holds a benchgen dataset")
    assert cli("generate", "khop", *TINY, "--seed", "6", "--out", out, "--overwrite")[0] == 0
    assert load(out).manifest["seed"] == 6 and hidden(tmp_path) == []
    assert json.loads((out / atomic.MARKER).read_text()) == {"kind": "dataset"}


@pytest.mark.parametrize("where", ["empty", "dot", "home", "root", "parent"])
def test_dangerous_out_refused_outright(where, ds, tmp_path, monkeypatch):
    home = tmp_path / "home"
    work = home / "work"
    work.mkdir(parents=True)
    (work / "keep.txt").write_text("keep")
    (home / "keep.txt").write_text("keep")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(work)
    out = {"empty": "", "dot": ".", "home": "~", "root": "/", "parent": ".."}[where]
    for args in (["generate", "khop", *TINY], ["export", "lm-eval", str(ds)]):
        code, _, err, exc = cli(*args, "--out", out, "--overwrite")
        assert_one_line(code, err, exc)
        assert ("refusing" in err or "empty" in err or "give --out" in err), err
    assert (work / "keep.txt").read_text() == "keep" and (home / "keep.txt").read_text() == "keep"
    with pytest.raises(BenchgenError, match="refusing|empty path"):
        atomic.safe_out_path(out)


# --- 2. no silent replacement by a concurrent run -----------------------------------------------
def test_concurrent_generate_only_one_wins(tmp_path):
    """Two real processes into one --out: exactly one succeeds, the other fails with one line."""
    out = tmp_path / "race"
    procs = [subprocess.Popen([sys.executable, "-m", "benchgen", "generate", "khop", *TINY, "--seed", str(s),
                               "--out", str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for s in (11, 12)]
    results = [(p.wait(timeout=300), p.stderr.read()) for p in procs]
    codes = sorted(c for c, _ in results)
    assert codes == [0, 2], results
    loser = next(e for c, e in results if c == 2)
    assert len(loser.strip().splitlines()) == 1 and "Traceback" not in loser
    winner_seed = load(out).manifest["seed"]
    assert winner_seed in (11, 12) and cli("audit", out)[0] == 0
    assert hidden(tmp_path) == []


def test_final_move_is_exclusive_between_threads(tmp_path):
    """Many racers move their temp dir to one target at once: exactly one wins, losers are clean."""
    out = tmp_path / "t"
    tmps = [atomic.new_temp_dir(out, "dataset") for _ in range(8)]
    for i, t in enumerate(tmps):
        (t / "who").write_text(str(i))
    barrier, wins, errors = threading.Barrier(len(tmps)), [], []

    def go(i, t):
        barrier.wait()
        try:
            atomic.swap_into_place(t, out, overwrite=False, kind="dataset")
            wins.append(i)
        except BenchgenError as e:
            errors.append(str(e))
            atomic.remove_tree(t)

    threads = [threading.Thread(target=go, args=(i, t)) for i, t in enumerate(tmps)]
    [th.start() for th in threads]
    [th.join() for th in threads]
    assert len(wins) == 1 and len(errors) == 7
    assert (out / "who").read_text() == str(wins[0])
    assert all("another run wrote" in e for e in errors) and hidden(tmp_path) == []


def test_exclusive_without_renameat2(tmp_path, monkeypatch):
    """The rename(2) fallback still refuses to replace a non-empty directory."""
    monkeypatch.setattr(atomic, "_renameat2", None)
    out = tmp_path / "t"
    a, b = atomic.new_temp_dir(out, "dataset"), atomic.new_temp_dir(out, "dataset")
    (a / "x").write_text("a")
    atomic.swap_into_place(a, out, overwrite=False, kind="dataset")
    with pytest.raises(BenchgenError, match="another run wrote"):
        atomic.swap_into_place(b, out, overwrite=False, kind="dataset")
    assert (out / "x").read_text() == "a"


# --- 3. swaps roll back; leftovers never accumulate ---------------------------------------------
def test_failed_swap_rolls_back_old_output(tmp_path, monkeypatch):
    out = tmp_path / "k"
    assert cli("generate", "khop", *TINY, "--seed", "5", "--out", out)[0] == 0
    real = atomic.rename_noreplace

    def full_disk(src, dst):
        if ".tmp-" in Path(src).name:
            raise OSError(errno.ENOSPC, "No space left on device", str(dst))
        return real(src, dst)

    monkeypatch.setattr(atomic, "rename_noreplace", full_disk)
    code, _, err, exc = cli("generate", "khop", *TINY, "--seed", "6", "--out", out, "--overwrite")
    assert_one_line(code, err, exc, match="disk full")
    assert load(out).manifest["seed"] == 5 and hidden(tmp_path) == []


def test_close_cleans_up_on_error(tmp_path, monkeypatch):
    import benchgen.pipeline.generate as genmod

    def boom(*a, **k):
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(genmod, "render_card", boom)
    code, _, err, exc = cli("generate", "khop", *TINY, "--out", tmp_path / "k")
    assert_one_line(code, err, exc, match="Input/output error")
    assert not (tmp_path / "k").exists() and hidden(tmp_path) == []


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_stale_leftovers_of_killed_process_rolled_back_and_removed(tmp_path):
    out = tmp_path / "k"
    assert cli("generate", "khop", *TINY, "--seed", "5", "--out", out)[0] == 0
    host, dead = atomic._host_tag(), _dead_pid()
    # a kill between "old moved aside" and "new moved in": out is gone, the backup and temp remain
    os.rename(out, tmp_path / f".k.old-{dead}-{host}-abcd")
    (tmp_path / f".k.tmp-{dead}-{host}-ef01").mkdir()
    live = tmp_path / f".k.tmp-{os.getpid()}-{host}-beef"  # a live process's temp dir is left alone
    live.mkdir()
    code, _, err, exc = cli("generate", "khop", *TINY, "--seed", "6", "--out", out)
    assert_one_line(code, err, exc, match="already exists")  # the old dataset is back at --out
    assert load(out).manifest["seed"] == 5
    assert hidden(tmp_path) == [live.name]


def test_stale_file_temps_removed_by_next_write(ds, tmp_path):
    host, dead = atomic._host_tag(), _dead_pid()
    stale = tmp_path / f".p.parquet.tmp-{dead}-{host}-abcd"
    stale.write_bytes(b"half a file")
    assert cli("predict-oracle", ds, "--out", tmp_path / "p.parquet")[0] == 0
    assert hidden(tmp_path) == [] and pq.read_table(tmp_path / "p.parquet").num_rows > 0


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_kill_mid_write_keeps_old_dataset(sig, tmp_path):
    out = tmp_path / "big"
    assert cli("generate", "khop", *TINY, "--seed", "5", "--out", out)[0] == 0
    p = subprocess.Popen([sys.executable, "-m", "benchgen", "generate", *BIG, "--out", str(out), "--overwrite"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and p.poll() is None:  # wait until shards are being written
        if any((t / "data").is_dir() and any((t / "data").iterdir())
               for t in tmp_path.glob(".big.tmp-*")):
            break
        time.sleep(0.05)
    assert p.poll() is None, "generation finished before it could be killed"
    p.send_signal(sig)
    code = p.wait(timeout=120)
    err = p.stderr.read()
    assert load(out).manifest["seed"] == 5 and cli("audit", out)[0] == 0
    if sig == signal.SIGTERM:  # handled like SIGINT: one line, cleaned up at once
        assert code == 143 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
        assert hidden(tmp_path) == []
    else:  # SIGKILL: the next run removes the dead process's temp dir
        assert code == -signal.SIGKILL
        assert cli("generate", "khop", *TINY, "--seed", "5", "--out", out, "--overwrite")[0] == 0
        assert hidden(tmp_path) == []


def test_train_overwrite_killed_leaves_old_or_fresh_run(ds, tmp_path, monkeypatch):
    import benchgen.reference_models.train as tr

    run = tmp_path / "run"
    run.mkdir()
    atomic.write_marker(run, "run")
    (run / "config.json").write_text("{}")
    (run / "metrics.jsonl").write_text('{"step": 1}\n')

    def killed(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(tr, "load_split", killed)  # killed before the new run is in place: the old one stays
    with pytest.raises(KeyboardInterrupt):
        tr.train(ds, run, *_tiny_cfgs(), overwrite=True, progress=False)
    assert (run / "config.json").read_text() == "{}" and hidden(tmp_path) == []
    monkeypatch.undo()
    monkeypatch.setattr(tr, "LossModel", killed)  # killed after, before any checkpoint: nothing left (issue 22)
    with pytest.raises(KeyboardInterrupt):
        tr.train(ds, run, *_tiny_cfgs(), overwrite=True, progress=False)
    assert not run.exists() and hidden(tmp_path) == []


def _tiny_cfgs():
    from benchgen.reference_models.config import ModelConfig, TrainConfig

    return (ModelConfig(d_model=16, n_heads=2, n_block=1, loops=1, positions="learned", kernel="torch"),
            TrainConfig(steps=2, batch_size=4, eval_every=2, eval_examples=8, threads=1, seed=0))


# --- 4. nothing executes from data files ---------------------------------------------------------
class _Payload:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


@pytest.fixture(scope="module")
def tiny_run(ds, tmp_path_factory) -> Path:
    from benchgen.reference_models.train import train

    run = tmp_path_factory.mktemp("run") / "r"
    train(ds, run, *_tiny_cfgs(), progress=False)
    return run


def _copy_run(run: Path, dest: Path) -> Path:
    import shutil

    shutil.copytree(run, dest)
    return dest


def test_resume_never_unpickles_code(tiny_run, ds, tmp_path):
    run = _copy_run(tiny_run, tmp_path / "r")
    marker = tmp_path / "PWNED"
    with open(run / "optimizer.pt", "wb") as f:
        pickle.dump({"optimizer": _Payload(marker), "step": 2, "rng": {}}, f)
    code, _, err, exc = cli("train", "--data", ds, "--out", run, "--resume", "--steps", "3", "--no-progress")
    assert_one_line(code, err, exc, match="optimizer.pt")
    assert not marker.exists()


@pytest.mark.parametrize("damage", ["zero", "garbage", "truncated"])
def test_damaged_checkpoints_one_line(damage, tiny_run, ds, tmp_path):
    run = _copy_run(tiny_run, tmp_path / "r")
    for name in ("model.safetensors", "optimizer.pt"):
        data = (run / name).read_bytes()
        (run / name).write_bytes({"zero": b"", "garbage": os.urandom(300), "truncated": data[: len(data) // 2]}[damage])
    code, _, err, exc = cli("evaluate", ds, "--model", f"reference:{run}", "--no-progress", "--out", tmp_path / "e")
    assert_one_line(code, err, exc, match="model.safetensors")
    code, _, err, exc = cli("train", "--data", ds, "--out", run, "--resume", "--steps", "3", "--no-progress")
    assert_one_line(code, err, exc)
    (run / "config.json").write_text('{"model": 3}')
    code, _, err, exc = cli("evaluate", ds, "--model", f"reference:{run}", "--no-progress", "--out", tmp_path / "e")
    assert_one_line(code, err, exc, match="config.json")


def test_optimizer_state_is_weights_only_loadable(tiny_run):
    import torch

    blob = torch.load(tiny_run / "optimizer.pt", weights_only=True)
    assert blob["step"] == 2 and "numpy" in blob["rng"]


# --- 5. models see only what a model may see; predictions carry the fingerprint -------------------
SPY = '''
import json

SEEN = {seen!r}


def spy(examples, loops):
    with open(SEEN, "a") as f:
        f.write(json.dumps(sorted(examples.column_names)) + "\\n")
    return ["<e_0>"] * examples.num_rows
'''


def test_python_adapter_sees_only_model_visible_columns(ds, tmp_path):
    seen = tmp_path / "seen.jsonl"
    (tmp_path / "spy.py").write_text(SPY.format(seen=str(seen)))
    code, _, err, _ = cli("evaluate", ds, "--model", f"python:{tmp_path / 'spy.py'}:spy", "--no-progress",
                          "--no-plots", "--out", tmp_path / "e")
    assert code == 0, err
    cols = {tuple(json.loads(x)) for x in seen.read_text().splitlines()}
    assert cols == {("id", "input_ids", "prompt")}
    table = pq.read_table(tmp_path / "e" / "predictions.parquet")
    assert table.schema.metadata[b"benchgen.dataset_fingerprint"].decode() == load(ds).fingerprint


def test_torchscript_decode_budget_never_uses_a_rows_answer_length(ds, tmp_path):
    from benchgen.evaluators.models.torchscript import answer_budget

    assert answer_budget(load(ds)) == 1  # khop: every answer is one token
    out = tmp_path / "add"
    assert cli("generate", "addition", "--preset", "addition-small", "--train-per-cell", "20", "--valid-per-cell",
               "4", "--test-per-cell", "4", "--no-progress", "--out", out)[0] == 0
    add = load(out)
    longest = max(max(len(x) for x in add.table(s, columns=["target_ids"])["target_ids"].to_pylist())
                  for s in add.splits)
    assert answer_budget(add) == longest + 1  # variable length: one budget for all rows, eos stops early


@pytest.mark.parametrize("ext", ["parquet", "jsonl", "csv"])
def test_predictions_for_another_seed_are_refused(ext, ds, ds_other_seed, tmp_path):
    p = tmp_path / f"p.{ext}"
    assert cli("predict-oracle", ds, "--out", p)[0] == 0
    code, _, err, exc = cli("evaluate", ds_other_seed, "--predictions", p, "--out", tmp_path / "e")
    assert_one_line(code, err, exc, match="fingerprint")
    assert cli("evaluate", ds, "--predictions", p, "--no-plots", "--out", tmp_path / "ok")[0] == 0


# --- 6. one clear line for every bad input ------------------------------------------------------
def _unwritable(tmp_path: Path) -> Path:
    if os.geteuid() == 0:  # root ignores permission bits: use a place no one can create files in
        return Path("/proc/benchgen-no-such/out")
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    return ro / "out"


@pytest.mark.parametrize("fault", ["unwritable", "under_file", "name_too_long"])
@pytest.mark.parametrize("command", ["generate", "evaluate", "export", "train", "predict", "leaderboard", "report"])
def test_filesystem_errors_one_line(fault, command, ds, preds, results_dir, tmp_path):
    (tmp_path / "afile").write_text("x")
    base = {"unwritable": _unwritable(tmp_path), "under_file": tmp_path / "afile" / "out",
            "name_too_long": tmp_path / ("n" * 300)}[fault]
    args = {"generate": ["generate", "khop", *TINY, "--out", base],
            "evaluate": ["evaluate", ds, "--predictions", preds, "--out", base],
            "export": ["export", "lm-eval", ds, "--out", base],
            "train": ["train", "--data", ds, "--preset", "cpu-khop-looped", "--out", base],
            "predict": ["predict-oracle", ds, "--out", f"{base}.parquet"],
            "leaderboard": ["leaderboard", results_dir / "results.json", "--out", f"{base}.md"],
            "report": ["report", results_dir / "results.json", "--no-plots", "--out", base]}[command]
    t0 = time.time()
    code, _, err, exc = cli(*args)
    assert_one_line(code, err, exc)
    assert time.time() - t0 < 30  # checked before expensive work
    assert (tmp_path / "afile").read_text() == "x" and hidden(tmp_path) == []


@pytest.mark.parametrize("command", ["generate", "evaluate", "export", "predict", "leaderboard", "train"])
def test_disk_full_one_line(command, ds, preds, results_dir, tmp_path, monkeypatch):
    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "x"))

    monkeypatch.setattr(atomic, "write_file", full)
    import benchgen.dataset as dsmod

    monkeypatch.setattr(dsmod.pq, "write_table", full)
    args = {"generate": ["generate", "khop", *TINY, "--out", tmp_path / "o"],
            "evaluate": ["evaluate", ds, "--predictions", preds, "--out", tmp_path / "o"],
            "export": ["export", "lm-eval", ds, "--out", tmp_path / "o"],
            "predict": ["predict-oracle", ds, "--out", tmp_path / "o.parquet"],
            "leaderboard": ["leaderboard", results_dir / "results.json", "--out", tmp_path / "o.md"],
            "train": ["train", "--data", ds, "--set", "train.steps=2", "--preset", "cpu-khop-looped", "--no-progress",
                      "--out", tmp_path / "o"]}[command]
    code, _, err, exc = cli(*args)
    assert_one_line(code, err, exc, match="disk full")
    assert not (tmp_path / "o").exists() and hidden(tmp_path) == []


@pytest.mark.parametrize("args, match", [
    (["generate", "khop", *TINY, "--seed", "-1", "--out", "OUT"], "seed"),
    (["generate", "khop", *TINY, "--ood-fraction", "nan", "--out", "OUT"], "finite"),
    (["generate", "khop", *TINY, "--ood-fraction", "inf", "--out", "OUT"], "finite"),
    (["generate", "khop", *TINY, "--test-hops", "3-100000000", "--out", "OUT"], "at most 1000 values"),
    (["generate", "khop", *TINY, "--test-hops", "99999999999", "--out", "OUT"], "at most"),
    (["generate", "khop", *TINY, "--num-entities", "100000000", "--out", "OUT"], "at most 1,000,000"),
    (["generate", "khop", *TINY, "--train-per-hop", "900000000", "--out", "OUT"], "at most 2,000,000"),
    (["generate", "addition", "--train-per-cell", "1500000", "--train-operands", "2-400", "--test-operands", "401", "--train-widths", "8,9",
      "--held-out", "400x9", "--no-progress", "--out", "OUT"], "limit"),
    (["generate", "induction", "--held-out", "3x9999999999", "--no-progress", "--out", "OUT"], "at most"),
    (["predict-oracle", "DS", "--seed", "-3", "--out", "OUT.parquet"], "--seed"),
    (["predict-oracle", "DS", "--noise", "inf", "--out", "OUT.parquet"], "finite"),
    (["predict-oracle", "DS", "--loops", "1-99999999", "--out", "OUT.parquet"], "at most 1000 values"),
    (["predict-oracle", "DS", "--loops", "1-999", "--out", "OUT.parquet"], "at most 256 loop counts"),
    (["evaluate", "DS", "--model", "reference:RUN", "--loops", "5000", "--out", "OUT"], "1..4096"),
    (["evaluate", "DS", "--predictions", "PREDS", "--seed", "-1", "--out", "OUT"], "--seed"),
    (["evaluate", "DS", "--predictions", "PREDS", "--tau", "nan", "--out", "OUT"], "finite"),
    (["evaluate", "DS", "--predictions", "PREDS", "--bootstrap", "1000000000", "--out", "OUT"], "100,000"),
    (["evaluate", "DS", "--model", "reference:RUN", "--device", "tpu", "--out", "OUT"], "--device"),
    (["train", "--data", "DS", "--preset", "cpu-khop-looped", "--device", "tpu", "--out", "OUT"], "--device"),
    (["train", "--data", "DS", "--preset", "cpu-khop-looped", "--seed", "-5", "--out", "OUT"], "--seed"),
    (["train", "--data", "DS", "--preset", "cpu-khop-looped", "--set", "model.d_model=100000000", "--out", "OUT"],
     "at most 8,192"),
    (["train", "--data", "DS", "--preset", "cpu-khop-looped", "--set", "model.loops=1000000000", "--out", "OUT"],
     "at most 1,024"),
    (["generate", "khop", "--bogus-option"], "No such option"),
    (["evaluate"], "Missing argument"),
])
def test_bad_values_one_line(args, match, ds, preds, tmp_path):
    subst = {"DS": str(ds), "PREDS": str(preds), "OUT": str(tmp_path / "out"), "OUT.parquet": str(tmp_path / "o.parquet"),
             "reference:RUN": f"reference:{tmp_path}"}
    t0 = time.time()
    code, _, err, exc = cli(*[subst.get(a, a) for a in args])
    assert_one_line(code, err, exc, match=match)
    assert time.time() - t0 < 30 and not (tmp_path / "out").exists() and hidden(tmp_path) == []


def test_infinite_margins_rejected_and_results_stay_valid_json(ds, tmp_path):
    from benchgen.evaluators.results import _plain

    p = tmp_path / "p.parquet"
    assert cli("predict-oracle", ds, "--out", p)[0] == 0
    t = pq.read_table(p)
    margins = [float("inf")] + [1.0] * (t.num_rows - 1)
    pq.write_table(t.append_column("margin", pa.array(margins, pa.float64())), p)
    code, _, err, exc = cli("evaluate", ds, "--predictions", p, "--out", tmp_path / "e")
    assert_one_line(code, err, exc, match="infinite")
    json.dumps(_plain({"a": float("inf"), "b": [float("-inf"), float("nan")]}), allow_nan=False)


MANIFESTS = [[], "x", {"task": "khop"}, {"task": 3, "config": {}, "splits": {}, "fingerprint": "f"},
             {"task": "khop", "config": [], "splits": {"train": {}}, "fingerprint": "f"},
             {"task": "khop", "config": {}, "splits": [], "fingerprint": "f"},
             {"task": "khop", "config": {}, "splits": {"train": {"rows": "a", "shards": [], "sha256": "x",
                                                                 "depths": {}}}, "fingerprint": "f"},
             {"task": "khop", "config": {}, "splits": {"train": {"rows": 1, "shards": ["../../etc/passwd"],
                                                                 "sha256": "x", "depths": {}}}, "fingerprint": "f"},
             {"task": "khop", "config": {}, "splits": {"train": {"rows": 1, "shards": [7], "sha256": "x",
                                                                 "depths": {"2": -1}}}, "fingerprint": "f"}]


@pytest.mark.parametrize("i", range(len(MANIFESTS) + 2))
def test_malformed_manifest_one_line(i, ds, tmp_path):
    import shutil

    d = shutil.copytree(ds, tmp_path / "d")
    text = {len(MANIFESTS): "{truncated", len(MANIFESTS) + 1: "[" * 100_000}.get(i)
    (d / "manifest.json").write_text(text if text is not None else json.dumps(MANIFESTS[i]))
    for cmd in ("info", "audit"):
        code, _, err, exc = cli(cmd, d)
        assert_one_line(code, err, exc, match="manifest.json")


@pytest.mark.parametrize("vocab", ["[]", '{"tokens": 5}', '{"tokens": [1, 2]}', '{"tokens": ["a", "a"]}',
                                   '{"tokens": ["<pad>"], "joiner": 3}', "garbage"])
def test_malformed_vocab_one_line(vocab, ds, tmp_path):
    import shutil

    d = shutil.copytree(ds, tmp_path / "d")
    (d / "vocab.json").write_text(vocab)
    code, _, err, exc = cli("audit", d)
    assert_one_line(code, err, exc, match="vocab.json")


RESULTS_SHAPES = [[], 3, {"schema_version": 1}, {"schema_version": "1", "dataset": {}, "model": {}, "cells": [],
                                                 "metrics": {}},
                  {"schema_version": 1, "dataset": [], "model": {}, "cells": [], "metrics": {}},
                  {"schema_version": 1, "dataset": {}, "model": {}, "cells": [1], "metrics": {}},
                  {"schema_version": 1, "dataset": {}, "model": {}, "cells": [{"split": "a"}], "metrics": {}},
                  {"schema_version": 1, "dataset": {}, "model": {}, "cells": {}, "metrics": {}},
                  {"schema_version": 1, "dataset": {}, "model": {}, "cells": [], "metrics": {"per_split": 3}}]


@pytest.mark.parametrize("i", range(len(RESULTS_SHAPES)))
def test_malformed_results_one_line(i, tmp_path):
    p = tmp_path / "results.json"
    p.write_text(json.dumps(RESULTS_SHAPES[i]))
    for args in (["report", p, "--no-plots"], ["leaderboard", p, "--out", tmp_path / "b.md"]):
        code, _, err, exc = cli(*args)
        assert_one_line(code, err, exc, match="results.json")


def test_mutated_results_never_trace(results_dir, tmp_path):
    """Random subtrees of a valid results.json replaced or dropped: report and leaderboard exit 0 or one line."""
    import copy
    import random

    rng = random.Random(0)
    base = json.loads((results_dir / "results.json").read_text())
    values = [None, 0, -1, 1.5, "x", [], {}, [1], {"a": 1}, True, 1e308, "", [None]]

    def paths(x, p=()):
        yield p
        if isinstance(x, dict):
            for k, v in x.items():
                yield from paths(v, (*p, k))
        elif isinstance(x, list):
            for i, v in enumerate(x[:3]):
                yield from paths(v, (*p, i))

    all_paths = [p for p in paths(base) if p]
    for _ in range(40):
        d = copy.deepcopy(base)
        p = rng.choice(all_paths)
        node = d
        for k in p[:-1]:
            node = node[k]
        if isinstance(node, dict) and rng.random() < 0.3:
            node.pop(p[-1])
        else:
            node[p[-1]] = rng.choice(values)
        f = tmp_path / "results.json"
        f.write_text(json.dumps(d))
        for args in (["report", f, "--no-plots", "--out", tmp_path / "rep"],
                     ["leaderboard", f, "--out", tmp_path / "b.md", "--out", tmp_path / "b.csv"]):
            code, _, err, exc = cli(*args)
            assert exc is None or isinstance(exc, SystemExit), (p, repr(exc))
            if code != 0:
                assert_one_line(code, err, exc)


@pytest.mark.parametrize("damage", ["garbage", "truncated", "zero"])
def test_damaged_shards_in_audit_one_line_each(damage, ds, tmp_path):
    import shutil

    d = shutil.copytree(ds, tmp_path / "d")
    shard = sorted((d / "data").glob("test_id-*.parquet"))[0]
    data = shard.read_bytes()
    shard.write_bytes({"garbage": b"PAR1" + os.urandom(200), "truncated": data[: len(data) // 2], "zero": b""}[damage])
    code, out, err, exc = cli("audit", d)
    assert code == 1 and (exc is None or isinstance(exc, SystemExit)) and "Traceback" not in err
    assert "test_id" in err and "VIOLATION" in err


# --- 7. outputs honour the umask ----------------------------------------------------------------
@pytest.mark.parametrize("mask, dmode, fmode", [(0o022, 0o755, 0o644), (0o077, 0o700, 0o600)])
def test_outputs_honour_umask(mask, dmode, fmode, ds, preds, tmp_path):
    old = os.umask(mask)
    try:
        outs = [tmp_path / "gen", tmp_path / "eval", tmp_path / "lm", tmp_path / "p.parquet", tmp_path / "b.csv"]
        assert cli("generate", "khop", *TINY, "--out", outs[0])[0] == 0
        assert cli("evaluate", ds, "--predictions", preds, "--html", "--out", outs[1])[0] == 0
        assert cli("report", outs[1] / "results.json")[0] == 0
        assert cli("export", "lm-eval", ds, "--out", outs[2])[0] == 0
        assert cli("predict-oracle", ds, "--out", outs[3])[0] == 0
        assert cli("leaderboard", outs[1], "--out", outs[4])[0] == 0
    finally:
        os.umask(old)
    for o in outs:
        paths = [o, *o.rglob("*")] if o.is_dir() else [o]
        for p in paths:
            mode = stat.S_IMODE(p.stat().st_mode)
            assert mode == (dmode if p.is_dir() else fmode), (p, oct(mode))
    assert hidden(tmp_path) == []


def test_run_directory_honours_umask(tiny_run):
    mask = atomic.current_umask()
    for p in [tiny_run, *tiny_run.rglob("*")]:
        want = (0o777 if p.is_dir() else 0o666) & ~mask
        assert stat.S_IMODE(p.stat().st_mode) == want, (p, oct(p.stat().st_mode))


def test_one_atomic_write_helper():
    """No module writes outputs through mkstemp/mkdtemp or its own rename helper any more."""
    root = Path(__file__).resolve().parents[1]
    for f in [*root.glob("benchgen/*.py"), *root.glob("evaluators/**/*.py"), *root.glob("reference_models/*.py")]:
        text = f.read_text()
        assert "mkstemp(" not in text and "mkdtemp(" not in text, f


# --- 8. leaderboard exports are safe to open ----------------------------------------------------
def test_leaderboard_names_sanitised(results_dir, tmp_path):
    evil = {"=HYPERLINK(\"http://x\")": "csv", "evil\n| injected | row |\n<script>alert(1)</script>": "md"}
    paths = []
    for i, name in enumerate(evil):
        data = json.loads((results_dir / "results.json").read_text())
        data["model"]["name"] = name
        p = tmp_path / f"r{i}.json"
        p.write_text(json.dumps(data))
        paths.append(p)
    code, _, err, _ = cli("leaderboard", *paths, "--out", tmp_path / "b.md", "--out", tmp_path / "b.csv",
                          "--out", tmp_path / "b.html")
    assert code == 0, err
    md = (tmp_path / "b.md").read_text()
    table = [x for x in md.splitlines() if x.startswith("|")]
    assert len(table) == 2 + 2  # header, rule, one line per model
    assert "<script>" not in md and "&lt;script&gt;" in md
    import csv

    rows = list(csv.DictReader((tmp_path / "b.csv").open()))
    assert {r["model"][0] for r in rows} <= set("'e")
    assert any(r["model"].startswith("'=HYPERLINK") for r in rows)
    assert all(not v.startswith(("=", "+", "@")) for r in rows for v in r.values())
    assert "<script>alert" not in (tmp_path / "b.html").read_text()
