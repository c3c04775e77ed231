"""Configs of the reference looped transformers (model + training) and the paper/CPU presets.

A preset is ``{"description": str, "model": {...}, "train": {...}}``; ``resolve`` layers
defaults <- preset or JSON config file <- ``section.field=value`` overrides, coerced and validated.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from benchgen.config import coerce
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
    loops_sampling: Literal["fixed", "uniform", "poisson", "poisson_lognormal"] = field(default="fixed", metadata={
        "help": "T per step: fixed (model.loops), uniform[lo,hi], clip(Poisson(mean),lo,hi), "
                "Huginn Poisson-lognormal clipped to [lo,hi]"})
    loops_min: int = field(default=1, metadata={"help": "lo for sampled T"})
    loops_max: int = field(default=8, metadata={"help": "hi for sampled T"})
    loops_mean: float = field(default=4.0, metadata={"help": "mean of the Poisson / Poisson-lognormal T"})
    loops_sigma: float = field(default=0.5, metadata={"help": "sigma of the log-normal rate (Huginn)"})
    backprop_last: int = field(default=0, metadata={
        "help": "truncated backprop: gradients through the last m iterations only (0: all)"})
    short_route_weight: float = field(default=0.0, metadata={
        "help": "LoopFormer consistency: w*CE(short) + w*MSE(sg(h_long), h_short) (0: off)"})
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
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ConfigError("label_smoothing", f"expected a value in [0, 1), got {self.label_smoothing}")
        for name in ("warmup_steps", "eval_every", "save_every", "log_every", "threads", "eval_examples"):
            if getattr(self, name) < 0:
                raise ConfigError(name, f"expected >= 0, got {getattr(self, name)}")


def _gpt2(layers: int, loops: int, **kw: Any) -> dict:
    return {"d_model": 768, "n_heads": 12, "n_block": layers, "loops": loops, **kw}


def _ltg_sys(r: int) -> dict:
    return {"description": f"Loop-Think-Generalize systematic: GPT-2 blocks d=768, 4 layers looped R={r}, "
                           "learned positions, lr 1e-4, wd 0.1, label smoothing 0.1, batch 128 "
                           "(data: khop --preset grokked-composition)",
            "model": _gpt2(4, r, positions="learned"),
            "train": {"lr": 1e-4, "weight_decay": 0.1, "label_smoothing": 0.1, "batch_size": 128,
                      "warmup_steps": 2000, "schedule": "constant", "steps": 500_000, "eval_every": 2000,
                      "beta2": 0.999}}


def _saunshi_add(k: int, loops: int) -> dict:
    return {"description": f"Saunshi et al. n-ary addition {k}x{loops} (k-layer block looped L times, "
                           "no injection), d=256, 8 heads, FFN 1024",
            "model": {"d_model": 256, "n_heads": 8, "d_ff": 1024, "n_block": k, "loops": loops,
                      "positions": "learned"},
            "train": {"lr": 1e-3, "weight_decay": 0.01, "batch_size": 256, "warmup_steps": 1000,
                      "schedule": "cosine", "steps": 200_000, "eval_every": 2000}}


_CPU_TRAIN = {"lr": 2e-3, "weight_decay": 0.1, "batch_size": 128, "warmup_steps": 100, "schedule": "cosine",
              "min_lr_ratio": 0.1, "eval_every": 250, "eval_examples": 400, "log_every": 25, "threads": 1}

PRESETS: dict[str, dict] = {
    **{f"ltg-systematic-r{r}": _ltg_sys(r) for r in (1, 2, 4, 8)},
    "ltg-depth": {
        "description": "Loop-Think-Generalize depth extrapolation: d=768, 4 layers, no positions, zero-init "
                       "output projections, dynamic R = clip(Poisson(4), 2, 8), lr 1e-4, wd 0.01, batch 128 "
                       "(data: khop --preset ltg-depth)",
        "model": _gpt2(4, 4, positions="none", zero_init_out=True),
        "train": {"lr": 1e-4, "weight_decay": 0.01, "batch_size": 128, "warmup_steps": 2000,
                  "schedule": "constant", "steps": 500_000, "loops_sampling": "poisson", "loops_mean": 4.0,
                  "loops_min": 2, "loops_max": 8, "eval_every": 2000, "beta2": 0.999}},
    **{f"ltg-depth-r{r}": {
        "description": f"Loop-Think-Generalize depth extrapolation with fixed R={r}",
        "model": _gpt2(4, r, positions="none", zero_init_out=True),
        "train": {"lr": 1e-4, "weight_decay": 0.01, "batch_size": 128, "warmup_steps": 2000,
                  "schedule": "constant", "steps": 500_000, "eval_every": 2000, "beta2": 0.999}}
       for r in (6, 8)},
    **{f"saunshi-addition-{k}x{L}": _saunshi_add(k, L) for k, L in ((1, 12), (2, 6), (12, 1), (2, 1), (1, 1))},
    **{f"saunshi-induction-{k}x{L}": {
        "description": f"Saunshi et al. p-hop induction {k}x{L}: d=128, 8 heads, rotary positions",
        "model": {"d_model": 128, "n_heads": 8, "n_block": k, "loops": L, "positions": "rotary"},
        "train": {"lr": 1e-3, "weight_decay": 0.01, "batch_size": 256, "warmup_steps": 1000,
                  "schedule": "cosine", "steps": 200_000, "eval_every": 2000}}
       for k, L in ((1, 6), (2, 3), (6, 1))},
    "loopformer": {
        "description": "LoopFormer: time/step-size modulated norms and zero-init gates, 8-step long route "
                       "+ random short route with consistency loss (weight 0.1)",
        "model": {"d_model": 512, "n_heads": 8, "n_block": 2, "loops": 8, "conditioning": "loopformer",
                  "positions": "rotary"},
        "train": {"lr": 3e-4, "batch_size": 128, "warmup_steps": 2000, "schedule": "cosine",
                  "steps": 200_000, "short_route_weight": 0.1, "eval_every": 2000}},
    "parcae": {
        "description": "Parcae: prelude 2 + looped block 2 + coda 2 with stable diagonal injection, "
                       "T ~ Poisson-lognormal mean 8, backprop through the last 4 iterations",
        "model": {"d_model": 512, "n_heads": 8, "n_prelude": 2, "n_block": 2, "n_coda": 2, "loops": 8,
                  "injection": "parcae", "positions": "rotary"},
        "train": {"lr": 3e-4, "batch_size": 128, "warmup_steps": 2000, "schedule": "cosine",
                  "steps": 200_000, "loops_sampling": "poisson_lognormal", "loops_mean": 8.0,
                  "loops_min": 1, "loops_max": 16, "backprop_last": 4, "eval_every": 2000}},
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
    "cpu-addition-looped": {
        "description": "CPU: 2-layer block looped T=4, d=64, rotary positions (addition --preset addition-small)",
        "model": {"d_model": 64, "n_heads": 4, "n_block": 2, "loops": 4, "positions": "rotary"},
        "train": {**_CPU_TRAIN, "steps": 1500, "batch_size": 64, "eval_examples": 300}},
    "cpu-addition-vanilla": {
        "description": "CPU: the same 2 layers run once, T=1 (addition --preset addition-small)",
        "model": {"d_model": 64, "n_heads": 4, "n_block": 2, "loops": 1, "positions": "rotary"},
        "train": {**_CPU_TRAIN, "steps": 1500, "batch_size": 64, "eval_examples": 300}},
}


def _apply(cls: type, base: dict, section: str) -> Any:
    names = {f.name: f for f in dataclasses.fields(cls)}
    for k in base:
        if k not in names:
            raise ConfigError(f"{section}.{k}", f"unknown option (expected one of {', '.join(names)})")
    cfg = cls(**{k: coerce(names[k], v) for k, v in base.items()})
    cfg.validate()
    return cfg


def resolve(preset: str | None = None, config_file: str | Path | None = None,
            overrides: list[str] | tuple[str, ...] = ()) -> tuple[ModelConfig, TrainConfig]:
    """Defaults <- preset or JSON file ``{"model": {...}, "train": {...}}`` <- ``section.key=value``."""
    spec: dict[str, dict] = {"model": {}, "train": {}}
    if preset is not None and config_file is not None:
        raise ConfigError("config", "give --preset or --config, not both")
    if preset is not None:
        if preset not in PRESETS:
            raise ConfigError("preset", f"unknown preset {preset!r} (expected one of {', '.join(PRESETS)})")
        spec = {"model": dict(PRESETS[preset]["model"]), "train": dict(PRESETS[preset]["train"])}
    if config_file is not None:
        try:
            data = json.loads(Path(config_file).read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise ConfigError("config", f"{config_file}: cannot read JSON ({e})") from None
        if not isinstance(data, dict) or not set(data) <= {"model", "train"}:
            raise ConfigError("config", f"{config_file}: expected an object with keys 'model' and/or 'train'")
        spec = {"model": dict(data.get("model", {})), "train": dict(data.get("train", {}))}
    for item in overrides:
        key, sep, value = item.partition("=")
        section, dot, name = key.strip().partition(".")
        if not sep or not dot or section not in spec:
            raise ConfigError("set", f"expected model.KEY=VALUE or train.KEY=VALUE, got {item!r}")
        spec[section][name] = value.strip()
    return _apply(ModelConfig, spec["model"], "model"), _apply(TrainConfig, spec["train"], "train")


def from_dicts(model: dict, train: dict | None = None) -> tuple[ModelConfig, TrainConfig]:
    """Rebuild configs saved in a checkpoint's config.json."""
    return _apply(ModelConfig, model, "model"), _apply(TrainConfig, train or {}, "train")
