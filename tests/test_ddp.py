"""2-process gloo DDP (torchrun on CPU): same gradient as one process, and the same training run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pyarrow as pa
import torch
from fixtures.toy import commit

from benchgen.dataset import DatasetWriter
from benchgen.reference_models.config import ModelConfig, TrainConfig
from benchgen.schema import example_schema, make_ids
from benchgen.vocab import SPECIALS, Vocab

ROOT = Path(__file__).resolve().parents[1]


def make_dataset(path: Path) -> Path:
    """Tiny variable-length task: 1-3 symbols + <sep> -> the symbols reversed (+ eos)."""
    vocab = Vocab(list(SPECIALS) + [f"<s{i}>" for i in range(5)])
    rng = np.random.default_rng(0)
    ins, outs = [], []
    for i in range(24):
        sym = (rng.integers(0, 5, 1 + i % 3) + 4).tolist()
        ins.append(sym + [3])
        outs.append(sym[::-1])
    li, lt = pa.array(ins, pa.list_(pa.int32())), pa.array(outs, pa.list_(pa.int32()))
    table = pa.table({"id": make_ids("toy", "train", 0, 24), "split": pa.array(["train"] * 24),
                      "depth": pa.array([len(o) for o in outs], pa.int32()), "input_ids": li, "target_ids": lt,
                      "prompt": vocab.render(li), "answer": vocab.render(lt)}, schema=example_schema())
    with DatasetWriter(path, task="toy", config={}, seed=0, vocab=vocab, schema=example_schema()) as w:
        w.write_split("train", [table])
        commit(w)
    return path


MODEL = dict(d_model=32, n_heads=4, n_block=1, loops=2, positions="learned", kernel="torch")
TRAIN = dict(steps=4, batch_size=8, lr=3e-3, warmup_steps=1, eval_every=0, log_every=1, eval_examples=0,
             threads=1, seed=5, loops_sampling="uniform", loops_min=1, loops_max=3)

SCRIPT = """
import json, sys, torch
import torch.distributed as dist
from benchgen.reference_models.config import ModelConfig, TrainConfig
from benchgen.reference_models.train import train, LossModel, fill_from_dataset
from benchgen.reference_models.data import answer_format, load_split, make_batch
from benchgen.reference_models.model import LoopedTransformer
from benchgen.dataset import load

data, out, grads_path = sys.argv[1:4]
model_kw, train_kw = json.loads(sys.argv[4]), json.loads(sys.argv[5])
torch.set_num_threads(1)
dist.init_process_group("gloo")
rank, world = dist.get_rank(), dist.get_world_size()
# 1) gradient of one toy batch, split over the ranks
ds = load(data); fmt = answer_format(ds)
cfg = fill_from_dataset(ModelConfig(**model_kw), ds, fmt)
torch.manual_seed(0)
model = LoopedTransformer(cfg)
enc = load_split(ds, "train", fmt)
rows = torch.arange(8)
n_global = int(enc.n_ans[rows].sum())
x, y, mask = make_batch(enc, rows[rank * 4:(rank + 1) * 4])
ddp = torch.nn.parallel.DistributedDataParallel(LossModel(model, TrainConfig(**train_kw)))
ddp(x, y, mask, 3, 1, world / n_global).backward()
if rank == 0:
    torch.save({n: p.grad for n, p in model.named_parameters()}, grads_path)
# 2) a short training run through the real entry point
train(data, out, ModelConfig(**model_kw), TrainConfig(**train_kw), progress=False)
dist.destroy_process_group()
"""


def test_two_process_gloo_matches_single_process(tmp_path):
    from benchgen.dataset import load
    from benchgen.reference_models.data import answer_format, load_split, make_batch
    from benchgen.reference_models.model import LoopedTransformer
    from benchgen.reference_models.train import LossModel, fill_from_dataset, train

    data = make_dataset(tmp_path / "toy")
    script = tmp_path / "ddp_script.py"
    script.write_text(textwrap.dedent(SCRIPT))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(script),
         str(data), str(tmp_path / "ddp-run"), str(tmp_path / "grads.pt"), json.dumps(MODEL), json.dumps(TRAIN)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]

    # single-process gradient on the whole toy batch
    ds = load(data)
    fmt = answer_format(ds)
    cfg = fill_from_dataset(ModelConfig(**MODEL), ds, fmt)
    torch.manual_seed(0)
    model = LoopedTransformer(cfg)
    enc = load_split(ds, "train", fmt)
    rows = torch.arange(8)
    x, y, mask = make_batch(enc, rows)
    LossModel(model, TrainConfig(**TRAIN))(x, y, mask, 3, 1, 1 / int(enc.n_ans[rows].sum())).backward()
    ddp_grads = torch.load(tmp_path / "grads.pt")
    for n, p in model.named_parameters():
        assert torch.allclose(ddp_grads[n], p.grad, atol=1e-6, rtol=1e-4), n
    assert any(float(p.grad.abs().max()) > 0 for p in model.parameters())

    # the 2-process run trained and follows the single-process loss curve (same global batches)
    single = train(data, tmp_path / "single-run", ModelConfig(**MODEL), TrainConfig(**TRAIN), progress=False)

    def losses(run):
        lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
        return [r["loss"] for r in lines if r["kind"] == "train"]

    ddp_losses = losses(tmp_path / "ddp-run")
    assert len(ddp_losses) == 4
    assert np.allclose(ddp_losses, losses(single), rtol=1e-4, atol=1e-5)
    assert json.loads((tmp_path / "ddp-run" / "config.json").read_text())["world_size"] == 2
