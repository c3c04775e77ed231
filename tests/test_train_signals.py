"""`train` in a batch job (issue 22, items 9, 10 and 12): plain progress lines when stderr is not a
terminal; a SIGTERM or SIGINT stops it within seconds and leaves nothing (no checkpoint yet) or a run
that `--resume` continues from its last checkpoint."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from test_train import make_dataset

from benchgen.cli import main

MODEL = {"d_model": 32, "n_heads": 4, "n_block": 1, "loops": 2, "positions": "learned", "kernel": "torch"}


def _config(path: Path, **train) -> Path:
    base = {"steps": 20, "batch_size": 8, "lr": 3e-3, "warmup_steps": 2, "eval_every": 0, "save_every": 0,
            "log_every": 1, "eval_examples": 0, "threads": 1, "seed": 3}
    path.write_text(json.dumps({"model": MODEL, "train": {**base, **train}}))
    return path


def test_progress_lines_off_a_terminal(tmp_path):
    data = make_dataset(tmp_path / "toy")
    res = CliRunner().invoke(main, ["train", "--data", str(data), "--config", str(_config(tmp_path / "c.json")),
                                    "--out", str(tmp_path / "run")])
    assert res.exit_code == 0, res.output
    lines = [x for x in res.stderr.splitlines() if x.startswith("train: ")]
    steps = [int(re.match(r"train: step (\d+)/20 \(\d+%\)", x).group(1)) for x in lines]
    assert steps == list(range(1, 21))  # every 5% of the steps (one step here), the last one included
    assert re.fullmatch(r"train: step 20/20 \(100%\)  loss \d+\.\d{4}  T 2  [\d,]+ tok/s  ETA 0m00s", lines[-1])
    losses = [json.loads(x)["loss"] for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
              if json.loads(x).get("kind") == "train"]
    assert f"loss {losses[-1]:.4f}" in lines[-1]  # the line shows the logged loss
    assert "%|" not in res.stderr  # no bar


def _start(tmp_path: Path, config: Path, out: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    # SIGINT back to its default in the child: a test run started in the background (nohup, `&` without job
    # control) inherits SIGINT ignored, and Python then never turns it into KeyboardInterrupt
    return subprocess.Popen([sys.executable, "-m", "benchgen", "train", "--data", str(tmp_path / "toy"),
                             "--config", str(config), "--out", str(out)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def _wait_for(proc: subprocess.Popen, ready, timeout: float = 120.0) -> None:
    start = time.monotonic()
    while not ready():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() - start < timeout, "training never got going"
        time.sleep(0.05)


def _stop(proc: subprocess.Popen, sig: int) -> tuple[int, str, float]:
    proc.send_signal(sig)
    start = time.monotonic()
    _, err = proc.communicate(timeout=60)
    return proc.returncode, err, time.monotonic() - start


def _trained(out: Path) -> bool:
    try:
        return any(json.loads(x).get("kind") == "train" for x in (out / "metrics.jsonl").read_text().splitlines())
    except (OSError, ValueError):
        return False


def test_sigterm_before_a_checkpoint_leaves_nothing(tmp_path):
    make_dataset(tmp_path / "toy")
    out = tmp_path / "run"
    proc = _start(tmp_path, _config(tmp_path / "c.json", steps=10**6), out)
    _wait_for(proc, lambda: _trained(out))
    code, err, seconds = _stop(proc, signal.SIGTERM)
    assert code == 143 and err.strip().splitlines()[-1] == f"error: stopped by SIGTERM; nothing was left at {out}"
    assert "Traceback" not in err and seconds < 20, (err, seconds)
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".run.")]


def test_sigint_after_a_checkpoint_leaves_a_run_that_resumes(tmp_path):
    data = make_dataset(tmp_path / "toy")
    out = tmp_path / "run"
    proc = _start(tmp_path, _config(tmp_path / "c.json", steps=10**6, save_every=5), out)
    _wait_for(proc, lambda: (out / "config.json").exists())
    code, err, seconds = _stop(proc, signal.SIGINT)
    step = json.loads((out / "config.json").read_text())["step"]
    assert code == 130 and seconds < 20, (err, seconds)
    assert err.strip().splitlines()[-1] == (f"error: stopped by SIGINT; {out} resumes from its checkpoint at step "
                                            f"{step}: benchgen train --data {tmp_path / 'toy'} --out {out} --resume")
    res = CliRunner().invoke(main, ["train", "--data", str(data), "--out", str(out), "--resume",
                                    "--steps", str(step + 2)])
    assert res.exit_code == 0, res.output
    assert json.loads((out / "config.json").read_text())["step"] == step + 2


def test_a_signal_during_a_checkpoint_waits_for_the_whole_checkpoint(tmp_path, monkeypatch):
    """SIGINT between two files of a checkpoint is held until every file is written, then raised:
    the run on disk always holds one step (the torn-checkpoint race behind a resume failure)."""

    import torch

    from benchgen.reference_models import checkpoint as ckpt
    from benchgen.reference_models.config import ModelConfig, TrainConfig
    from benchgen.reference_models.model import LoopedTransformer

    cfg = ModelConfig(d_model=16, n_heads=2, n_block=1, loops=1, vocab_size=8, max_len=8, positions="learned")
    model = LoopedTransformer(cfg)
    opt = torch.optim.AdamW(model.parameters())
    real, written = ckpt._atomic, []

    def interrupted(path, write):
        real(path, write)
        written.append(path.name)
        if len(written) == 1:
            # arrives between the weights and the optimizer state; raise_signal delivers it to this thread
            # at once (os.kill may hand it to another thread, which under load runs it late)
            signal.raise_signal(signal.SIGINT)

    monkeypatch.setattr(ckpt, "_atomic", interrupted)
    ignored = signal.getsignal(signal.SIGINT)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a foreground run (a background one ignores it)
    try:
        with pytest.raises(KeyboardInterrupt):
            ckpt.save(tmp_path / "run", model, opt, 7, cfg, TrainConfig(), {})
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handlers restored
    finally:
        signal.signal(signal.SIGINT, ignored)
    assert written == [ckpt.WEIGHTS, ckpt.OPTIM, ckpt.CONFIG]
    assert json.loads((tmp_path / "run" / ckpt.CONFIG).read_text())["step"] == 7
    assert torch.load(tmp_path / "run" / ckpt.OPTIM, weights_only=True)["step"] == 7
