"""Name -> task / model adapter lookup through Python entry points (nothing loads until used).

Built-in tasks and adapters register exactly as plugins do, in ``pyproject.toml``, so the core
names none of them::

    [project.entry-points."benchgen.tasks"]
    mytask = "my_package.my_task:TASK"       # a benchgen.task.Task value
    [project.entry-points."benchgen.adapters"]
    myscheme = "my_package.adapter:load"     # factory(arg, **options) -> adapter
    [project.entry-points."benchgen.exit_rules"]
    my-rule = "my_package.rules:RULE"        # a benchgen.evaluators.exit_rules.ExitRule value

Built-in names (those of the benchgen distribution) win over a plugin that reuses one (the plugin
is ignored, never silently swapped in).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from functools import cache
from importlib.metadata import entry_points
from typing import Any

from benchgen.errors import BenchgenError

TASK_GROUP = "benchgen.tasks"
ADAPTER_GROUP = "benchgen.adapters"
EXIT_RULE_GROUP = "benchgen.exit_rules"
DISTRIBUTION = "benchgen"

# Optional third-party modules -> the extra that installs them (for one-line install hints).
EXTRAS: dict[str, str] = {
    "torch": "models", "safetensors": "models", "triton": "kernels", "transformers": "hf",
    "tokenizers": "hf", "accelerate": "hf", "lm_eval": "lmeval", "datasets": "datasets",
    "huggingface_hub": "hub", "reasoning_gym": "bench",
}


@cache
def _group(group: str) -> tuple[dict[str, str], dict[str, str]]:
    """Entry points of ``group`` as ({built-in name: target}, {plugin name: target}); read once."""
    builtin: dict[str, str] = {}
    plugins: dict[str, str] = {}
    for ep in entry_points(group=group):
        dist = getattr(ep, "dist", None)
        ours = dist is not None and (dist.metadata["Name"] or "").lower() == DISTRIBUTION
        (builtin if ours else plugins).setdefault(ep.name, ep.value)
    return builtin, plugins


def refresh() -> None:
    """Forget cached entry points (after installing a plugin in a running interpreter)."""
    _group.cache_clear()


def specs(group: str) -> dict[str, str]:
    """Every name -> "module:attr" of ``group``: built-ins first, then plugins under new names."""
    builtin, plugins = _group(group)
    if not builtin:
        raise BenchgenError(f"no {group} entry points: benchgen is not installed (run `pip install -e .` in the "
                            "checkout)")
    return {**builtin, **{k: v for k, v in plugins.items() if k not in builtin}}


def task_specs() -> dict[str, str]:
    """Every task name -> "module:attr"."""
    return specs(TASK_GROUP)


def adapter_specs() -> dict[str, str]:
    """Every adapter scheme -> "module:factory"."""
    return specs(ADAPTER_GROUP)


def task_names() -> list[str]:
    """Registered task names, built-ins first."""
    return list(task_specs())


def missing_extra(exc: ModuleNotFoundError, what: str) -> BenchgenError:
    """One-line error naming the command that installs the ``benchgen[extra]`` the module ``exc`` lacks
    (as benchgen was installed: a checkout gets ``pip install -e 'CHECKOUT[extra]'``; see
    :func:`benchgen.install.install_hint`)."""
    from benchgen.install import install_hint

    top = (exc.name or "").split(".")[0]
    extra = EXTRAS.get(top)
    if extra is None:
        return BenchgenError(f"{what}: cannot import {exc.name!r} ({exc})")
    return BenchgenError(f"{what} needs {top}, which is not installed: {install_hint(extra)}")


def load_target(spec: str, what: str) -> Any:
    """The object a "module:attr" entry point names (a missing optional dependency: an install hint)."""
    module, _, attr = spec.partition(":")
    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as e:
        if e.name and module.startswith(e.name.split(".")[0]) and e.name.split(".")[0] != "benchgen":
            raise BenchgenError(f"{what}: module {module!r} is not installed") from None
        raise missing_extra(e, what) from None
    except ImportError as e:  # a plugin broken by its own imports: one line, other plugins still work
        raise BenchgenError(f"{what}: cannot import {module!r} ({e})") from None
    if not attr:
        return mod
    if not hasattr(mod, attr):
        raise BenchgenError(f"{what}: {spec!r} names no attribute {attr!r} in {module}")
    return getattr(mod, attr)


def get_task(name: str):
    """The :class:`benchgen.task.Task` registered under ``name`` (one clear line for unknown names)."""
    from benchgen.task import Task

    specs_ = task_specs()
    if name not in specs_:
        raise BenchgenError(f"unknown task {name!r} (expected one of {', '.join(specs_)})")
    task = load_target(specs_[name], f"task {name!r}")
    if not isinstance(task, Task):
        raise BenchgenError(f"task {name!r}: entry point {specs_[name]!r} is a {type(task).__name__}, not a "
                            f"benchgen.task.Task; define TASK = Task(...) in it and register "
                            f"\"{specs_[name].partition(':')[0]}:TASK\" (README: Plugins)")
    return task


def adapter_factory(spec: str) -> Callable:
    """The factory registered for the scheme of ``spec`` (e.g. ``hf`` for ``hf:./ckpt``)."""
    scheme, sep, _ = spec.partition(":")
    specs_ = adapter_specs()
    if not sep or scheme not in specs_:
        known = ", ".join(f"{k}:..." for k in specs_) or "none registered"
        raise BenchgenError(f"--model {spec!r}: expected SCHEME:ARG with scheme one of {known}")
    if ":" not in specs_[scheme]:
        raise BenchgenError(f"--model {scheme}:: {specs_[scheme]!r} does not name a factory (module:function)")
    return load_target(specs_[scheme], f"--model {scheme}:")


def get_adapter(spec: str, **options):
    """Build a model adapter from a spec string such as ``reference:RUN_DIR``."""
    factory = adapter_factory(spec)
    try:
        return factory(spec.partition(":")[2], **options)
    except ModuleNotFoundError as e:
        if (e.name or "").split(".")[0] in EXTRAS:
            raise missing_extra(e, f"--model {spec.partition(':')[0]}:") from None
        raise
