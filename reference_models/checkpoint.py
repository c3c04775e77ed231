"""Checkpoints: ``model.safetensors`` + ``config.json`` + ``optimizer.pt`` (+ ``vocab.json``) in a run dir.

Nothing in a run directory can execute code: weights are safetensors, and ``optimizer.pt`` holds
only tensors and plain Python values (the numpy RNG state is stored as a tensor), so it is read
with ``torch.load(weights_only=True)``; a file needing anything else is refused.

``config.json`` holds the model and train configs, the dataset's task/path/fingerprint, the answer
format and the step, so a run directory alone rebuilds the model (the evaluator adapter needs
nothing else). ``optimizer.pt`` holds the optimizer state and every RNG state for exact resume.
Each file is written to a temporary name and renamed into place; config.json goes last and
every file records the step, so ``--resume`` can refuse a checkpoint torn by a crash mid-save.
"""

from __future__ import annotations

import dataclasses
import json
import random
from pathlib import Path

import numpy as np
import torch

from benchgen.atomic import signals_deferred
from benchgen.errors import BenchgenError
from benchgen.reference_models.config import ModelConfig, TrainConfig, from_dicts
from benchgen.vocab import Vocab

WEIGHTS, CONFIG, OPTIM, VOCAB = "model.safetensors", "config.json", "optimizer.pt", "vocab.json"


def _atomic(path: Path, write) -> None:
    """Write one run file through the one atomic-write helper (umask modes, temp name, rename)."""
    from benchgen.atomic import write_file

    write_file(path, write)


def rng_state() -> dict:
    """Every RNG state as tensors and plain values only (loadable with ``weights_only=True``)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {"torch": torch.get_rng_state(),
             "numpy": {"kind": str(kind), "keys": torch.from_numpy(np.asarray(keys, np.int64)), "pos": int(pos),
                       "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
             "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Restore the states saved by :func:`rng_state`."""
    torch.set_rng_state(state["torch"])
    npst = state["numpy"]
    np.random.set_state((npst["kind"], npst["keys"].numpy().astype(np.uint32), npst["pos"], npst["has_gauss"],
                         npst["cached_gaussian"]))
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
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
    cfg = {"model": dataclasses.asdict(model_cfg), "train": dataclasses.asdict(train_cfg), "step": step, **meta}
    with signals_deferred():  # the files land together: a kill in between would tear the checkpoint
        _atomic(run / WEIGHTS, lambda p: save_file(state, str(p), metadata={"step": str(step)}))
        if optimizer is not None:
            _atomic(run / OPTIM, lambda p: torch.save(
                {"optimizer": optimizer.state_dict(), "step": step, "rng": rng_state()}, p))
        if vocab is not None:
            _atomic(run / VOCAB, lambda p: vocab.save(p))
        _atomic(run / CONFIG, lambda p: p.write_text(json.dumps(cfg, indent=1) + "\n"))
    return run


def read_config(run: str | Path) -> dict:
    """config.json of a run, structure-checked (BenchgenError naming the problem)."""
    path = Path(run) / CONFIG
    if not path.is_file():
        raise BenchgenError(f"run directory {run}: no {CONFIG} (not a reference-model run?)")
    try:
        cfg = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as e:
        raise BenchgenError(f"{path}: corrupt JSON ({str(e).splitlines()[0][:200]})") from None
    if not isinstance(cfg, dict):
        raise BenchgenError(f"{path}: expected a JSON object")
    for key in ("model", "train", "dataset", "answer"):
        if not isinstance(cfg.get(key), dict):
            raise BenchgenError(f"{path}: field '{key}' is missing or malformed (expected an object)")
    if not isinstance(cfg["dataset"].get("fingerprint"), str):
        raise BenchgenError(f"{path}: field 'dataset.fingerprint' is missing or malformed (expected a string)")
    if isinstance(cfg.get("step"), bool) or not isinstance(cfg.get("step"), int):
        raise BenchgenError(f"{path}: field 'step' is missing or malformed (expected an integer)")
    return cfg


def configs(cfg: dict, where: str | Path) -> tuple[ModelConfig, TrainConfig]:
    """Model and train configs from a run's config.json (BenchgenError for bad fields)."""
    try:
        return from_dicts(cfg["model"], cfg.get("train"))
    except BenchgenError:
        raise
    except (TypeError, ValueError, KeyError) as e:
        raise BenchgenError(f"{where}: malformed model/train config ({str(e).splitlines()[0][:200]})") from None


def load_model(run: str | Path, device: str | torch.device = "cpu"):
    """(model in eval mode, config dict) from a run directory."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from benchgen.reference_models.model import LoopedTransformer

    cfg = read_config(run)
    model_cfg, _ = configs(cfg, Path(run) / CONFIG)
    try:
        model = LoopedTransformer(model_cfg)
    except (TypeError, ValueError, RuntimeError) as e:
        raise BenchgenError(f"{Path(run) / CONFIG}: model config cannot be built ({str(e).splitlines()[0][:200]})") from None
    wpath = Path(run) / WEIGHTS
    if not wpath.is_file():
        raise BenchgenError(f"run directory {run}: no {WEIGHTS}")
    try:
        state = load_file(str(wpath))
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise BenchgenError(f"{wpath}: cannot read weights ({str(e).splitlines()[0][:200]})") from None
    if model_cfg.tie_embeddings and "wte.weight" in state:
        state["head.weight"] = state["wte.weight"]
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as e:
        raise BenchgenError(f"{wpath}: weights do not match config.json ({str(e).splitlines()[-1].strip()[:200]})") from None
    if missing or unexpected:
        raise BenchgenError(f"{wpath}: weights do not match config.json (missing {missing[:3]}, "
                            f"unexpected {unexpected[:3]})")
    return model.to(device).eval(), cfg


def load_optimizer(run: str | Path, optimizer: torch.optim.Optimizer) -> tuple[int, dict]:
    """Restore optimizer state; returns (step, rng states). Never unpickles code (weights_only=True)."""
    path = Path(run) / OPTIM
    if not path.is_file():
        raise BenchgenError(f"--resume: {path} is missing")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - garbage, truncated or unsafe pickles: one clear line
        msg = str(e).strip().splitlines()[0][:160] if str(e).strip() else type(e).__name__
        raise BenchgenError(f"{path}: not a loadable benchgen optimizer state (refusing anything but tensors "
                            f"and plain values; {msg})") from None
    if not isinstance(blob, dict) or not {"optimizer", "step", "rng"} <= blob.keys():
        raise BenchgenError(f"{path}: malformed optimizer state (expected keys optimizer, step, rng)")
    try:
        optimizer.load_state_dict(blob["optimizer"])
        return int(blob["step"]), blob["rng"]
    except (ValueError, KeyError, TypeError, RuntimeError) as e:
        raise BenchgenError(f"{path}: optimizer state does not match the model ({str(e).splitlines()[0][:160]})") from None


def load_vocab(run: str | Path) -> Vocab:
    """vocab.json of a run (BenchgenError when missing or malformed)."""
    path = Path(run) / VOCAB
    if not path.is_file():
        raise BenchgenError(f"run directory {run}: no {VOCAB}")
    try:
        return Vocab.load(path)
    except (ValueError, TypeError, KeyError, RecursionError) as e:
        raise BenchgenError(f"{path}: corrupt vocabulary ({str(e).splitlines()[0][:200]})") from None
