"""The plan, kept by a test: which layer may import which, checked on every import of every module.

Layers, top to bottom (README: Layout)::

    faces      benchgen/cli/ (click), benchgen/api.py, benchgen/reasoning_gym.py, benchgen/__init__.py,
               benchgen/__main__.py
    pipeline   benchgen/pipeline/: generate, audit, validity, card, the baselines run
    tasks | evaluators | reference_models   (siblings: tasks/, evaluators/, reference_models/)
    core       every other module of benchgen/: dataset, memory, schema, vocab, atomic, seeding,
               config, registry, task, stats, errors, workers, progress, imports, version

An import only ever points down (or within its own layer); tasks never import evaluators or
models; evaluators never import tasks or models; reference models use only the evaluators'
model protocol (and the statistics every adapter reports by one definition, ``loop_stats``).
Imports inside functions count as much as module-level ones. Plugins and
built-ins are found by name through entry points (``benchgen.registry``), never by import.
"""

from __future__ import annotations

import ast
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[1]
# repository folder -> the package it installs as (pyproject.toml's package-dir)
FOLDERS = {"benchgen": "benchgen", "tasks": "benchgen.tasks", "evaluators": "benchgen.evaluators",
           "reference_models": "benchgen.reference_models"}

# module prefix -> layer; the longest matching prefix wins; any other benchgen.* module is core
LAYER_OF = {
    "benchgen": "faces",  # the package root: version + the lazily loaded Python API
    "benchgen.__main__": "faces",
    "benchgen.api": "faces",
    "benchgen.reasoning_gym": "faces",  # a face: registers the API's procedural datasets in reasoning-gym
    "benchgen.cli": "faces",
    "benchgen.pipeline": "pipeline",
    "benchgen.tasks": "tasks",
    "benchgen.evaluators": "evaluators",
    "benchgen.reference_models": "reference_models",
}
CORE = "core"
# layer -> the layers (or module prefixes) it may import
ALLOWED = {
    "faces": {"faces", "pipeline", "tasks", "evaluators", "reference_models", CORE},
    "pipeline": {"pipeline", "tasks", "evaluators", CORE},
    "tasks": {"tasks", CORE},
    "evaluators": {"evaluators", CORE},
    "reference_models": {"reference_models", "benchgen.evaluators.models.protocol",
                         "benchgen.evaluators.models.loop_stats", CORE},
    CORE: {CORE},
}
CLICK_ONLY_IN = "benchgen.cli"  # nothing below the CLI knows click


def modules() -> dict[str, Path]:
    """Every module of the installed namespace -> its file."""
    out = {}
    for folder, package in FOLDERS.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            parts = list(path.relative_to(ROOT / folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join([package, *parts])] = path
    return out


def layer(module: str) -> str:
    best = max((p for p in LAYER_OF if module == p or module.startswith(p + ".")), key=len, default=None)
    return LAYER_OF[best] if best and (best != "benchgen" or module == "benchgen") else CORE


def imports(module: str, path: Path, known: set[str]) -> list[tuple[int, str]]:
    """(line, imported module) for every import statement of ``path`` (nested ones included)."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against the package
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            for a in node.names:  # `from pkg import sub` imports the submodule pkg.sub
                found.append((node.lineno, f"{base}.{a.name}" if f"{base}.{a.name}" in known else base))
    return found


def violations(mods: dict[str, Path] | None = None) -> list[str]:
    """One line per import the plan does not allow: ``file:line: <module> (layer) imports <target> (layer)``."""
    mods = mods or modules()
    known = set(mods)
    out = []
    for module, path in mods.items():
        src = layer(module)
        for line, target in imports(module, path, known):
            where = f"{path.relative_to(ROOT) if path.is_relative_to(ROOT) else path.name}:{line}"
            if target.split(".")[0] == "click" and not module.startswith(CLICK_ONLY_IN):
                out.append(f"{where}: {module} ({src}) imports click (only {CLICK_ONLY_IN} may)")
            if target != "benchgen" and not target.startswith("benchgen."):
                continue
            dst = layer(target)
            allowed = ALLOWED[src]
            if dst not in allowed and not any(target == p or target.startswith(p + ".") for p in allowed):
                out.append(f"{where}: {module} ({src}) imports {target} ({dst}); {src} may import "
                           f"{', '.join(sorted(allowed))}")
    return out


def test_every_import_follows_the_layers():
    assert violations() == []


def test_an_upward_import_is_caught(tmp_path):
    """The checker itself: a task module that imports the evaluators, and a core module that imports
    the pipeline inside a function, are both reported with file and line."""
    mods = modules()
    bad_task = tmp_path / "bad_task.py"
    bad_task.write_text("import numpy\nfrom benchgen.evaluators import metrics\n")
    bad_core = tmp_path / "bad_core.py"
    bad_core.write_text("def f():\n    from benchgen.pipeline import generate\n    import click\n")
    fake = {**mods, "benchgen.tasks.khop.bad": bad_task, "benchgen.bad": bad_core}
    found = violations(fake)
    assert any("bad_task.py:2" in v and "benchgen.evaluators.metrics (evaluators)" in v for v in found), found
    assert any("bad_core.py:2" in v and "benchgen.pipeline.generate (pipeline)" in v for v in found), found
    assert any("bad_core.py:3" in v and "imports click" in v for v in found), found
    assert len(found) == 3, found


def test_pyproject_lists_every_package():
    """setuptools installs only the packages pyproject.toml names: a new folder must be listed there."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    packages = {m for m, p in modules().items() if p.name == "__init__.py"}
    assert set(config["packages"]) == packages
    assert config["package-dir"] == {v: k for k, v in FOLDERS.items()}


def test_every_layer_is_populated():
    """The table names real folders: each layer holds modules (a renamed folder would empty one)."""
    seen = {layer(m) for m in modules()}
    assert seen == set(ALLOWED), seen
