"""Name -> task / model-adapter lookup, by import path so nothing heavy loads until used."""

from __future__ import annotations

import importlib
from types import ModuleType

from benchgen.errors import BenchgenError

# Each task module exposes: NAME, DESCRIPTION, CONFIG (dataclass), PRESETS
# ({name: {"description": str, "config": dict}}), generate(cfg, out, overwrite=False,
# progress=True) -> Path, and audit(dataset) -> list[str] (violations; empty = clean).
TASKS: dict[str, str] = {
    "khop": "benchgen.tasks.khop",
    "addition": "benchgen.tasks.addition",
    "induction": "benchgen.tasks.induction",
}

# Model adapters for ``--model SCHEME:ARG``: "module:factory", factory(arg, **options) -> adapter.
ADAPTERS: dict[str, str] = {
    "hf": "benchgen.evaluators.adapters.hf:load",
    "torchscript": "benchgen.evaluators.adapters.torchscript:load",
    "python": "benchgen.evaluators.adapters.python_callable:load",
    "reference": "benchgen.reference_models.adapter:load_adapter",
}


def task_names() -> list[str]:
    return list(TASKS)


def get_task(name: str) -> ModuleType:
    """The task module registered under ``name`` (clear error for unknown names)."""
    if name not in TASKS:
        raise BenchgenError(f"unknown task {name!r} (expected one of {', '.join(TASKS)})")
    return importlib.import_module(TASKS[name])


def get_adapter(spec: str, **options):
    """Build a model adapter from a spec string such as ``reference:RUN_DIR``."""
    scheme, sep, arg = spec.partition(":")
    if not sep or scheme not in ADAPTERS:
        known = ", ".join(f"{k}:..." for k in ADAPTERS) or "none registered"
        raise BenchgenError(f"--model {spec!r}: expected SCHEME:ARG with scheme one of {known}")
    module, _, factory = ADAPTERS[scheme].partition(":")
    return getattr(importlib.import_module(module), factory)(arg, **options)
