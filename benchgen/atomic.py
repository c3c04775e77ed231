"""Atomic directory writes: build in a temp dir next to the target, then rename into place."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from benchgen.errors import BenchgenError


def check_target(out: str | Path, overwrite: bool, option: str = "--out") -> Path:
    """Refuse an existing non-empty target unless ``overwrite`` (checked before any work)."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise BenchgenError(f"{option} {out}: exists and is not a directory")
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise BenchgenError(f"{option} {out}: already exists and is not empty (pass --overwrite to replace it)")
    return out


def new_temp_dir(out: Path) -> Path:
    """An empty temp dir beside ``out`` (same filesystem, so the final rename is atomic)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))


def swap_into_place(tmp: Path, out: Path) -> Path:
    """Rename ``tmp`` to ``out``; an existing ``out`` is moved aside first and removed after."""
    backup = None
    if out.exists():
        backup = out.with_name(f".{out.name}.old-{os.getpid()}")
        out.rename(backup)
    tmp.rename(out)
    if backup is not None:
        shutil.rmtree(backup, ignore_errors=True)
    return out


@contextmanager
def atomic_dir(out: str | Path, overwrite: bool = False, option: str = "--out") -> Iterator[Path]:
    """Yield a temp dir to fill; on success it replaces ``out``, on error it is removed."""
    out = check_target(out, overwrite, option)
    tmp = new_temp_dir(out)
    try:
        yield tmp
        swap_into_place(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
