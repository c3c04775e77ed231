"""Checkpoints: ``model.safetensors`` + ``config.json`` + ``optimizer.pt`` (+ ``vocab.json``) in a run dir.

``config.json`` holds the model and train configs, the dataset's task/path/fingerprint, the answer
format and the step, so a run directory alone rebuilds the model (the evaluator adapter needs
nothing else). ``optimizer.pt`` holds the optimizer state and every RNG state for exact resume.
Each file is written to a temporary name and renamed into place; config.json goes last and
every file records the step, so ``--resume`` can refuse a checkpoint torn by a crash mid-save.
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
from pathlib import Path

import numpy as np
import torch
from benchgen.reference_models.config import ModelConfig, TrainConfig, from_dicts

from benchgen.errors import BenchgenError
from benchgen.vocab import Vocab

WEIGHTS, CONFIG, OPTIM, VOCAB = "model.safetensors", "config.json", "optimizer.pt", "vocab.json"


def _atomic(path: Path, write) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    write(tmp)
    os.replace(tmp, path)


def rng_state() -> dict:
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save(run: str | Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer | None, step: int,
         model_cfg: ModelConfig, train_cfg: TrainConfig, meta: dict, vocab: Vocab | None = None) -> Path:
    """Write a checkpoint of ``model`` (unwrapped) at ``step`` into ``run``."""
    from safetensors.torch import save_file

    run = Path(run)
    run.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    if model_cfg.tie_embeddings:
        state.pop("head.weight", None)
    _atomic(run / WEIGHTS, lambda p: save_file(state, str(p), metadata={"step": str(step)}))
    if optimizer is not None:
        _atomic(run / OPTIM, lambda p: torch.save(
            {"optimizer": optimizer.state_dict(), "step": step, "rng": rng_state()}, p))
    if vocab is not None:
        _atomic(run / VOCAB, lambda p: vocab.save(p))
    cfg = {"model": dataclasses.asdict(model_cfg), "train": dataclasses.asdict(train_cfg), "step": step, **meta}
    _atomic(run / CONFIG, lambda p: p.write_text(json.dumps(cfg, indent=1) + "\n"))
    return run


def read_config(run: str | Path) -> dict:
    path = Path(run) / CONFIG
    if not path.is_file():
        raise BenchgenError(f"run directory {run}: no {CONFIG} (not a reference-model run?)")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise BenchgenError(f"{path}: corrupt JSON ({e})") from None


def load_model(run: str | Path, device: str | torch.device = "cpu"):
    """(model in eval mode, config dict) from a run directory."""
    from benchgen.reference_models.model import LoopedTransformer
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    cfg = read_config(run)
    model_cfg, _ = from_dicts(cfg["model"], cfg.get("train"))
    model = LoopedTransformer(model_cfg)
    wpath = Path(run) / WEIGHTS
    if not wpath.is_file():
        raise BenchgenError(f"run directory {run}: no {WEIGHTS}")
    try:
        state = load_file(str(wpath))
    except (SafetensorError, OSError) as e:
        raise BenchgenError(f"{wpath}: cannot read weights ({e})") from None
    if model_cfg.tie_embeddings:
        state["head.weight"] = state["wte.weight"]
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise BenchgenError(f"{wpath}: weights do not match config.json (missing {missing[:3]}, "
                            f"unexpected {unexpected[:3]})")
    return model.to(device).eval(), cfg


def load_optimizer(run: str | Path, optimizer: torch.optim.Optimizer) -> tuple[int, dict]:
    """Restore optimizer state; returns (step, rng states)."""
    path = Path(run) / OPTIM
    if not path.is_file():
        raise BenchgenError(f"--resume: {path} is missing")
    blob = torch.load(path, map_location="cpu", weights_only=False)
    optimizer.load_state_dict(blob["optimizer"])
    return int(blob["step"]), blob["rng"]


def load_vocab(run: str | Path) -> Vocab:
    path = Path(run) / VOCAB
    if not path.is_file():
        raise BenchgenError(f"run directory {run}: no {VOCAB}")
    return Vocab.load(path)
