"""benchgen: datasets and evaluation for implicit multi-step reasoning.

Python API (imported lazily, so ``import benchgen`` and the CLI stay fast)::

    import benchgen
    splits = benchgen.generate("khop", preset="khop-small")       # in memory, no files
    ds = benchgen.load("data/khop")                                 # a dataset directory
    results = benchgen.evaluate("data/khop", "preds.parquet")       # or a Table / datasets.Dataset
    benchgen.score_answer("1304", {"answer": "1304"})               # 1.0: per-item RL reward
    ds = benchgen.procedural("khop", preset="khop-small")           # ds[i]: an RL environment's items

See ``benchgen.api`` for every function and ``benchgen.registry`` for plugin entry points; the
README's "Layout" section maps the repository's folders to ``benchgen.*`` and draws the layers.
"""

from __future__ import annotations

from typing import Any

from benchgen.version import __version__

_API = ("generate", "load", "evaluate", "audit", "score_answer", "reward_function", "verl_compute_score",
        "read_config", "MemoryDataset", "procedural", "Curriculum", "Normalization")
__all__ = ["__version__", *_API]


def __getattr__(name: str) -> Any:
    """Load the Python API on first use (keeps ``benchgen generate`` start-up light)."""
    if name in _API:
        from benchgen import api

        return getattr(api, name)
    raise AttributeError(f"module 'benchgen' has no attribute {name!r}")
