"""Models: the protocol every adapter implements, the runner, and the adapters for external models.

- ``protocol``: :class:`~benchgen.evaluators.models.protocol.ModelAdapter` (reference models too);
- ``run``: an adapter over dataset splits in batches, every output validated;
- ``hf`` / ``torchscript`` / ``python_callable``: ``hf:DIR``, ``torchscript:FILE.pt``, ``python:MOD:FN``;
  each module's factory ``load(arg, **options)`` is registered as a ``benchgen.adapters`` entry point;
- ``oracle``: the dataset's own answers as predictions (optionally corrupted), to test the pipeline.

This module holds the helpers the adapters share: local-path checks (nothing is ever downloaded),
loop-count handling and first-answer-token statistics (margin, entropy, KL to the previous loop count).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa

from benchgen.errors import BenchgenError


def require_path(arg: str, scheme: str, *, kind: str = "file or directory") -> Path:
    """A local path given in a ``SCHEME:PATH`` spec; clear error when missing (never downloads)."""
    if not arg:
        raise BenchgenError(f"--model {scheme}:PATH: no path given")
    path = Path(arg).expanduser()
    if not path.exists():
        raise BenchgenError(f"--model {scheme}:{arg}: local {kind} {path} does not exist "
                            "(benchgen never downloads models; give a local path)")
    if kind == "directory" and not path.is_dir():
        raise BenchgenError(f"--model {scheme}:{arg}: {path} is not a directory")
    if kind == "file" and not path.is_file():
        raise BenchgenError(f"--model {scheme}:{arg}: {path} is not a file")
    return path


def loop_counts(loops: Sequence[int] | None, supports_loops: bool, name: str) -> list[int | None]:
    """The loop counts to run: ``[None]`` for a loop-free call, else the requested counts."""
    if loops is None:
        return [None]
    loops = [int(t) for t in loops]
    if not supports_loops:
        raise BenchgenError(f"model {name!r} has no loop count (pass --loop-kwarg NAME if its forward "
                            "takes one), but loops were requested")
    if any(t < 1 for t in loops):
        raise BenchgenError(f"loops: expected positive counts, got {loops}")
    return loops


def first_step_stats(log_probs: list[np.ndarray], target_first: np.ndarray) -> dict[str, np.ndarray]:
    """Margin, entropy and KL-to-previous of the first answer token, per loop count.

    ``log_probs[i]`` is (B, V) log-softmax at the first answer position for the i-th loop count;
    ``target_first`` (B,) is the first target token id (-1 when unknown: margin is NaN). Returns
    arrays of shape (len(log_probs), B); ``kl_prev`` is NaN for the first loop count.
    """
    margins, entropies, kls = [], [], []
    rows = np.arange(len(target_first))
    known = (target_first >= 0) & (target_first < (log_probs[0].shape[1] if log_probs else 0))
    safe = np.where(known, target_first, 0)
    prev = None
    for lp in log_probs:
        lp = lp.astype(np.float64)
        tgt = lp[rows, safe]
        other = lp.copy()
        other[rows, safe] = -np.inf
        margins.append(np.where(known, tgt - other.max(axis=1), np.nan))
        p = np.exp(lp)
        entropies.append(-(p * np.where(p > 0, lp, 0.0)).sum(axis=1))
        kls.append(np.full(len(rows), np.nan) if prev is None
                   else (p * (lp - prev)).sum(axis=1))
        prev = lp
    return {"margin": np.array(margins), "entropy": np.array(entropies), "kl_prev": np.array(kls)}


def predictions_table(ids: pa.Array, texts_per_loop: list[pa.Array], counts: list[int | None],
                      stats: dict[str, np.ndarray] | None = None) -> pa.Table:
    """Stack per-loop prediction arrays into one predictions table (rows grouped by loop count)."""
    n = len(ids)
    loops_col = np.repeat(np.array([-1 if t is None else t for t in counts], dtype=np.int32), n)
    cols = {
        "id": pa.concat_arrays([ids] * len(counts)),
        "prediction": pa.concat_arrays([a.cast(pa.string()) for a in texts_per_loop]),
        "loops": pa.array(loops_col, pa.int32(), mask=loops_col < 0),
    }
    for key, val in (stats or {}).items():
        flat = val.reshape(-1)
        cols[key] = pa.array(flat, pa.float64(), mask=np.isnan(flat))
    return pa.table(cols)
