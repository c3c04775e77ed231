"""Models: the protocol every adapter implements, the runner, and the adapters for external models.

- ``protocol``: :class:`~benchgen.evaluators.models.protocol.ModelAdapter` (reference models too);
- ``run``: an adapter over dataset splits in batches, every output validated;
- ``hf`` / ``torchscript`` / ``python_callable``: ``hf:DIR``, ``torchscript:FILE.pt``, ``python:MOD:FN``;
  each module's factory ``load(arg, **options)`` is registered as a ``benchgen.adapters`` entry point;
- ``oracle``: the dataset's own answers as predictions (optionally corrupted), to test the pipeline.

This module holds the helpers the adapters share: local-path checks (nothing is ever downloaded),
loop-count handling and the predictions table (per-loop statistics: ``loop_stats``; loop knobs: ``loop_knob``).
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
                            "takes one, or --loop-config NAME if its config holds it), but loops were requested")
    if any(t < 1 for t in loops):
        raise BenchgenError(f"loops: expected positive counts, got {loops}")
    return loops


def predictions_table(ids: pa.Array, texts_per_loop: list[pa.Array], counts: list[int | None],
                      stats: dict[str, np.ndarray] | None = None) -> pa.Table:
    """Stack per-loop prediction arrays into one predictions table (rows grouped by loop count).

    ``stats`` (name -> (loop counts, B), e.g. :meth:`LoopStats.result`) become float columns; the
    table's metadata records their definition (``loop_stats.STATS_KEY``).
    """
    from benchgen.evaluators.models.loop_stats import STATS_KEY, definition_json

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
    table = pa.table(cols)
    return table.replace_schema_metadata({STATS_KEY: definition_json().encode()}) if stats else table
