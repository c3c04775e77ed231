"""Train a reference looped transformer on a benchgen dataset (CPU, CUDA, or torchrun DDP).

    benchgen train --data data/khop-small --preset cpu-khop-looped --out runs/looped
    torchrun --nproc_per_node 2 -m benchgen train --data DIR --preset NAME --out RUN

Loss on answer tokens only (label smoothing optional); AdamW with warmup then constant /
linear / cosine; T fixed or sampled per step (uniform, clip(Poisson), Huginn Poisson-lognormal)
with truncated backprop through the last m iterations; optional LoopFormer short-route
consistency loss. Every ``eval_every`` steps: exact-match accuracy on every split (teacher-forced
argmax at every answer position, which equals greedy decoding's exact match) into
``metrics.jsonl`` and ``curves.png``, and a checkpoint (see checkpoint.py).

Determinism: the batch rows and T of step s are pure functions of (seed, s); init comes from
``torch.manual_seed(seed)``; resume restores optimizer and RNG states, so a resumed run continues
the uninterrupted loss curve. DDP: the global batch is cut into equal per-rank slices and the
loss is normalised by the *global* answer-token count, so gradients equal the single-process ones.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from benchgen.reference_models import checkpoint as ckpt
from benchgen.reference_models.config import ModelConfig, TrainConfig, from_dicts
from benchgen.reference_models.data import (
    AnswerFormat,
    Encoded,
    answer_format,
    batch_indices,
    load_split,
    make_batch,
)
from benchgen.reference_models.model import LoopedTransformer

from benchgen import seeding
from benchgen.dataset import Dataset, check_target, load
from benchgen.errors import BenchgenError

METRICS, CURVES = "metrics.jsonl", "curves.png"


# --- schedules ------------------------------------------------------------------------------
def lr_at(step: int, cfg: TrainConfig) -> float:
    """Learning rate of (1-based) ``step``: linear warmup, then constant / linear / cosine decay."""
    if cfg.warmup_steps and step <= cfg.warmup_steps:
        return cfg.lr * step / cfg.warmup_steps
    if cfg.schedule == "constant":
        return cfg.lr
    frac = min(1.0, (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps))
    if cfg.schedule == "linear":
        return cfg.lr * (1 - (1 - cfg.min_lr_ratio) * frac)
    return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * frac)))


def sample_loops(cfg: TrainConfig, default: int, step: int) -> tuple[int, int]:
    """(T, short-route S) for ``step``: a pure function of (seed, step), identical on every rank."""
    r = seeding.rng(cfg.seed, "loops", step)
    lo, hi = cfg.loops_min, cfg.loops_max
    if cfg.loops_sampling == "fixed":
        T = default
    elif cfg.loops_sampling == "uniform":
        T = int(r.integers(lo, hi + 1))
    elif cfg.loops_sampling == "poisson":
        T = int(np.clip(r.poisson(cfg.loops_mean), lo, hi))
    else:  # Huginn: tau ~ N(log(mean) - sigma^2/2, sigma), T = Poisson(e^tau) + 1
        tau = r.normal(math.log(cfg.loops_mean) - cfg.loops_sigma ** 2 / 2, cfg.loops_sigma)
        T = int(np.clip(r.poisson(math.exp(tau)) + 1, lo, hi))
    S = int(r.integers(1, T)) if T > 1 else 1
    return T, S


# --- loss -----------------------------------------------------------------------------------
class LossModel(nn.Module):
    """Model + loss in one forward (so DDP sees one forward per step, short route included)."""

    def __init__(self, model: LoopedTransformer, cfg: TrainConfig):
        super().__init__()
        self.model, self.cfg = model, cfg

    def forward(self, x, y, mask, T: int, S: int, scale: float):
        cfg = self.cfg
        short = cfg.short_route_weight > 0 and T > 1
        out = self.model(x, loops=T, backprop_last=cfg.backprop_last, return_state=short)
        logits, h_long = out if short else (out, None)
        loss = F.cross_entropy(logits[mask], y[mask], reduction="sum",
                               label_smoothing=cfg.label_smoothing) * scale
        if short:  # LoopFormer: CE_long + w*CE_short + w*MSE(stopgrad(h_long), h_short)
            logits_s, h_short = self.model(x, loops=S, return_state=True)
            ce_s = F.cross_entropy(logits_s[mask], y[mask], reduction="sum",
                                   label_smoothing=cfg.label_smoothing) * scale
            mse = F.mse_loss(h_short[mask], h_long.detach()[mask])
            loss = loss + cfg.short_route_weight * (ce_s + mse)
        return loss


@torch.no_grad()
def accuracy(model: LoopedTransformer, data: Encoded, loops: int, batch_size: int = 512,
             device: str | torch.device = "cpu") -> float:
    """Exact match over all answer tokens (teacher-forced argmax == greedy decoding's exact match)."""
    if len(data) == 0:
        return float("nan")
    correct = 0
    for start in range(0, len(data), batch_size):
        idx = torch.arange(start, min(start + batch_size, len(data)))
        x, y, mask = (t.to(device) for t in make_batch(data, idx))
        pred = model(x, loops=loops).argmax(-1)
        correct += int(((pred == y) | ~mask).all(1).sum())
    return correct / len(data)


# --- helpers --------------------------------------------------------------------------------
def _dist() -> tuple[int, int, int]:
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)), int(os.environ.get("LOCAL_RANK", 0))


