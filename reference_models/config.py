"""Configs of the reference looped transformers (model + training) and the paper/CPU presets.

A preset is a :class:`benchgen.config.Preset` (as the data presets are) whose config is
``{"model": {...}, "train": {...}}``; ``resolve`` layers defaults <- preset or a JSON/YAML config
file <- ``--set section.field=value`` overrides (the syntax ``generate --set`` uses), coerced and
validated by ``benchgen.config.build_config``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from benchgen.config import Preset, build_config, parse_sets, read_config
from benchgen.errors import ConfigError


@dataclass
class ModelConfig:
    """Shape of a LoopedTransformer: prelude -> k-layer block looped T times -> coda -> norm -> head."""

    vocab_size: int = field(default=0, metadata={"help": "token count (0: taken from the dataset)"})
    max_len: int = field(default=0, metadata={"help": "longest sequence (0: taken from the dataset)"})
    d_model: int = field(default=128, metadata={"help": "hidden size"})
    n_heads: int = field(default=4, metadata={"help": "attention heads"})
    d_ff: int = field(default=0, metadata={"help": "MLP hidden size (0: 4 * d_model)"})
    n_prelude: int = field(default=0, metadata={"help": "layers before the loop (run once)"})
    n_block: int = field(default=2, metadata={"help": "k: layers in the looped block"})
    n_coda: int = field(default=0, metadata={"help": "layers after the loop (run once)"})
    loops: int = field(default=1, metadata={"help": "T: default iterations of the block (T=1: vanilla)"})
    injection: Literal["none", "add", "concat", "parcae"] = field(default="none", metadata={
        "help": "input injection each iteration: none; add (h+e); concat (Huginn adapter W[h;e]); "
                "parcae (exp(-dA)*h + d*(Be))"})
    conditioning: Literal["none", "loopformer"] = field(default="none", metadata={
        "help": "loopformer: time/step-size embedding modulates norms (1+s) and gates residuals"})
    positions: Literal["none", "learned", "rotary"] = field(default="learned", metadata={
        "help": "position information"})
    rope_random_max: int = field(default=0, metadata={
        "help": "rotary only: while training, each row's positions are a sorted random sample of [0, M) "
                "(randomised positional encodings, Ruoss et al. 2023), so deeper queries meet no unseen "
                "offsets; applies to batches shorter than M; evaluation uses 0..L-1 (0: off)"})
    state_init: Literal["auto", "noise"] = field(default="auto", metadata={
        "help": "loop state h_0: auto (the embeddings without injection, zeros with it) or noise "
                "(truncated normal, Parcae/Huginn)"})
    exit_proj: bool = field(default=False, metadata={
        "help": "a linear map C on the loop state before the coda (Parcae), identity-initialised"})
    zero_init_out: bool = field(default=False, metadata={
        "help": "zero-initialise attention/MLP output projections (each block starts as identity)"})
    dropout: float = field(default=0.0, metadata={"help": "dropout on attention/MLP outputs"})
    tie_embeddings: bool = field(default=False, metadata={"help": "share token embedding and head"})
    kernel: str = field(default="auto", metadata={
        "help": "residual-junction backend: auto, triton or torch"})
    eps: float = field(default=1e-6, metadata={"help": "RMSNorm epsilon"})

    def validate(self) -> None:
        if self.d_model <= 0 or self.n_heads <= 0 or self.d_model % self.n_heads:
            raise ConfigError("d_model", f"must be a positive multiple of n_heads ({self.n_heads}), got {self.d_model}")
        if self.rope_random_max < 0 or (self.rope_random_max and self.positions != "rotary"):
            raise ConfigError("rope_random_max", "expected 0 (off) or a span > 0 with positions=rotary")
        if self.positions == "rotary" and (self.d_model // self.n_heads) % 2:
            raise ConfigError("n_heads", "rotary positions need an even head size")
        if self.n_block < 1:
            raise ConfigError("n_block", f"expected at least 1 layer in the looped block, got {self.n_block}")
        if self.loops < 1:
            raise ConfigError("loops", f"expected at least 1, got {self.loops}")
        for name in ("n_prelude", "n_coda", "d_ff", "vocab_size", "max_len"):
            if getattr(self, name) < 0:
                raise ConfigError(name, f"expected >= 0, got {getattr(self, name)}")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError("dropout", f"expected a value in [0, 1), got {self.dropout}")
        if self.kernel not in ("auto", "triton", "torch"):
            raise ConfigError("kernel", f"expected auto, triton or torch, got {self.kernel!r}")

    @property
    def ff(self) -> int:
        return self.d_ff or 4 * self.d_model


@dataclass
class TrainConfig:
    """Optimisation, loop-count sampling, evaluation and checkpoint cadence."""

    steps: int = field(default=2000, metadata={"help": "optimizer steps"})
    batch_size: int = field(default=64, metadata={"help": "global batch (split over DDP ranks)"})
    lr: float = field(default=1e-3, metadata={"help": "peak learning rate (AdamW)"})
    weight_decay: float = field(default=0.1, metadata={"help": "AdamW weight decay (matrices only)"})
    beta1: float = field(default=0.9, metadata={"help": "AdamW beta1"})
    beta2: float = field(default=0.98, metadata={"help": "AdamW beta2"})
    warmup_steps: int = field(default=100, metadata={"help": "linear warmup steps"})
    schedule: Literal["constant", "linear", "cosine"] = field(default="constant", metadata={
        "help": "learning-rate decay after warmup"})
    min_lr_ratio: float = field(default=0.1, metadata={"help": "final lr / peak lr for linear/cosine"})
    grad_clip: float = field(default=1.0, metadata={"help": "global grad-norm clip (0: off)"})
    label_smoothing: float = field(default=0.0, metadata={"help": "cross-entropy label smoothing"})
    loops_sampling: Literal["fixed", "uniform", "poisson", "poisson_lognormal", "depth", "row_depth"] = field(
        default="fixed", metadata={
            "help": "T per step: fixed (model.loops), uniform[lo,hi], clip(Poisson(mean),lo,hi), "
                    "Huginn Poisson-lognormal clipped to [lo,hi], depth: uniform[k, k+loops-extra] for "
                    "the curriculum's current maximum hop k; row_depth: each row its own depth d + "
                    "uniform[0, loops-extra] (rows stop at their own T)"})
    loops_extra: int = field(default=3, metadata={
        "help": "m for loops-sampling=depth (T in [k, k+m]) and row_depth (T in [d, d+m])"})
    loops_min: int = field(default=1, metadata={"help": "lo for sampled T"})
    loops_max: int = field(default=8, metadata={"help": "hi for sampled T"})
    loops_mean: float = field(default=4.0, metadata={"help": "mean of the Poisson / Poisson-lognormal T"})
    loops_sigma: float = field(default=0.5, metadata={"help": "sigma of the log-normal rate (Huginn)"})
    loops_per_row: bool = field(default=False, metadata={
        "help": "sample T per sequence (Parcae) instead of one T per batch; rows stop at their own T"})
    backprop_last: int = field(default=0, metadata={
        "help": "truncated backprop: gradients through the last m iterations only (0: all)"})
    short_route_weight: float = field(default=0.0, metadata={
        "help": "LoopFormer consistency: w*CE(short) + w*MSE(sg(h_long), h_short) (0: off)"})
    curriculum: bool = field(default=False, metadata={
        "help": "depth curriculum (LTG): train on atomics + hops <= k, add hop k+1 once k-hop held-out "
                "accuracy exceeds the threshold, up to the deepest training hop"})
    balance_hops: bool = field(default=False, metadata={
        "help": "each batch row draws its depth uniformly over the active depths (atomics count as depth 1), "
                "then a uniform row of that depth (LTG-style per-hop sampling; default: uniform over rows)"})
    curriculum_start: int = field(default=2, metadata={"help": "k0: deepest hop trained from step 1"})
    curriculum_every: int = field(default=100, metadata={"help": "check the curriculum every N steps"})
    curriculum_threshold: float = field(default=0.95, metadata={
        "help": "advance when k-hop held-out accuracy is above this (LTG: 0.95)"})
    curriculum_split: str = field(default="valid", metadata={"help": "held-out split the curriculum measures"})
    curriculum_loops: int = field(default=0, metadata={
        "help": "T at which the curriculum measures (0: the top of the current training T range)"})
    eval_every: int = field(default=200, metadata={"help": "evaluate every N steps (0: only at the end)"})
    eval_examples: int = field(default=1000, metadata={"help": "at most this many examples per split"})
    save_every: int = field(default=0, metadata={"help": "checkpoint every N steps (0: at evals and the end)"})
    log_every: int = field(default=20, metadata={"help": "write a metrics line every N steps"})
    seed: int = field(default=0, metadata={"help": "seed for init, batches, loop sampling"})
    device: str = field(default="auto", metadata={"help": "auto, cpu, cuda or cuda:N"})
    threads: int = field(default=0, metadata={"help": "torch CPU threads (0: torch default)"})

    def validate(self) -> None:
        for name in ("steps", "batch_size"):
            if getattr(self, name) < 1:
                raise ConfigError(name, f"expected >= 1, got {getattr(self, name)}")
        if self.lr <= 0:
            raise ConfigError("lr", f"expected > 0, got {self.lr}")
        if not 1 <= self.loops_min <= self.loops_max:
            raise ConfigError("loops_min", f"need 1 <= loops-min <= loops-max, got {self.loops_min}, {self.loops_max}")
        if self.backprop_last < 0:
            raise ConfigError("backprop_last", f"expected >= 0, got {self.backprop_last}")
        if self.loops_extra < 0:
            raise ConfigError("loops_extra", f"expected >= 0, got {self.loops_extra}")
        if self.loops_sampling == "depth" and not self.curriculum:
            raise ConfigError("loops_sampling", "depth sampling ties T to the curriculum: set curriculum=true")
        if self.curriculum_start < 1 or self.curriculum_every < 1 or self.curriculum_loops < 0:
            raise ConfigError("curriculum_start", "expected curriculum-start >= 1, curriculum-every >= 1, "
                                                  "curriculum-loops >= 0")
        if not 0.0 < self.curriculum_threshold <= 1.0:
            raise ConfigError("curriculum_threshold", f"expected a value in (0, 1], got {self.curriculum_threshold}")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ConfigError("label_smoothing", f"expected a value in [0, 1), got {self.label_smoothing}")
        for name in ("warmup_steps", "eval_every", "save_every", "log_every", "threads", "eval_examples"):
            if getattr(self, name) < 0:
                raise ConfigError(name, f"expected >= 0, got {getattr(self, name)}")


# GPT-2 as LTG's / Grokked's code runs it: dropout 0.1, tied embeddings, no gradient clipping.
# Kept different (one reason each): RMSNorm(1+s) instead of LayerNorm and bias-free linears, because every
# residual junction goes through the one fused add+norm kernel; beta2 0.999 is the HF/PyTorch AdamW default.
_GPT2_TRAIN = {"grad_clip": 0.0, "beta2": 0.999, "warmup_steps": 2000, "schedule": "constant"}
_EPOCH_313K = 313_600 / 128  # steps per epoch of grokked-composition train (40,000 atomics + 273,600) at batch 128


def _gpt2(layers: int, loops: int, **kw: Any) -> dict:
    return {"d_model": 768, "n_heads": 12, "n_block": layers, "loops": loops, "dropout": 0.1,
            "tie_embeddings": True, **kw}


def _ltg_sys(r: int) -> dict:
    epochs = {1: 7000, 2: 7000, 4: 2000, 8: 2000}[r]  # OOD appears after ~2k (R=4) / ~7k (R=2) epochs
    return {"description": f"Loop-Think-Generalize systematic: GPT-2 blocks d=768, 4 layers looped R={r}, "
                           "learned positions, dropout 0.1, tied embeddings, no clipping, lr 1e-4, wd 0.1, "
                           f"label smoothing 0.1, batch 128, {epochs:,} epochs of 313,600 rows "
                           "(data: khop --preset grokked-composition)",
            "model": _gpt2(4, r, positions="learned"),
            "train": {**_GPT2_TRAIN, "lr": 1e-4, "weight_decay": 0.1, "label_smoothing": 0.1, "batch_size": 128,
                      "steps": int(round(epochs * _EPOCH_313K)), "eval_every": 25_000}}


def _ltg_depth(loops: int, sampled: bool) -> dict:
    what = "dynamic R = clip(Poisson(4), 2, 8)" if sampled else f"fixed R={loops}"
    train = {**_GPT2_TRAIN, "lr": 1e-4, "weight_decay": 0.01, "batch_size": 128, "steps": 1_000_000,
             "eval_every": 2000, "curriculum": True, "curriculum_start": 2, "curriculum_every": 2000,
             "curriculum_threshold": 0.95, "curriculum_split": "valid", "curriculum_loops": loops}
    if sampled:
        train.update(loops_sampling="poisson", loops_mean=4.0, loops_min=2, loops_max=8)
    return {"description": f"Loop-Think-Generalize depth extrapolation: d=768, 4 layers, {what}, no positions, "
                           "zero-init output projections, dropout 0.1, tied embeddings, no clipping, lr 1e-4, "
                           "wd 0.01, batch 128; curriculum from 2-hop, add k+1 when k-hop held-out accuracy > "
                           "0.95 (data: khop --preset ltg-depth)",
            # steps: an upper bound; the curriculum, not a step count, decides the depth reached
            "model": _gpt2(4, loops, positions="none", zero_init_out=True),
            "train": train}


def _saunshi_add(k: int, loops: int) -> dict:
    return {"description": f"Saunshi et al. n-ary addition {k}x{loops} (k-layer block looped L times, "
                           "no injection), d=256, 8 heads, FFN 1024",
            "model": {"d_model": 256, "n_heads": 8, "d_ff": 1024, "n_block": k, "loops": loops,
                      "positions": "learned"},
            "train": {"lr": 1e-3, "weight_decay": 0.01, "batch_size": 256, "warmup_steps": 1000,
                      "schedule": "cosine", "steps": 200_000, "eval_every": 2000}}


_CPU_TRAIN = {"lr": 2e-3, "weight_decay": 0.1, "batch_size": 128, "warmup_steps": 100, "schedule": "cosine",
              "min_lr_ratio": 0.1, "eval_every": 250, "eval_examples": 400, "log_every": 25, "threads": 1}

# the CPU depth models: one layer (d=96, rotary, zero-initialised output projections), run once (T=1).
# Randomised rotary positions over [0, 16) while training (Ruoss et al. 2023): a per-position probe showed the
# looped model computes hop j at token r_j in loop j and failed exactly at positions no training query reaches
# (7, 8, ...); with them every offset a 12-hop query uses is seen in training (RESULTS.md, ablation).
_CPU_DEPTH_MODEL = {"d_model": 96, "n_heads": 4, "n_block": 1, "loops": 1, "positions": "rotary", "zero_init_out": True,
                    "rope_random_max": 16}

# CPU depth runs (khop --preset khop-depth-small). Kept different from LTG, one reason each:
# threshold 0.9, not 0.95, so hops 2-6 fit in ~4k CPU steps; the gate reads the k-hop *train* rows, not a
# held-out split, because on a 32-entity graph the shallow hops are small enough to memorise (212 2-hop rows)
# and a held-out 2-hop gate did not open on CPU (held-out 2-hop 0.03-0.53 after 3k steps), while composition
# emerges once the deep hops (7.9k-20k rows each) cannot be memorised; held-out test_id / test_depth judge it.
# Cosine decay to 0.1x lr by the last step (LTG trains at a constant lr for ~1M steps; a 4k-step CPU run
# needs the decay to settle the deepest hops: +2/+4 accuracy on 3 seeds, RESULTS.md ablation).
_CPU_DEPTH_TRAIN = {"lr": 1e-3, "weight_decay": 0.01, "batch_size": 128, "warmup_steps": 100,
                    "schedule": "cosine", "min_lr_ratio": 0.1, "steps": 4000, "grad_clip": 1.0, "eval_every": 500,
                    "eval_examples": 200, "log_every": 25, "threads": 1, "curriculum": True,
                    "curriculum_start": 2, "curriculum_every": 100, "curriculum_threshold": 0.9,
                    "curriculum_split": "train", "balance_hops": True}

# CPU p-hop models (Saunshi et al.'s induction: d=128, 8 heads, rotary, lr 1e-3, batch 256, 200k steps). Kept
# different, one reason each: d=64 / 4 heads and batch 64 so 6,000 steps fit ~17 min on one core; one prelude layer so
# the previous-letter features are computed once and the looped layer only hops (find1 is one fixed attention
# pattern per loop); additive injection keeps those features in every loop; the hop curriculum, hop-balanced
# batches and the train-split gate are the CPU depth preset's (the curriculum needs contiguous hops 1..8); it
# starts at p=1 alone, because from p 1-2 together the model took the last-letter shortcut and no induction
# head formed in 1,575 steps (reference_models/RESULTS.md).
_CPU_PHOP_MODEL = {"d_model": 64, "n_heads": 4, "n_prelude": 1, "n_block": 1, "loops": 1, "positions": "rotary",
                   "zero_init_out": True}
# (constant lr: the p-hop runs were measured with it, before the depth preset took the cosine decay)
_CPU_PHOP_TRAIN = {**_CPU_DEPTH_TRAIN, "batch_size": 64, "steps": 6000, "curriculum_start": 1, "schedule": "constant"}

# CPU addition, Saunshi et al.'s k x L comparison (paper: d=256, 8 heads, FFN 1024, learned positions, lr 1e-3,
# wd 0.01, batch 256, 1000 warmup, cosine, 200k steps). Kept different, one reason each: d=64 / 4 heads, batch
# 128, 100 warmup and 3,000 steps so a run fits ~15 min on one core. Learned positions as in the paper: with
# rotary positions the first answer digit (the units digit, answers reversed) stayed at chance (teacher-forced
# 0.10-0.11 on train rows for 2x4, 2x1 and 8x1 after 3,000 steps, and for 2x1 at lr 3e-3 after 6,000) while
# learned positions reach 0.46 after 3,000 (reference_models/RESULTS.md); test_depth prompts (5-6 operands)
# are longer than every training prompt, so its positions are untrained: test_depth is not judged here.
_CPU_ADD_MODEL = {"d_model": 64, "n_heads": 4, "positions": "learned"}
_CPU_ADD_TRAIN = {**_CPU_TRAIN, "lr": 1e-3, "weight_decay": 0.01, "batch_size": 128, "steps": 3000,
                  "eval_examples": 300}

_SPECS: dict[str, dict] = {
    **{f"ltg-systematic-r{r}": _ltg_sys(r) for r in (1, 2, 4, 8)},
    "ltg-depth": _ltg_depth(4, sampled=True),
    **{f"ltg-depth-r{r}": _ltg_depth(r, sampled=False) for r in (6, 8)},
    "grokked-composition": {
        "description": "Grokked Transformers composition: GPT-2 d=768, 12 heads, 8 layers (T=1), learned "
                       "positions, dropout 0.1, tied embeddings, lr 1e-4, wd 0.01, batch 512, 2000 warmup then "
                       "constant, 1.5M steps (data: khop --preset grokked-composition)",
        # wd 0.01 is the public code's; the paper's main runs may use 0.1 (PAPERS.md marks it unverified)
        "model": _gpt2(8, 1, positions="learned"),
        "train": {**_GPT2_TRAIN, "lr": 1e-4, "weight_decay": 0.01, "batch_size": 512, "steps": 1_500_000,
                  "eval_every": 10_000}},
    **{f"saunshi-addition-{k}x{L}": _saunshi_add(k, L) for k, L in ((1, 12), (2, 6), (12, 1), (2, 1), (1, 1))},
    **{f"saunshi-induction-{k}x{L}": {
        "description": f"Saunshi et al. p-hop induction {k}x{L}: d=128, 8 heads, rotary positions",
        "model": {"d_model": 128, "n_heads": 8, "n_block": k, "loops": L, "positions": "rotary"},
        "train": {"lr": 1e-3, "weight_decay": 0.01, "batch_size": 256, "warmup_steps": 1000,
                  "schedule": "cosine", "steps": 200_000, "eval_every": 2000}}
       for k, L in ((1, 6), (2, 3), (6, 1))},
    "loopformer": {
        "description": "LoopFormer: time/step-size modulated norms and zero-init gates, 8-step long route "
                       "(dt = 1/8) + a short route that splits [0, 1] at random into steps on the 1/8 grid, "
                       "loss CE_long + 0.1 CE_short + 0.1 MSE(sg(normed h_long), normed h_short)",
        # kept different: the norms keep a learnable (1+s) scale (LoopFormer's RMSNorm has no affine), which
        # the fused junction kernel needs; s starts at 0, so the initial model is the paper's
        "model": {"d_model": 512, "n_heads": 8, "n_block": 2, "loops": 8, "conditioning": "loopformer",
                  "positions": "rotary"},
        "train": {"lr": 3e-4, "batch_size": 128, "warmup_steps": 2000, "schedule": "cosine",
                  "steps": 200_000, "short_route_weight": 0.1, "eval_every": 2000}},
    "parcae": {
        "description": "Parcae: prelude 2 -> RMSNorm(e) -> looped block 2 with stable diagonal injection "
                       "(A=1, B=I, decay exp(-dA) = sqrt(1/5) at init) from a truncated-normal state -> linear C "
                       "-> coda 2; T = max(1, Poisson(8)) per sequence, gradients through each row's last 4",
        # kept different: T is capped at 24 so one batch's longest row bounds memory (P(Poisson(8) > 24) < 1e-5)
        "model": {"d_model": 512, "n_heads": 8, "n_prelude": 2, "n_block": 2, "n_coda": 2, "loops": 8,
                  "injection": "parcae", "positions": "rotary", "state_init": "noise", "exit_proj": True},
        "train": {"lr": 3e-4, "batch_size": 128, "warmup_steps": 2000, "schedule": "cosine",
                  "steps": 200_000, "loops_sampling": "poisson", "loops_mean": 8.0, "loops_per_row": True,
                  "loops_min": 1, "loops_max": 24, "backprop_last": 4, "eval_every": 2000}},
    # --- small presets: ~8 minutes on one CPU thread each ------------------------------------
    "cpu-khop-looped": {
        "description": "CPU: 2-layer block looped, T ~ clip(Poisson(4), 2, 6) while training (eval T=4), "
                       "d=64, rotary positions (data: see reference_models/RESULTS.md)",
        "model": {"d_model": 64, "n_heads": 4, "n_block": 2, "loops": 4, "positions": "rotary",
                  "zero_init_out": True},
        "train": {**_CPU_TRAIN, "steps": 3000, "loops_sampling": "poisson", "loops_mean": 4.0,
                  "loops_min": 2, "loops_max": 6}},
    "cpu-khop-vanilla": {
        "description": "CPU: the same 2 layers (same parameters) run once, T=1",
        "model": {"d_model": 64, "n_heads": 4, "n_block": 2, "loops": 1, "positions": "rotary",
                  "zero_init_out": True},
        "train": {**_CPU_TRAIN, "steps": 3000}},
    # --- CPU depth extrapolation (data: khop --preset khop-depth-small); ~10 min on one core each ---
    "cpu-depth-looped": {
        "description": "CPU depth extrapolation: 1-layer block d=96, 4 heads, rotary positions randomised over "
                       "[0, 16) in training, zero-init outputs, input injection (add); curriculum from 2-hop (add "
                       "k+1 when k-hop train accuracy > 0.9), hop-balanced batches, T ~ uniform[k, k+6] for the "
                       "current max hop k, cosine lr decay; 4,000 steps (data: khop-depth-small)",
        # add injection and T up to k+6 (LTG: none, T fixed or Poisson): both measured to help only together
        # with randomised positions and the decay (RESULTS.md ablation)
        "model": {**_CPU_DEPTH_MODEL, "loops": 9, "injection": "add"},
        "train": {**_CPU_DEPTH_TRAIN, "loops_sampling": "depth", "loops_extra": 6}},
    "cpu-depth-vanilla": {
        "description": "CPU depth extrapolation baseline: the same 1 layer (same parameters) run once, T=1, "
                       "same positions, schedule and curriculum",
        "model": {**_CPU_DEPTH_MODEL},
        "train": {**_CPU_DEPTH_TRAIN}},
    "cpu-depth-isoflop": {
        "description": "CPU depth extrapolation iso-FLOP baseline: 9 distinct layers (the looped model's "
                       "mean T at the last curriculum stage, uniform[6, 12]) run once, same positions, schedule and "
                       "curriculum (LTG's iso-FLOP vanilla)",
        "model": {**_CPU_DEPTH_MODEL, "n_block": 9},
        "train": {**_CPU_DEPTH_TRAIN}},
    # --- CPU p-hop (data: induction at p 1-8, lengths 64/96; the command is in RESULTS.md) ----------
    "cpu-phop-looped": {
        "description": "CPU p-hop: 1 prelude layer (each position's previous letter, once) + 1 layer looped "
                       "with additive injection, d=64, 4 heads, rotary; hop curriculum from p=1 (add p+1 when "
                       "p-hop train accuracy > 0.9), hop-balanced batches, each row looped T = its own p; "
                       "6,000 steps (evaluate at T = p)",
        # T = the row's p (row_depth), not one T per batch: one loop applies find once, so a row must stop after
        # its own hops; with T ~ [k, k+3] per batch no seed passed p=2 (RESULTS.md, p-hop)
        "model": {**_CPU_PHOP_MODEL, "loops": 11, "injection": "add"},
        "train": {**_CPU_PHOP_TRAIN, "loops_sampling": "row_depth", "loops_extra": 0}},
    "cpu-phop-vanilla": {
        "description": "CPU p-hop baseline: the same 2 layers (same parameters) run once, T=1, same curriculum",
        "model": {**_CPU_PHOP_MODEL, "injection": "add"},
        "train": {**_CPU_PHOP_TRAIN}},
    "cpu-phop-isoflop": {
        "description": "CPU p-hop iso-FLOP baseline: 1 prelude + 8 distinct layers (the looped model's largest "
                       "trained T, p=8) run once, same curriculum",
        "model": {**_CPU_PHOP_MODEL, "n_block": 8},
        "train": {**_CPU_PHOP_TRAIN}},
    # --- CPU Saunshi comparison on addition (data: addition-small with --reverse-answer --train-per-cell 5000) ---
    **{f"cpu-addition-{k}x{L}": {
        "description": f"CPU Saunshi et al. addition {k}x{L}: a {k}-layer block "
                       + ("looped 4 times" if L > 1 else "run once") + ", d=64, 4 heads, learned positions; lr 1e-3, "
                       "wd 0.01, cosine, batch 128, 3,000 steps (data: addition-small, answers reversed)",
        "model": {**_CPU_ADD_MODEL, "n_block": k, "loops": L},
        "train": dict(_CPU_ADD_TRAIN)}
       for k, L in ((2, 4), (2, 1), (8, 1))},
    "cpu-addition-looped": {
        "description": "CPU: 2-layer block looped T=4, d=64, rotary positions (addition --preset addition-small)",
        "model": {"d_model": 64, "n_heads": 4, "n_block": 2, "loops": 4, "positions": "rotary"},
        "train": {**_CPU_TRAIN, "steps": 1500, "batch_size": 64, "eval_examples": 300}},
    "cpu-addition-vanilla": {
        "description": "CPU: the same 2 layers run once, T=1 (addition --preset addition-small)",
        "model": {"d_model": 64, "n_heads": 4, "n_block": 2, "loops": 1, "positions": "rotary"},
        "train": {**_CPU_TRAIN, "steps": 1500, "batch_size": 64, "eval_examples": 300}},
}


# Every preset is a Preset value, as the data presets are: config = {"model": {...}, "train": {...}}.
PRESETS: dict[str, Preset] = {name: Preset(spec["description"], {"model": spec["model"], "train": spec["train"]})
                              for name, spec in _SPECS.items()}
SECTIONS = ("model", "train")


def resolve(preset: str | None = None, config_file: str | Path | None = None,
            overrides: list[str] | tuple[str, ...] = ()) -> tuple[ModelConfig, TrainConfig]:
    """Defaults <- preset or JSON/YAML file ``{"model": {...}, "train": {...}}`` <- ``--set section.key=value``."""
    if preset is not None and config_file is not None:
        raise ConfigError("config", "give --preset or --config, not both")
    if preset is not None and preset not in PRESETS:
        raise ConfigError("preset", f"unknown preset {preset!r} (expected one of {', '.join(PRESETS)})")
    spec: dict = {k: dict(v) for k, v in PRESETS[preset].config.items()} if preset else {s: {} for s in SECTIONS}
    if config_file is not None:
        data = read_config(config_file)
        if not set(data) <= set(SECTIONS) or not all(isinstance(v, dict) for v in data.values()):
            raise ConfigError("config", f"{config_file}: expected an object with keys 'model' and/or 'train'")
        spec = {s: dict(data.get(s, {})) for s in SECTIONS}
    sets = parse_sets(overrides, sections=SECTIONS)
    return (build_config(ModelConfig, {}, None, {**spec["model"], **sets["model"]}, section="model"),
            build_config(TrainConfig, {}, None, {**spec["train"], **sets["train"]}, section="train"))


def from_dicts(model: dict, train: dict | None = None) -> tuple[ModelConfig, TrainConfig]:
    """Rebuild configs saved in a checkpoint's config.json."""
    return (build_config(ModelConfig, {}, None, model, section="model"),
            build_config(TrainConfig, {}, None, train or {}, section="train"))
