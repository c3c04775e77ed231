"""Install hints that work where they are printed: the pip command for an extra, matching how
benchgen itself was installed, with the CPU-only torch route first when no GPU is visible.

benchgen is not on the package index, so ``pip install 'benchgen[models]'`` fails for almost
everyone; a checkout needs ``pip install -e '/path/to/checkout[models]'``, and on a machine
without a GPU a bare torch requirement resolves the multi-GB CUDA build (18 nvidia packages)
unless CPU-only torch is installed first.
"""

from __future__ import annotations

import json
import os
import shlex
from functools import cache
from importlib import metadata, util
from pathlib import Path

CPU_TORCH_INDEX = "https://download.pytorch.org/whl/cpu"
TORCH_EXTRAS = ("models", "kernels", "hf", "lmeval", "dev")  # extras that pull torch in


def checkout_root() -> Path | None:
    """The checkout this benchgen is imported from (an editable install), or None."""
    root = Path(__file__).resolve().parents[1]
    pyproject = root / "pyproject.toml"
    if pyproject.is_file() and 'name = "benchgen"' in pyproject.read_text(encoding="utf-8", errors="replace"):
        return root
    return None


@cache
def source() -> tuple[str, str]:
    """How benchgen was installed: ("checkout", ROOT) for an editable checkout, ("path", DIR) for a
    copy installed from a local directory, ("url", URL) from a VCS or archive URL, ("index", "")."""
    root = checkout_root()
    if root is not None:
        return "checkout", str(root)
    try:
        direct = json.loads(metadata.distribution("benchgen").read_text("direct_url.json") or "null")
    except (metadata.PackageNotFoundError, ValueError, OSError):
        direct = None
    if isinstance(direct, dict) and isinstance(direct.get("url"), str):
        url = direct["url"]
        if url.startswith("file://") and "dir_info" in direct:
            return ("checkout" if direct["dir_info"].get("editable") else "path"), url[len("file://"):]
        vcs = direct.get("vcs_info") or {}
        return "url", f"{vcs['vcs']}+{url}" if vcs.get("vcs") else url
    return "index", ""


def gpu_visible() -> bool:
    """Whether an NVIDIA GPU is visible to this process (device nodes, and not hidden by CUDA_VISIBLE_DEVICES)."""
    if os.environ.get("CUDA_VISIBLE_DEVICES", None) in ("", "-1"):
        return False
    return Path("/dev/nvidia0").exists() or Path("/proc/driver/nvidia/gpus").is_dir()


def pip_install(extra: str) -> str:
    """``pip install`` of ``benchgen[extra]`` the way this benchgen was installed (one shell line)."""
    kind, where = source()
    if kind == "checkout":
        return f"pip install -e {shlex.quote(f'{where}[{extra}]')}"
    if kind == "path":
        return f"pip install {shlex.quote(f'{where}[{extra}]')}"
    if kind == "url":
        return f"pip install {shlex.quote(f'benchgen[{extra}] @ {where}')}"
    return f"pip install {shlex.quote(f'benchgen[{extra}]')}"


def torch_installed() -> bool:
    """Whether torch can be imported (a module set to None in sys.modules counts as missing)."""
    try:
        return util.find_spec("torch") is not None
    except (ValueError, ImportError):
        return False


def install_hint(extra: str) -> str:
    """The command(s) that install ``extra``: CPU-only torch first when the extra brings torch, torch
    is not installed and no GPU is visible (else pip resolves the CUDA build)."""
    command = pip_install(extra)
    if extra in TORCH_EXTRAS and not torch_installed() and not gpu_visible():
        return f"pip install torch --index-url {CPU_TORCH_INDEX} && {command} (no GPU visible: CPU-only torch first)"
    return command