def _device(cfg: TrainConfig, local_rank: int) -> torch.device:
    if cfg.device == "auto":
        return torch.device(f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu")
    dev = torch.device(cfg.device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise BenchgenError(f"option 'device': {cfg.device} requested but CUDA is not available")
    if dev.type == "cuda" and dev.index is None:
        dev = torch.device(f"cuda:{local_rank}")
    return dev


def fill_from_dataset(cfg: ModelConfig, ds: Dataset, fmt: AnswerFormat) -> ModelConfig:
    """vocab_size and max_len (longest input+answer-1 over every split) from the dataset."""
    from benchgen.reference_models.data import _lengths

    longest = 0
    for split in ds.splits:
        t = ds.table(split, columns=["input_ids", "target_ids"])
        n_in, _ = _lengths(t.column("input_ids"))
        n_tg, _ = _lengths(t.column("target_ids"))
        extra = 1 if fmt.eos_id is not None else 0
        longest = max(longest, int((n_in + n_tg).max()) + extra - 1)
    return dataclasses.replace(cfg, vocab_size=cfg.vocab_size or len(ds.vocab), max_len=cfg.max_len or longest)


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    decay = [p for p in model.parameters() if p.dim() >= 2]
    other = [p for p in model.parameters() if p.dim() < 2]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": other, "weight_decay": 0.0}]


def plot_curves(run: Path) -> None:
    """curves.png: training loss and per-split accuracy against step (grokking stages visible)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [json.loads(line) for line in (run / METRICS).read_text().splitlines() if line.strip()]
    tr = [r for r in rows if r["kind"] == "train"]
    ev = [r for r in rows if r["kind"] == "eval"]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4))
    if tr:
        a1.plot([r["step"] for r in tr], [r["loss"] for r in tr])
        a1.set_yscale("log")
    a1.set(xlabel="step", ylabel="train loss (answer tokens)", title="loss")
    for split in (ev[0]["acc"] if ev else {}):
        a2.plot([r["step"] for r in ev], [r["acc"][split] for r in ev], marker=".", label=split)
    a2.set(xlabel="step", ylabel="exact-match accuracy", ylim=(-0.02, 1.02), title="accuracy per split")
    if ev:
        a2.legend(fontsize=8)
    fig.tight_layout()
    tmp = run / f".{CURVES}.tmp.png"
    fig.savefig(tmp, dpi=90)
    plt.close(fig)
    os.replace(tmp, run / CURVES)


def _truncate_metrics(path: Path, step: int) -> None:
    if path.exists():
        keep = [line for line in path.read_text().splitlines() if line.strip() and json.loads(line)["step"] <= step]
        path.write_text("".join(line + "\n" for line in keep))


# --- training -------------------------------------------------------------------------------
def train(data: str | Path, out: str | Path, model_cfg: ModelConfig | None = None,
          train_cfg: TrainConfig | None = None, *, resume: bool = False, overwrite: bool = False,
          steps: int | None = None, progress: bool = True, preset: str | None = None) -> Path:
    """Train (or ``resume``) a run in ``out``; returns the run directory."""
    rank, world, local_rank = _dist()
    out = Path(out)
    ds = load(data)
    if resume:
        saved = ckpt.read_config(out)
        if saved["dataset"]["fingerprint"] != ds.fingerprint:
            raise BenchgenError(f"--resume: {out} was trained on dataset {saved['dataset']['fingerprint'][:16]}, "
                                f"not {ds.path} ({ds.fingerprint[:16]})")
        model_cfg, train_cfg = from_dicts(saved["model"], saved["train"])
        preset = saved.get("preset")
    elif rank == 0:
        check_target(out, overwrite)
    if model_cfg is None or train_cfg is None:
        raise BenchgenError("train: give a model and train config (or --resume)")
    if steps is not None:
        train_cfg = dataclasses.replace(train_cfg, steps=steps)
    train_cfg.validate()
    if train_cfg.batch_size % world:
        raise BenchgenError(f"option 'batch_size': {train_cfg.batch_size} is not divisible by {world} ranks")
    if train_cfg.threads:
        torch.set_num_threads(train_cfg.threads)
    device = _device(train_cfg, local_rank)
    ddp = world > 1
    if ddp and not torch.distributed.is_initialized():
        torch.distributed.init_process_group("nccl" if device.type == "cuda" else "gloo")
    if device.type == "cuda":
        torch.cuda.set_device(device)

    fmt = answer_format(ds)
    if "train" not in ds.splits:
        raise BenchgenError(f"{ds.path}: no train split")
    model_cfg = fill_from_dataset(model_cfg, ds, fmt)
    train_data = load_split(ds, "train", fmt)
    evals = {s: load_split(ds, s, fmt, limit=train_cfg.eval_examples, seed=train_cfg.seed) for s in ds.splits}
    meta = {"dataset": {"path": str(ds.path.resolve()), "task": ds.task, "fingerprint": ds.fingerprint},
            "answer": fmt.to_dict(), "preset": preset, "world_size": world}

    torch.manual_seed(train_cfg.seed)
    model = LoopedTransformer(model_cfg).to(device)
    opt = torch.optim.AdamW(param_groups(model, train_cfg.weight_decay), lr=train_cfg.lr,
                            betas=(train_cfg.beta1, train_cfg.beta2))
    start = 0
    if resume:
        loaded, _ = ckpt.load_model(out, device)
        model.load_state_dict(loaded.state_dict())
        start, rng = ckpt.load_optimizer(out, opt)
        if start != ckpt.read_config(out)["step"]:
            raise BenchgenError(f"--resume: {out} holds a torn checkpoint (optimizer step {start} != config step)")
        ckpt.set_rng_state(rng)
        if rank == 0:
            _truncate_metrics(out / METRICS, start)
    elif rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        (out / METRICS).write_text("")
    lossm: nn.Module = LossModel(model, train_cfg)
    if ddp:
        lossm = nn.parallel.DistributedDataParallel(
            lossm, device_ids=[device.index] if device.type == "cuda" else None,
            find_unused_parameters=train_cfg.backprop_last > 0)

    def evaluate(step: int) -> None:
        model.eval()
        acc = {s: accuracy(model, d, model_cfg.loops, device=device) for s, d in evals.items()}
        model.train()
        with open(out / METRICS, "a") as f:
            f.write(json.dumps({"step": step, "kind": "eval", "loops": model_cfg.loops, "acc": acc}) + "\n")
        plot_curves(out)
        if bar is not None:
            bar.write(f"step {step}: " + "  ".join(f"{s}={a:.3f}" for s, a in acc.items()))

    bar = None
    if rank == 0 and progress:
        from tqdm import tqdm

        bar = tqdm(total=train_cfg.steps, initial=start, desc="train", dynamic_ncols=True)
    model.train()
    t_last, tokens_since, loss_acc, n_acc = time.perf_counter(), 0, 0.0, 0
    for step in range(start + 1, train_cfg.steps + 1):
        lr = lr_at(step, train_cfg)
        for g in opt.param_groups:
            g["lr"] = lr
        T, S = sample_loops(train_cfg, model_cfg.loops, step)
        rows = batch_indices(len(train_data), train_cfg.batch_size, step, train_cfg.seed)
        n_global = int(train_data.n_ans[rows].sum())
        mine = rows[rank * (len(rows) // world):(rank + 1) * (len(rows) // world)]
        x, y, mask = (t.to(device) for t in make_batch(train_data, mine))
        loss = lossm(x, y, mask, T, S, world / n_global)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if train_cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), train_cfg.grad_clip)
        opt.step()
        logged = loss.detach()
        if ddp:
            torch.distributed.all_reduce(logged)
            logged = logged / world
        loss_acc += float(logged)
        n_acc += 1
        tokens_since += x.numel() * world
        if rank == 0 and (step % max(1, train_cfg.log_every) == 0 or step == train_cfg.steps):
            now = time.perf_counter()
            tps = tokens_since / max(now - t_last, 1e-9)
            with open(out / METRICS, "a") as f:
                f.write(json.dumps({"step": step, "kind": "train", "loss": loss_acc / n_acc, "lr": lr,
                                    "loops": T, "tokens_per_s": round(tps, 1)}) + "\n")
            if bar is not None:
                bar.set_postfix(loss=f"{loss_acc / n_acc:.4f}", tok_s=f"{tps:,.0f}", T=T)
            t_last, tokens_since, loss_acc, n_acc = now, 0, 0.0, 0
        if bar is not None:
            bar.update(1)
        last = step == train_cfg.steps
        do_eval = last or (train_cfg.eval_every and step % train_cfg.eval_every == 0)
        do_save = do_eval or (train_cfg.save_every and step % train_cfg.save_every == 0)
        if rank == 0 and do_eval:
            evaluate(step)
        if rank == 0 and do_save:
            ckpt.save(out, model, opt, step, model_cfg, train_cfg, meta, ds.vocab)
    if bar is not None:
        bar.close()
    if ddp:
        torch.distributed.barrier()
    return out
