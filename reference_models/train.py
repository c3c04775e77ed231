"""Train a reference looped transformer on a benchgen dataset (CPU, CUDA, or torchrun DDP).

    benchgen train --data data/khop-small --preset cpu-khop-looped --out runs/looped
    torchrun --nproc_per_node 2 -m benchgen train --data DIR --preset NAME --out RUN

Loss on answer tokens only (label smoothing optional); AdamW with warmup then constant /
linear / cosine; T fixed or sampled per step (uniform, clip(Poisson), Huginn Poisson-lognormal,
or uniform in [k, k+m] for the curriculum's current hop k) or per sequence (Parcae), with
truncated backprop through the last m iterations; optional LoopFormer short-route consistency
loss (a random split of [0, 1] on the 1/T grid). Depth curriculum (LTG): train on atomics + hops
<= k; every ``curriculum_every`` steps measure k-hop accuracy on ``curriculum_split`` at a stated T
and add hop k+1 when it exceeds the threshold; events go to ``metrics.jsonl`` (kind
``curriculum``) and ``curves.png``, and resume rebuilds the current hop from them.
Every ``eval_every`` steps: exact-match accuracy on every split (teacher-forced
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

from benchgen import seeding
from benchgen.dataset import Dataset, check_target, load
from benchgen.errors import BenchgenError
from benchgen.reference_models import checkpoint as ckpt
from benchgen.reference_models.config import ModelConfig, TrainConfig
from benchgen.reference_models.data import (
    AnswerFormat,
    Encoded,
    answer_format,
    batch_indices,
    load_split,
    make_batch,
)
from benchgen.reference_models.model import LoopedTransformer, rmsnorm

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


def sample_loops(cfg: TrainConfig, default: int, step: int, hop: int | None = None) -> tuple[int, int]:
    """(T, short-route S) for ``step``: a pure function of (seed, step, curriculum hop), same on every rank."""
    r = seeding.rng(cfg.seed, "loops", step)
    lo, hi = cfg.loops_min, cfg.loops_max
    if cfg.loops_sampling == "fixed":
        T = default
    elif cfg.loops_sampling == "depth":  # T tied to the curriculum's current maximum hop k
        k = max(1, hop if hop is not None else default)
        T = int(r.integers(k, k + cfg.loops_extra + 1))
    elif cfg.loops_sampling == "row_depth":  # the batch's bound; each row's own T is row_depth_loops
        T = max(1, hop if hop is not None else default) + cfg.loops_extra
    elif cfg.loops_sampling == "uniform":
        T = int(r.integers(lo, hi + 1))
    elif cfg.loops_sampling == "poisson":
        T = int(np.clip(r.poisson(cfg.loops_mean), lo, hi))
    else:  # Huginn: tau ~ N(log(mean) - sigma^2/2, sigma), T = Poisson(e^tau) + 1
        tau = r.normal(math.log(cfg.loops_mean) - cfg.loops_sigma ** 2 / 2, cfg.loops_sigma)
        T = int(np.clip(r.poisson(math.exp(tau)) + 1, lo, hi))
    S = int(r.integers(1, T)) if T > 1 else 1
    return T, S


def sample_row_loops(cfg: TrainConfig, default: int, step: int, n: int, hop: int | None = None) -> torch.Tensor:
    """T per sequence (Parcae): ``n`` draws of the configured sampler, a pure function of (seed, step)."""
    r = seeding.rng(cfg.seed, "row-loops", step)
    lo, hi = cfg.loops_min, cfg.loops_max
    if cfg.loops_sampling == "fixed":
        T = np.full(n, default)
    elif cfg.loops_sampling == "depth":
        k = max(1, hop if hop is not None else default)
        T = r.integers(k, k + cfg.loops_extra + 1, n)
    elif cfg.loops_sampling == "uniform":
        T = r.integers(lo, hi + 1, n)
    elif cfg.loops_sampling == "poisson":
        T = np.clip(r.poisson(cfg.loops_mean, n), lo, hi)
    else:
        tau = r.normal(math.log(cfg.loops_mean) - cfg.loops_sigma ** 2 / 2, cfg.loops_sigma, n)
        T = np.clip(r.poisson(np.exp(tau)) + 1, lo, hi)
    return torch.from_numpy(T.astype(np.int64))


def row_depth_loops(cfg: TrainConfig, depth: torch.Tensor, step: int) -> torch.Tensor:
    """T per row = the row's own depth d + uniform[0, loops-extra]: a looped block that takes one hop per
    loop (p-hop's find, applied T times) is trained to stop after its row's hops, not the batch's deepest."""
    r = seeding.rng(cfg.seed, "row-depth-loops", step)
    extra = r.integers(0, cfg.loops_extra + 1, len(depth))
    return torch.from_numpy(np.maximum(depth.numpy().astype(np.int64), 1) + extra)


def short_route(cfg: TrainConfig, T: int, S: int, step: int) -> list[float]:
    """LoopFormer's short route: a random split of [0, 1] into S steps on the 1/T grid (sums to 1)."""
    r = seeding.rng(cfg.seed, "route", step)
    cuts = np.sort(r.choice(np.arange(1, T), size=S - 1, replace=False)) if S > 1 else np.zeros(0, np.int64)
    return (np.diff(np.concatenate([[0], cuts, [T]])) / T).tolist()


def eval_loops(cfg: TrainConfig, default: int, hop: int) -> int:
    """The stated T at which held-out accuracy is measured: curriculum-loops, k+m under depth sampling, else model.loops."""
    if cfg.curriculum_loops:
        return cfg.curriculum_loops
    return hop + cfg.loops_extra if cfg.loops_sampling in ("depth", "row_depth") else default


def depth_index(depth: torch.Tensor) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Rows sorted by depth (stable) and each depth's value, first sorted position and row count."""
    d = depth.numpy()
    order = np.argsort(d, kind="stable")
    values, starts, sizes = np.unique(d[order], return_index=True, return_counts=True)
    return order, values, starts, sizes


def balanced_rows(depth: torch.Tensor, max_depth: int, batch_size: int, step: int, seed: int,
                  index: tuple[np.ndarray, ...] | None = None) -> torch.Tensor:
    """Rows whose depth is uniform over the depths <= max_depth present, each a uniform row of its depth.

    ``index``: :func:`depth_index` of ``depth``, computed once by the caller instead of every step."""
    order, values, starts, sizes = depth_index(depth) if index is None else index
    keep = values <= max_depth
    if not keep.any():
        raise BenchgenError(f"curriculum: no training rows with depth <= {max_depth}")
    starts, sizes = starts[keep], sizes[keep]
    r = seeding.rng(seed, "balanced", step)
    pick = r.integers(0, len(sizes), batch_size)
    within = np.floor(r.random(batch_size) * sizes[pick]).astype(np.int64)
    return torch.from_numpy(order[starts[pick] + within].astype(np.int64))


def curriculum_hop(rows: list[dict], start: int, max_hop: int) -> int:
    """Current maximum hop from the ``curriculum`` events of metrics.jsonl (resume rebuilds state from them)."""
    hops = [int(r["max_hop"]) for r in rows if r.get("kind") == "curriculum"]
    return min(max_hop, max([start, *hops]))


class Curriculum:
    """LTG depth curriculum: atomics + hops <= k; add hop k+1 once k-hop accuracy (curriculum split) > threshold."""

    def __init__(self, cfg: TrainConfig, train_depth: torch.Tensor, held_out: Encoded | None, hop: int):
        self.cfg, self.depth, self.held_out = cfg, train_depth, held_out
        self.max_hop = int(train_depth.max()) if len(train_depth) else 1
        self.hop = min(hop, self.max_hop) if cfg.curriculum else self.max_hop
        self._active: torch.Tensor | None = None
        self._active_hop = -1
        self._index: tuple[np.ndarray, ...] | None = None  # depth_index of the train rows, for balanced batches

    def rows(self, batch_size: int, step: int) -> torch.Tensor:
        """Global batch rows of ``step``: epoch-wise over the active rows, or depth-balanced draws."""
        if self.cfg.balance_hops:
            if self._index is None:
                self._index = depth_index(self.depth)
            return balanced_rows(self.depth, self.hop, batch_size, step, self.cfg.seed, self._index)
        active = self.active()
        if active is None:
            return batch_indices(len(self.depth), batch_size, step, self.cfg.seed)
        return active[batch_indices(len(active), batch_size, step, self.cfg.seed)]

    def active(self) -> torch.Tensor | None:
        """Train rows with depth <= k (None: every row, no curriculum)."""
        if not self.cfg.curriculum or self.hop >= self.max_hop:
            return None
        if self._active_hop != self.hop:
            self._active = torch.nonzero(self.depth <= self.hop).squeeze(1)
            self._active_hop = self.hop
            if len(self._active) == 0:
                raise BenchgenError(f"curriculum: no training rows with depth <= {self.hop}")
        return self._active

    def probe(self) -> Encoded:
        """Curriculum-split rows at the current maximum hop (at most eval-examples of them)."""
        if self.held_out is None:
            raise BenchgenError(f"curriculum: the dataset has no '{self.cfg.curriculum_split}' split to measure on")
        idx = torch.nonzero(self.held_out.depth == self.hop).squeeze(1)
        if len(idx) == 0:
            raise BenchgenError(f"curriculum: split '{self.cfg.curriculum_split}' has no {self.hop}-hop rows")
        if self.cfg.eval_examples:
            idx = idx[:self.cfg.eval_examples]
        h = self.held_out
        return Encoded(h.tokens[idx], h.n_in[idx], h.n_ans[idx], h.depth[idx])

    def due(self, step: int) -> bool:
        return self.cfg.curriculum and self.hop < self.max_hop and step % self.cfg.curriculum_every == 0

    def update(self, acc: float) -> bool:
        """Advance one hop when ``acc`` (k-hop accuracy) exceeds the threshold; True if it did."""
        if acc > self.cfg.curriculum_threshold and self.hop < self.max_hop:
            self.hop += 1
            return True
        return False


# --- loss -----------------------------------------------------------------------------------
class LossModel(nn.Module):
    """Model + loss in one forward (so DDP sees one forward per step, short route included)."""

    def __init__(self, model: LoopedTransformer, cfg: TrainConfig):
        super().__init__()
        self.model, self.cfg = model, cfg

    def forward(self, x, y, mask, T: int, S: int, scale: float, row_loops: torch.Tensor | None = None,
                route: list[float] | None = None):
        cfg = self.cfg
        short = cfg.short_route_weight > 0 and T > 1
        # only the answer targets reach the loss: the model computes only what they depend on
        out = self.model(x, loops=T, backprop_last=cfg.backprop_last, return_state=short, row_loops=row_loops,
                         scored=mask)
        logits, h_long = out if short else (out, None)
        loss = F.cross_entropy(logits[mask], y[mask], reduction="sum",
                               label_smoothing=cfg.label_smoothing) * scale
        if short:  # LoopFormer: CE_long + w*CE_short + w*MSE(stopgrad(h_long), h_short)
            logits_s, h_short = self.model(x, loops=S, return_state=True, route=route, scored=mask)
            ce_s = F.cross_entropy(logits_s[mask], y[mask], reduction="sum",
                                   label_smoothing=cfg.label_smoothing) * scale
            eps = self.model.cfg.eps  # on the normed final state, as LoopFormer's code does
            mse = F.mse_loss(rmsnorm(h_short[mask], None, eps), rmsnorm(h_long.detach()[mask], None, eps))
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
    try:
        dev = torch.device(cfg.device)
    except (RuntimeError, TypeError):
        raise BenchgenError(f"option 'device': expected auto, cpu, cuda or cuda:N, got {cfg.device!r}") from None
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
    cc = [r for r in rows if r["kind"] == "curriculum" and r.get("acc") is not None]
    if cc:
        a2.plot([r["step"] for r in cc], [r["acc"] for r in cc], color="0.5", lw=0.8, ls=":",
                label=f"curriculum: k-hop {cc[-1].get('split', 'held-out')} accuracy")
    for r in rows:
        if r["kind"] == "curriculum" and r.get("advanced"):
            a2.axvline(r["step"], color="0.7", lw=0.6)
            a2.text(r["step"], 1.0, f"+{r['max_hop']}", fontsize=6, ha="center", va="bottom")
    a2.set(xlabel="step", ylabel="exact-match accuracy", ylim=(-0.02, 1.06), title="accuracy per split")
    if ev or cc:
        a2.legend(fontsize=8)
    fig.tight_layout()
    from benchgen.atomic import write_file

    try:
        write_file(run / CURVES, lambda p: fig.savefig(p, format="png", dpi=90))
    finally:
        plt.close(fig)


def _truncate_metrics(path: Path, step: int) -> None:
    """Drop metrics logged after the checkpoint ``step`` (atomic rewrite; malformed lines are an error)."""
    if path.exists():
        keep = []
        for i, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
            if not line.strip():
                continue
            try:
                row_step = json.loads(line)["step"]
                late = row_step > step
            except (ValueError, KeyError, TypeError):
                raise BenchgenError(f"--resume: {path} line {i} is not a metrics record") from None
            if not late:
                keep.append(line)
        from benchgen.atomic import write_file

        write_file(path, "".join(line + "\n" for line in keep))


# Sizes beyond these are refused up front (one line naming the limit) instead of a MemoryError or a
# run that never ends; the published presets stay far below them.
SIZE_LIMITS = {"d_model": 8192, "d_ff": 65536, "n_heads": 256, "n_prelude": 128, "n_block": 128, "n_coda": 128,
               "loops": 1024, "max_len": 65536, "vocab_size": 1_000_000, "batch_size": 65536, "loops_min": 1024,
               "loops_max": 1024, "loops_extra": 1024, "rope_random_max": 65536, "steps": 10**9,
               "eval_examples": 10**7, "threads": 4096}
MAX_PARAMS = 500_000_000


def check_sizes(model_cfg: ModelConfig, train_cfg: TrainConfig) -> None:
    """Refuse absurd model/train sizes (e.g. --set model.d_model=100000000) with the limit named."""
    for cfg in (model_cfg, train_cfg):
        for name, limit in SIZE_LIMITS.items():
            v = getattr(cfg, name, None)
            if isinstance(v, int) and v > limit:
                raise BenchgenError(f"option '{name.replace('_', '-')}': expected at most {limit:,}, got {v:,}")
    d, ff = model_cfg.d_model, model_cfg.d_ff or 4 * model_cfg.d_model
    layers = model_cfg.n_prelude + model_cfg.n_block + model_cfg.n_coda
    params = layers * (4 * d * d + 2 * d * ff) + 2 * d * (model_cfg.vocab_size or 0)
    if params > MAX_PARAMS:
        raise BenchgenError(f"model: about {params:,} parameters; the limit is {MAX_PARAMS:,} (lower d-model, "
                            "d-ff or the number of layers)")


# --- training -------------------------------------------------------------------------------
def train(data: str | Path, out: str | Path, model_cfg: ModelConfig | None = None,
          train_cfg: TrainConfig | None = None, *, resume: bool = False, overwrite: bool = False,
          steps: int | None = None, progress: bool = True, preset: str | None = None) -> Path:
    """Train (or ``resume``) a run in ``out``; returns the run directory.

    Interrupted (SIGINT, or SIGTERM turned into :class:`benchgen.atomic.Terminated`), a run this call
    created and never checkpointed is removed, so what is left is either nothing or a run that
    ``--resume`` continues from its last checkpoint (:func:`interrupted_state` says which).
    """
    trainer = Trainer.__new__(Trainer)  # exists even when __init__ is interrupted, for the cleanup below
    try:
        trainer.__init__(data, out, model_cfg, train_cfg, resume=resume, overwrite=overwrite, steps=steps,
                         preset=preset)
        return trainer.fit(progress)
    except KeyboardInterrupt:
        if getattr(trainer, "created", False) and getattr(trainer, "rank", 0) == 0 \
                and not (Path(out) / ckpt.CONFIG).exists():
            from benchgen.atomic import remove_tree

            remove_tree(Path(out))
        raise


def interrupted_state(out: str | Path, data: str | Path) -> str:
    """What an interrupted ``train`` left at ``out``: a resumable run (and the command), or nothing new."""
    out = Path(out)
    config = out / ckpt.CONFIG
    if config.exists():
        step = json.loads(config.read_text()).get("step")
        return (f"{out} resumes from its checkpoint at step {step}: benchgen train --data {data} --out {out} "
                "--resume")
    return f"nothing was left at {out}" if not out.exists() else f"{out} was left as it was"


class Trainer:
    """One training run: configs and data resolved, model and optimizer built (or resumed), then ``fit``."""

    def __init__(self, data: str | Path, out: str | Path, model_cfg: ModelConfig | None,
                 train_cfg: TrainConfig | None, *, resume: bool, overwrite: bool, steps: int | None,
                 preset: str | None):
        self.rank, self.world, local_rank = _dist()
        self.out, self.ds, self.resume = Path(out), load(data), resume
        model_cfg, train_cfg, preset = self._configs(model_cfg, train_cfg, overwrite, steps, preset)
        if train_cfg.threads:
            torch.set_num_threads(train_cfg.threads)
        self.device = _device(train_cfg, local_rank)
        self.ddp = self.world > 1
        if self.ddp and not torch.distributed.is_initialized():
            torch.distributed.init_process_group("nccl" if self.device.type == "cuda" else "gloo")
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)
        self._load_data(model_cfg, train_cfg, preset)
        self._build(overwrite)

    def _configs(self, model_cfg, train_cfg, overwrite: bool, steps: int | None, preset: str | None):
        """The run's configs: given, or the saved ones on resume (same dataset required); sizes checked."""
        ds, out = self.ds, self.out
        if self.resume:
            saved = ckpt.read_config(out)
            if saved["dataset"]["fingerprint"] != ds.fingerprint:
                raise BenchgenError(f"--resume: {out} was trained on dataset {saved['dataset']['fingerprint'][:16]}, "
                                    f"not {ds.path} ({ds.fingerprint[:16]})")
            model_cfg, train_cfg = ckpt.configs(saved, out / ckpt.CONFIG)
            preset = saved.get("preset")
        elif self.rank == 0:
            check_target(out, overwrite, kind="run")  # before any work: kind, writability, stale temp dirs
        if model_cfg is None or train_cfg is None:
            raise BenchgenError("train: give a model and train config (or --resume)")
        if steps is not None:
            train_cfg = dataclasses.replace(train_cfg, steps=steps)
        train_cfg.validate()
        check_sizes(model_cfg, train_cfg)
        if train_cfg.batch_size % self.world:
            raise BenchgenError(f"option 'batch_size': {train_cfg.batch_size} is not divisible by {self.world} ranks")
        return model_cfg, train_cfg, preset

    def _load_data(self, model_cfg: ModelConfig, train_cfg: TrainConfig, preset: str | None) -> None:
        """Encoded train / eval / curriculum splits, the model config's sizes filled from the dataset."""
        ds = self.ds
        fmt = answer_format(ds)
        if "train" not in ds.splits:
            raise BenchgenError(f"{ds.path}: no train split")
        self.model_cfg, self.train_cfg = fill_from_dataset(model_cfg, ds, fmt), train_cfg
        self.train_data = load_split(ds, "train", fmt)
        self.evals = {s: load_split(ds, s, fmt, limit=train_cfg.eval_examples, seed=train_cfg.seed)
                      for s in ds.splits}
        self.held_out = None
        if train_cfg.curriculum:
            if train_cfg.curriculum_split not in ds.splits:
                raise BenchgenError(f"curriculum: {ds.path} has no '{train_cfg.curriculum_split}' split to measure "
                                    f"on (splits: {', '.join(ds.splits)})")
            self.held_out = load_split(ds, train_cfg.curriculum_split, fmt)
        self.meta = {"dataset": {"path": str(ds.path.resolve()), "task": ds.task, "fingerprint": ds.fingerprint},
                     "answer": fmt.to_dict(), "preset": preset, "world_size": self.world}

    def _build(self, overwrite: bool) -> None:
        """Model and optimizer (restored on resume), the run directory, the curriculum's current hop."""
        cfg, out = self.train_cfg, self.out
        torch.manual_seed(cfg.seed)
        self.model = LoopedTransformer(self.model_cfg).to(self.device)
        self.opt = torch.optim.AdamW(param_groups(self.model, cfg.weight_decay), lr=cfg.lr,
                                     betas=(cfg.beta1, cfg.beta2))
        self.start = 0
        if self.resume:
            loaded, _ = ckpt.load_model(out, self.device)
            self.model.load_state_dict(loaded.state_dict())
            self.start, rng = ckpt.load_optimizer(out, self.opt)
            if self.start != ckpt.read_config(out)["step"]:
                raise BenchgenError(f"--resume: {out} holds a torn checkpoint (optimizer step {self.start} != "
                                    "config step)")
            ckpt.set_rng_state(rng)
            if self.rank == 0:
                _truncate_metrics(out / METRICS, self.start)
        elif self.rank == 0:
            from benchgen.atomic import atomic_dir

            # a fresh, marked run replaces the old one in one move: a kill before the first checkpoint
            # leaves either the old run or this empty new one, never a mix of both
            with atomic_dir(out, overwrite, kind="run") as tmp:
                (tmp / METRICS).write_text("")
            self.created = True  # an interrupt before the first checkpoint removes it (train())
        past = [json.loads(x) for x in (out / METRICS).read_text().splitlines() if x.strip()] if self.resume else []
        self.cur = cur = Curriculum(cfg, self.train_data.depth, self.held_out, cfg.curriculum_start)
        cur.hop = curriculum_hop(past, cur.hop, cur.max_hop)
        if self.rank == 0 and cfg.curriculum and not self.resume:
            self.record({"step": 0, "kind": "curriculum", "hop": None, "acc": None, "advanced": False,
                         "max_hop": cur.hop, "deepest_hop": cur.max_hop})
        self.lossm: nn.Module = LossModel(self.model, cfg)
        if self.ddp:
            self.lossm = nn.parallel.DistributedDataParallel(
                self.lossm, device_ids=[self.device.index] if self.device.type == "cuda" else None,
                find_unused_parameters=cfg.backprop_last > 0)
        self.bar = None

    def record(self, row: dict) -> None:
        """Append one event to metrics.jsonl."""
        with open(self.out / METRICS, "a") as f:
            f.write(json.dumps(row) + "\n")

    def eval_T(self) -> int:
        return eval_loops(self.train_cfg, self.model_cfg.loops, self.cur.hop)

    def stamp(self) -> None:
        """Record what a reader of the checkpoint needs: the trained T and the curriculum depth reached."""
        cfg, cur = self.train_cfg, self.cur
        self.meta["trained_loops"] = self.eval_T()
        self.meta["loop_sampling"] = "fixed" if cfg.loops_sampling == "fixed" else "sampled"
        self.meta["curriculum"] = {"max_hop": cur.hop, "deepest_hop": cur.max_hop} if cfg.curriculum else None

    def evaluate(self, step: int) -> None:
        """Exact-match accuracy on every split at the stated T, into metrics.jsonl and curves.png."""
        self.model.eval()
        T_eval = self.eval_T()
        acc = {s: accuracy(self.model, d, T_eval, device=self.device) for s, d in self.evals.items()}
        self.model.train()
        self.record({"step": step, "kind": "eval", "loops": T_eval, "max_hop": self.cur.hop, "acc": acc})
        plot_curves(self.out)
        if self.bar is not None:
            self.bar.write(f"step {step}: " + "  ".join(f"{s}={a:.3f}" for s, a in acc.items()))

    def check_curriculum(self, step: int) -> None:
        """Measure k-hop held-out accuracy at the stated T; advance (same decision on every rank)."""
        cur, cfg = self.cur, self.train_cfg
        advanced = torch.zeros(1, dtype=torch.int64, device=self.device)  # nccl broadcasts device tensors
        if self.rank == 0:
            self.model.eval()
            T_c = self.eval_T()
            a = accuracy(self.model, cur.probe(), T_c, device=self.device)
            self.model.train()
            hop = cur.hop
            advanced[0] = int(cur.update(a))
            self.record({"step": step, "kind": "curriculum", "hop": hop, "acc": a, "loops": T_c,
                         "split": cfg.curriculum_split, "advanced": bool(advanced[0]), "max_hop": cur.hop,
                         "deepest_hop": cur.max_hop})
            if advanced[0] and self.bar is not None:
                self.bar.write(f"step {step}: {hop}-hop {cfg.curriculum_split} acc {a:.3f} at T={T_c} "
                               f"-> training on hops <= {cur.hop}")
        if self.ddp:
            torch.distributed.broadcast(advanced, 0)
            if self.rank != 0 and advanced[0]:
                cur.hop += 1

    def step(self, step: int) -> tuple[torch.Tensor, int, int, float]:
        """One optimizer step: this rank's slice of the global batch at the step's T. Returns the loss
        (averaged over ranks), T, the tokens processed (all ranks) and the learning rate."""
        cfg, rank, world = self.train_cfg, self.rank, self.world
        lr = lr_at(step, cfg)
        for g in self.opt.param_groups:
            g["lr"] = lr
        T, S = sample_loops(cfg, self.model_cfg.loops, step, self.cur.hop)
        rows = self.cur.rows(cfg.batch_size, step)
        row_T = None
        if cfg.loops_sampling == "row_depth":
            row_T = row_depth_loops(cfg, self.cur.depth[rows], step)
            T = int(row_T.max())
        elif cfg.loops_per_row:
            row_T = sample_row_loops(cfg, self.model_cfg.loops, step, cfg.batch_size, self.cur.hop)
            T = int(row_T.max())
        route = short_route(cfg, T, S, step) if cfg.short_route_weight > 0 and T > 1 else None
        n_global = int(self.train_data.n_ans[rows].sum())
        mine = rows[rank * (len(rows) // world):(rank + 1) * (len(rows) // world)]
        x, y, mask = (t.to(self.device) for t in make_batch(self.train_data, mine))
        share = cfg.batch_size // world
        mine_T = None if row_T is None else row_T[rank * share:(rank + 1) * share].to(self.device)
        loss = self.lossm(x, y, mask, T, S, world / n_global, mine_T, route)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
        self.opt.step()
        logged = loss.detach()
        if self.ddp:
            torch.distributed.all_reduce(logged)
            logged = logged / world
        return logged, T, x.numel() * world, lr

    def fit(self, progress: bool = True) -> Path:
        """Run the remaining steps: log, curriculum checks, evaluations and checkpoints on schedule."""
        cfg = self.train_cfg
        if self.rank == 0 and progress:
            from tqdm import tqdm

            self.bar = tqdm(total=cfg.steps, initial=self.start, desc="train", dynamic_ncols=True)
        self.model.train()
        log = ProgressLog(cfg.steps, self.start) if self.rank == 0 and self.bar is None else None
        t_last, tokens_since, loss_acc, n_acc = time.perf_counter(), 0, 0.0, 0
        for step in range(self.start + 1, cfg.steps + 1):
            logged, T, tokens, lr = self.step(step)
            loss_acc += float(logged)
            n_acc += 1
            tokens_since += tokens
            if self.rank == 0 and (step % max(1, cfg.log_every) == 0 or step == cfg.steps):
                now = time.perf_counter()
                tps = tokens_since / max(now - t_last, 1e-9)
                self.record({"step": step, "kind": "train", "loss": loss_acc / n_acc, "lr": lr, "loops": T,
                             "tokens_per_s": round(tps, 1)})
                if self.bar is not None:
                    self.bar.set_postfix(loss=f"{loss_acc / n_acc:.4f}", tok_s=f"{tps:,.0f}", T=T)
                if log is not None:
                    log.loss, log.tokens_per_s = loss_acc / n_acc, tps
                t_last, tokens_since, loss_acc, n_acc = now, 0, 0.0, 0
            if self.bar is not None:
                self.bar.update(1)
            elif log is not None:
                log.step(step, T, self.cur.hop if cfg.curriculum else None)
            self.scheduled(step)
        if self.bar is not None:
            self.bar.close()
        if self.ddp:
            torch.distributed.barrier()
        return self.out

    def scheduled(self, step: int) -> None:
        """What is due after ``step``: a curriculum check, an evaluation, a checkpoint."""
        cfg = self.train_cfg
        if self.cur.due(step):
            self.check_curriculum(step)
        last = step == cfg.steps
        do_eval = last or (cfg.eval_every and step % cfg.eval_every == 0)
        do_save = do_eval or (cfg.save_every and step % cfg.save_every == 0)
        if self.rank == 0 and do_eval:
            self.evaluate(step)
        if self.rank == 0 and do_save:
            self.stamp()
            ckpt.save(self.out, self.model, self.opt, step, self.model_cfg, self.train_cfg, self.meta,
                      self.ds.vocab)


class ProgressLog:
    """Plain progress lines on stderr when no bar is drawn (stderr not a terminal: a batch job's log):
    one every ``EVERY`` of the steps and every ``SECONDS`` at most, and the last step, flushed."""

    EVERY, SECONDS = 0.05, 60.0

    def __init__(self, steps: int, start: int):
        self.steps, self.start = steps, start
        self.every = max(1, math.ceil(steps * self.EVERY))
        self.t0 = self.t_last = time.perf_counter()
        self.loss: float | None = None
        self.tokens_per_s: float | None = None

    def step(self, step: int, loops: int, hop: int | None) -> None:
        """Print the line for ``step`` when one is due."""
        now = time.perf_counter()
        if step % self.every and step != self.steps and now - self.t_last < self.SECONDS:
            return
        self.t_last = now
        done = step - self.start
        eta = (now - self.t0) / done * (self.steps - step) if done else 0.0
        parts = [f"train: step {step}/{self.steps} ({100 * step / max(self.steps, 1):.0f}%)",
                 "loss " + ("–" if self.loss is None else f"{self.loss:.4f}"), f"T {loops}"]
        if hop is not None:
            parts.append(f"curriculum hop {hop}")
        if self.tokens_per_s is not None:
            parts.append(f"{self.tokens_per_s:,.0f} tok/s")
        parts.append(f"ETA {int(eta // 60)}m{int(eta % 60):02d}s")
        import sys

        print("  ".join(parts), file=sys.stderr, flush=True)
