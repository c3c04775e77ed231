"""A fresh virtual environment installs the base package without torch, and it works.

Slow (a real ``pip install`` of the repository and its dependencies, from pip's cache or the
configured index): ``python -m pytest -m slow tests/test_install.py``.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _ok(cmd: list[str], cwd: Path, timeout: int = 900) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{' '.join(cmd)}\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    return proc


def _size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink())


@pytest.mark.slow
def test_fresh_venv_base_install_has_no_torch_and_runs(tmp_path):
    venv = tmp_path / "venv"
    _ok([sys.executable, "-m", "venv", str(venv)], tmp_path)
    py = venv / "bin" / "python"
    start = time.perf_counter()
    _ok([str(py), "-m", "pip", "install", "--quiet", str(REPO)], tmp_path)
    seconds = time.perf_counter() - start
    listed = _ok([str(py), "-m", "pip", "list", "--format=freeze"], tmp_path).stdout.lower()
    names = {line.split("==")[0] for line in listed.splitlines()}
    assert "benchgen" in names
    assert not names & {"torch", "triton", "safetensors", "transformers"}, sorted(names)
    assert not any(n.startswith("nvidia-") for n in names)
    print(f"\nbase install: {seconds:.1f} s, venv {_size(venv) / 2**20:.0f} MiB, {len(names)} packages")

    work = tmp_path / "work"
    (work / "tasks").mkdir(parents=True)  # a user folder that must not shadow benchgen's
    (work / "tasks" / "__init__.py").write_text("raise ImportError('user tasks/ shadowed benchgen')\n")
    bg = str(venv / "bin" / "benchgen")
    _ok([bg, "generate", "khop", "--preset", "khop-small", "--out", "data/khop"], work)
    _ok([bg, "audit", "data/khop"], work)
    _ok([bg, "predict-oracle", "data/khop", "--noise", "0.2", "--out", "preds.parquet"], work)
    _ok([bg, "evaluate", "data/khop", "--predictions", "preds.parquet", "--out", "eval/oracle", "--html"], work)
    _ok([bg, "leaderboard", "eval/oracle/results.json", "--out", "board.html"], work)
    _ok([bg, "export", "lm-eval", "data/khop", "--out", "lm-tasks"], work)
    assert "Usage" in _ok([str(py), "-m", "benchgen", "--help"], work).stdout
    still = _ok([str(py), "-c", "import sys, benchgen.cli, benchgen.api; print('torch' in sys.modules)"], work)
    assert still.stdout.strip() == "False"
    # model commands say which extra to install, in one line
    proc = subprocess.run([bg, "train", "--data", "data/khop", "--preset", "cpu-khop-looped", "--out", "run"],
                          cwd=work, capture_output=True, text=True, timeout=120)
    from benchgen.install import CPU_TORCH_INDEX, gpu_visible

    hint = f"pip install '{REPO}[models]'"  # installed from this directory (not editable): the same route
    if not gpu_visible():
        hint = f"pip install torch --index-url {CPU_TORCH_INDEX} && {hint} (no GPU visible: CPU-only torch first)"
    assert proc.returncode == 2 and proc.stderr.strip() == (
        f"error: benchgen train needs torch, which is not installed: {hint}")

    # a third-party plugin installed with pip registers a task through the entry point
    plugin = tmp_path / "plugin"
    (plugin / "bg_plugin_pkg").mkdir(parents=True)
    (plugin / "bg_plugin_pkg" / "__init__.py").write_text(textwrap.dedent('''
        import dataclasses
        from benchgen.tasks.addition import TASK as ADDITION
        TASK = dataclasses.replace(ADDITION, name="plugin_add", description="plugin task: addition under another name")
    '''))
    (plugin / "pyproject.toml").write_text(textwrap.dedent('''
        [build-system]
        requires = ["setuptools>=68"]
        build-backend = "setuptools.build_meta"
        [project]
        name = "bg-plugin-pkg"
        version = "0.1"
        [project.entry-points."benchgen.tasks"]
        plugin_add = "bg_plugin_pkg:TASK"
    '''))
    _ok([str(py), "-m", "pip", "install", "--quiet", str(plugin)], tmp_path)
    assert "plugin_add:" in _ok([bg, "tasks"], work).stdout
    _ok([bg, "generate", "plugin_add", "--preset", "addition-small", "--out", "data/plugin"], work)


@pytest.mark.slow
def test_scripts_test_sh_sets_up_a_fresh_venv(tmp_path):
    """The README's one test line in a fresh venv (no system packages) on a copy of the tracked files:
    it installs CPU-only torch where no GPU is visible (the local wheel or mirror first), the dev
    extras, lints and runs the tests it is given."""
    import shutil

    files = _ok(["git", "ls-files", "-co", "--exclude-standard"], REPO).stdout.split()
    clone = tmp_path / "clone"
    for f in files:
        if (REPO / f).is_file():
            (clone / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / f, clone / f)
    venv = tmp_path / "venv"
    _ok([sys.executable, "-m", "venv", str(venv)], tmp_path)
    env = {"PATH": f"{venv / 'bin'}:/usr/bin:/bin", "HOME": str(tmp_path), "PYTHON": str(venv / "bin" / "python")}
    import os

    env.update({k: v for k, v in os.environ.items() if k.startswith("PIP_")})  # the machine's package sources
    proc = subprocess.run(["bash", "scripts/test.sh", "tests/test_layers.py", "tests/test_install_hints.py"],
                          cwd=clone, capture_output=True, text=True, timeout=1800, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "passed" in proc.stdout.splitlines()[-1] or "passed" in proc.stdout, proc.stdout[-2000:]
    version = _ok([str(venv / "bin" / "python"), "-c", "import torch; print(torch.__version__)"], tmp_path).stdout
    from benchgen.install import gpu_visible

    if not gpu_visible():
        assert version.strip().endswith("+cpu"), version
    listed = _ok([str(venv / "bin" / "python"), "-m", "pip", "list", "--format=freeze"], tmp_path).stdout.lower()
    assert not gpu_visible() and "nvidia-" not in listed or gpu_visible()
