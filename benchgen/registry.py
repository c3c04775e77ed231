"""Name -> task / model-adapter lookup, by import path so nothing heavy loads until used.

Third-party packages add tasks and adapters through Python entry points, with no change here::

    # the plugin's pyproject.toml
    [project.entry-points."benchgen.tasks"]
    mytask = "my_package.my_task"            # a module with the task interface below
    [project.entry-points."benchgen.adapters"]
    myscheme = "my_package.adapter:load"     # factory(arg, **options) -> adapter

Built-in names win over a plugin that reuses one (the plugin is ignored, never silently swapped in).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from functools import cache
from importlib.metadata import entry_points
from types import ModuleType

from benchgen.errors import BenchgenError

TASK_GROUP = "benchgen.tasks"
ADAPTER_GROUP = "benchgen.adapters"

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

# Optional third-party modules -> the extra that installs them (for one-line install hints).
EXTRAS: dict[str, str] = {
    "torch": "models", "safetensors": "models", "triton": "kernels", "transformers": "hf",
    "tokenizers": "hf", "accelerate": "hf", "lm_eval": "lmeval", "datasets": "datasets",
    "huggingface_hub": "hub",
}


@cache
def _plugins(group: str) -> dict[str, str]:
    """Entry points of ``group`` as {name: "module[:attr]"} (read once; ``refresh()`` re-reads)."""
    return {ep.name: ep.value for ep in entry_points(group=group)}


def refresh() -> None:
    """Forget cached entry points (after installing a plugin in a running interpreter)."""
    _plugins.cache_clear()


def task_specs() -> dict[str, str]:
    """Every task name -> module path: built-ins, then plugins under new names."""
    return {**_plugins(TASK_GROUP), **TASKS}


def adapter_specs() -> dict[str, str]:
    """Every adapter scheme -> "module:factory": built-ins, then plugins under new schemes."""
    return {**_plugins(ADAPTER_GROUP), **ADAPTERS}


def task_names() -> list[str]:
    """Registered task names, built-ins first."""
    return [*TASKS, *(n for n in task_specs() if n not in TASKS)]


def missing_extra(exc: ModuleNotFoundError, what: str) -> BenchgenError:
    """One-line error naming the ``benchgen[extra]`` that installs the module ``exc`` lacks."""
    top = (exc.name or "").split(".")[0]
    extra = EXTRAS.get(top)
    if extra is None:
        return BenchgenError(f"{what}: cannot import {exc.name!r} ({exc})")
    return BenchgenError(f"{what} needs {top}, which is not installed: pip install 'benchgen[{extra}]'")


def _import(module: str, what: str) -> ModuleType:
    """Import ``module``, turning a missing optional dependency into an install hint."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as e:
        if e.name and module.startswith(e.name.split(".")[0]) and e.name.split(".")[0] != "benchgen":
            raise BenchgenError(f"{what}: module {module!r} is not installed") from None
        raise missing_extra(e, what) from None


def get_task(name: str) -> ModuleType:
    """The task module registered under ``name`` (clear error for unknown names)."""
    specs = task_specs()
    if name not in specs:
        raise BenchgenError(f"unknown task {name!r} (expected one of {', '.join(task_names())})")
    return _import(specs[name], f"task {name!r}")


def adapter_factory(spec: str) -> Callable:
    """The factory registered for the scheme of ``spec`` (e.g. ``hf`` for ``hf:./ckpt``)."""
    scheme, sep, _ = spec.partition(":")
    specs = adapter_specs()
    if not sep or scheme not in specs:
        known = ", ".join(f"{k}:..." for k in specs) or "none registered"
        raise BenchgenError(f"--model {spec!r}: expected SCHEME:ARG with scheme one of {known}")
    module, _, factory = specs[scheme].partition(":")
    mod = _import(module, f"--model {scheme}:")
    if not factory or not hasattr(mod, factory):
        raise BenchgenError(f"--model {scheme}:: {specs[scheme]!r} does not name a factory (module:function)")
    return getattr(mod, factory)


def get_adapter(spec: str, **options):
    """Build a model adapter from a spec string such as ``reference:RUN_DIR``."""
    factory = adapter_factory(spec)
    try:
        return factory(spec.partition(":")[2], **options)
    except ModuleNotFoundError as e:
        if (e.name or "").split(".")[0] in EXTRAS:
            raise missing_extra(e, f"--model {spec.partition(':')[0]}:") from None
        raise
