"""The one atomic-write helper for every benchgen output (directories and single files).

Directories (datasets, results, runs, lm-eval exports) are built in a temp dir beside the target,
``.NAME.tmp-<pid>-<host>-<rand>``, which carries a kind marker (``.benchgen.json``), then moved
into place exclusively. ``--overwrite`` replaces only a directory of the same kind: the old one
is moved aside to ``.NAME.old-<pid>-<host>-<rand>``, the new one moved in, the old one removed;
a failure in between moves the old one back, and a later run rolls back or removes leftovers of
a process that is gone (SIGKILL). SIGTERM is turned into an exception so cleanup runs as on
SIGINT. Every file and directory gets the modes the user's umask gives (0644/0755 under 022).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import hashlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from benchgen.errors import BenchgenError

MARKER = ".benchgen.json"
KINDS = ("dataset", "results", "run", "lm-eval", "report")
# leave room for the ".NAME.tmp-PID-HOST-RAND" siblings within NAME_MAX (255 bytes)
MAX_NAME_BYTES = 200
_AT_FDCWD = -100
_RENAME_NOREPLACE = 1


class Terminated(KeyboardInterrupt):
    """Raised in the main thread on SIGTERM, so every ``except BaseException`` cleanup runs."""


def _on_sigterm(signum, frame) -> None:
    """Signal handler: unwind the main thread like Ctrl-C so cleanups run."""
    raise Terminated("terminated by SIGTERM")


def install_sigterm_handler():
    """Handle SIGTERM like SIGINT (an exception that unwinds and cleans up); main thread only.

    Returns the previous handler (to restore), or None when nothing was changed.
    """
    try:
        previous = signal.getsignal(signal.SIGTERM)
        if previous in (signal.SIG_DFL, None):
            signal.signal(signal.SIGTERM, _on_sigterm)
            return previous
    except ValueError:  # not the main thread: leave the default
        pass
    return None


def restore_sigterm_handler(previous) -> None:
    """Undo :func:`install_sigterm_handler` (a no-op for None)."""
    if previous is not None:
        with contextlib.suppress(ValueError):
            signal.signal(signal.SIGTERM, previous)


@contextmanager
def signals_deferred() -> Iterator[None]:
    """Hold SIGINT and SIGTERM until the block ends, then act on them as usual (main thread only).

    For writes that span several files and must land together (a checkpoint's weights, optimizer
    state and step): a kill between two files would leave a torn checkpoint that cannot resume.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    previous = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        previous[sig] = signal.getsignal(sig)
        signal.signal(sig, lambda signum, _frame: caught.append(signum))
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)
    if caught:
        signal.raise_signal(caught[0])  # now delivered to the restored handler (KeyboardInterrupt, Terminated)


# --- modes --------------------------------------------------------------------------------------
def current_umask() -> int:
    """The process umask, read without changing it (``/proc``); falls back to a set-and-restore."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    old = os.umask(0o022)
    os.umask(old)
    return old


def dir_mode() -> int:
    """Mode a new directory gets under the current umask."""
    return 0o777 & ~current_umask()


def file_mode() -> int:
    """Mode a new file gets under the current umask."""
    return 0o666 & ~current_umask()


# --- names ----------------------------------------------------------------------------------------
def _host_tag() -> str:
    """Short hash of the host name: pids are only checked for leftovers made on this host."""
    return hashlib.sha256(socket.gethostname().encode()).hexdigest()[:6]


def _tag() -> str:
    """PID-HOST-RAND: who made a temp/backup name, so stale ones can be told from live ones."""
    return f"{os.getpid()}-{_host_tag()}-{secrets.token_hex(4)}"


def _sibling(out: Path, role: str) -> Path:
    """A hidden ``.NAME.ROLE-TAG`` path beside ``out`` (same filesystem, so renames are atomic)."""
    return out.parent / f".{out.name}.{role}-{_tag()}"


def _pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists (another user's counts as alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def cleanup_stale(out: Path) -> None:
    """Roll back or remove ``.NAME.old-*`` / ``.NAME.tmp-*`` left by a process that is gone (this host)."""
    parent = out.parent
    pat = re.compile(rf"\.{re.escape(out.name)}\.(tmp|old)-(\d+)-([0-9a-f]{{6}})-[0-9a-f]+")
    try:
        names = sorted(os.listdir(parent))
    except OSError:
        return
    host = _host_tag()
    stale = []
    for name in names:
        m = pat.fullmatch(name)
        if m and m.group(3) == host and not _pid_alive(int(m.group(2))):
            stale.append((m.group(1), parent / name))
    for role, path in sorted(stale, key=lambda x: x[0] != "old"):  # rollbacks first
        try:
            if role == "old" and not os.path.lexists(out):
                rename_noreplace(path, out)  # the swap was interrupted: the old output comes back
            elif path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
        except OSError:
            pass


def restore_interrupted(out: str | Path) -> str | None:
    """For readers of a missing ``out``: move back the previous version that a process killed inside the
    final swap left at ``.NAME.old-*`` (as the next write would). Returns None when restored or when there
    is nothing to restore, else a note saying where the previous version is (e.g. a read-only parent)."""
    out = Path(out)
    if os.path.lexists(out):
        return None
    cleanup_stale(out)
    if os.path.lexists(out):
        return None
    pat = re.compile(rf"\.{re.escape(out.name)}\.old-\d+-[0-9a-f]{{6}}-[0-9a-f]+")
    try:
        left = sorted(n for n in os.listdir(out.parent) if pat.fullmatch(n))
    except OSError:
        return None
    if not left:
        return None
    where = out.parent / left[-1]
    return (f"an interrupted write left the previous version at {where} (it could not be moved back: "
            f"mv {where} {out})")


# --- exclusive rename -----------------------------------------------------------------------------
try:
    _renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    _renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
except (AttributeError, OSError):  # pragma: no cover - old glibc / non-Linux
    _renameat2 = None


def rename_noreplace(src: Path, dst: Path) -> None:
    """Rename ``src`` to ``dst``, failing with FileExistsError if ``dst`` exists in any form.

    Race-free: ``renameat2(RENAME_NOREPLACE)`` checks and renames in one kernel operation, so of
    two processes moving into the same ``dst`` exactly one succeeds. Where the filesystem lacks
    it (EINVAL/ENOSYS), plain ``rename(2)`` is still exclusive for our directories: they are never
    empty (each holds its kind marker), and rename(2) never replaces a non-empty directory
    (ENOTEMPTY/EEXIST); the only thing it could replace is an empty directory, which loses nothing.
    """
    if _renameat2 is not None:
        if _renameat2(_AT_FDCWD, os.fsencode(src), _AT_FDCWD, os.fsencode(dst), _RENAME_NOREPLACE) == 0:
            return
        err = ctypes.get_errno()
        if err not in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
            if err in (errno.EEXIST, errno.ENOTEMPTY):
                raise FileExistsError(err, os.strerror(err), str(dst))
            raise OSError(err, os.strerror(err), str(dst))
    if os.path.lexists(dst) and not (dst.is_dir() and not dst.is_symlink() and src.is_dir()):
        raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), str(dst))
    try:
        os.rename(src, dst)
    except OSError as e:
        if e.errno in (errno.EEXIST, errno.ENOTEMPTY):
            raise FileExistsError(e.errno, os.strerror(e.errno), str(dst)) from None
        raise


# --- markers and target checks --------------------------------------------------------------------
def write_marker(directory: Path, kind: str) -> None:
    """Mark ``directory`` as a benchgen output of ``kind`` (what ``--overwrite`` may replace)."""
    if kind not in KINDS:
        raise ValueError(f"unknown output kind {kind!r}")
    write_file(Path(directory) / MARKER, json.dumps({"kind": kind}) + "\n")


def _json(path: Path):
    """Parsed JSON of a small file, or None when missing or unreadable."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def kind_of(directory: Path) -> str | None:
    """The benchgen kind of an existing directory (marker, or the files older versions wrote)."""
    d = Path(directory)
    marker = _json(d / MARKER)
    if isinstance(marker, dict) and marker.get("kind") in KINDS:
        return marker["kind"]
    manifest = _json(d / "manifest.json")
    if isinstance(manifest, dict) and {"fingerprint", "splits", "task"} <= manifest.keys():
        return "dataset"
    results = _json(d / "results.json")
    if isinstance(results, dict) and "schema_version" in results and "cells" in results:
        return "results"
    config = _json(d / "config.json")
    if isinstance(config, dict) and {"model", "train", "dataset"} <= config.keys():
        return "run"
    if (d / "benchgen_docs.py").is_file() and any(d.glob("benchgen_*.yaml")):
        return "lm-eval"
    return None


KIND_NAMES = {"dataset": "dataset", "results": "results directory", "run": "training run",
              "lm-eval": "lm-eval export", "report": "report directory"}


def _describe(directory: Path) -> str:
    """What an existing directory holds, for one-line refusals."""
    k = kind_of(directory)
    if k is not None:
        return f"a benchgen {KIND_NAMES[k]}"
    try:
        names = sorted(p.name for p in directory.iterdir())
    except OSError:
        names = []
    shown = ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
    return f"files benchgen did not write ({shown})"


def safe_out_path(out: str | Path, option: str = "--out") -> Path:
    """Refuse outputs that can never be right: empty, '.', the home directory, '/', or a parent of cwd."""
    if out is None or not str(out).strip():
        raise BenchgenError(f"{option}: empty path (expected a directory or file name)")
    p = Path(out).expanduser()
    try:
        resolved = p.resolve()
    except (OSError, RuntimeError) as e:
        raise BenchgenError(f"{option} {out}: cannot resolve path ({e})") from None
    cwd = Path.cwd().resolve()
    home = Path.home().resolve()
    if resolved == Path(resolved.anchor) or resolved in (home, cwd) or resolved in cwd.parents:
        what = ("the filesystem root" if resolved == Path(resolved.anchor) else
                "the home directory" if resolved == home else
                "the current directory" if resolved == cwd else "a parent of the current directory")
        raise BenchgenError(f"{option} {out}: refusing to write to {what}; give a new subdirectory")
    if len(os.fsencode(p.name)) > MAX_NAME_BYTES:
        raise BenchgenError(f"{option} {out}: name too long (at most {MAX_NAME_BYTES} bytes per path component)")
    return p


def _check_parent_writable(out: Path, option: str) -> None:
    """The first existing ancestor of ``out`` must be a writable directory (fail before any work)."""
    anc = out.parent
    while not anc.exists() and anc != anc.parent:
        if anc.is_symlink():
            break
        anc = anc.parent
    if anc.exists() and not anc.is_dir():
        raise BenchgenError(f"{option} {out}: {anc} is a file, not a directory")
    if anc.is_dir() and not os.access(anc, os.W_OK | os.X_OK):
        raise BenchgenError(f"{option} {out}: directory {anc} is not writable")


def check_target(out: str | Path, overwrite: bool, option: str = "--out", kind: str = "dataset",
                 accept: tuple[str, ...] = ()) -> Path:
    """Check an output directory before any work: new, empty, or (``overwrite``) a benchgen ``kind``.

    ``accept`` names further kinds that may be written into (e.g. a report into a results directory).
    """
    out = safe_out_path(out, option)
    cleanup_stale(out)
    if os.path.lexists(out):
        if not out.is_dir():
            raise BenchgenError(f"{option} {out}: exists and is not a directory")
        try:
            nonempty = any(out.iterdir())
        except PermissionError:
            raise BenchgenError(f"{option} {out}: directory is not readable") from None
        if nonempty:
            found = _describe(out)
            want = KIND_NAMES.get(kind, kind)
            if not overwrite:
                raise BenchgenError(f"{option} {out}: already exists and holds {found} "
                                    f"(pass --overwrite to replace a benchgen {want})")
            if kind_of(out) not in (kind, *accept):
                raise BenchgenError(f"{option} {out}: holds {found}, not a benchgen {want}; "
                                    f"benchgen only replaces a {want} it wrote")
        if not os.access(out.parent, os.W_OK | os.X_OK):
            raise BenchgenError(f"{option} {out}: directory {out.parent} is not writable")
    else:
        _check_parent_writable(out, option)
    return out


# --- directories ----------------------------------------------------------------------------------
def new_temp_dir(out: Path, kind: str | None = None) -> Path:
    """An empty temp dir beside ``out`` (same filesystem: the final rename is atomic), umask modes."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(100):
        tmp = _sibling(out, "tmp")
        try:
            tmp.mkdir(mode=0o777)  # mkdir applies the umask itself (mkdtemp would force 0700)
        except FileExistsError:
            continue
        if kind is not None:
            try:
                write_marker(tmp, kind)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
        return tmp
    raise BenchgenError(f"--out {out}: cannot create a temporary directory beside it")


def swap_into_place(tmp: Path, out: Path, *, overwrite: bool = True, kind: str | None = None,
                    option: str = "--out") -> Path:
    """Move ``tmp`` to ``out`` exclusively; with ``overwrite`` an existing same-kind ``out`` is replaced.

    The old output is moved aside first and removed only after the new one is in place; any
    failure in between moves it back (and a SIGKILL there is rolled back by the next run).
    """
    tmp, out = Path(tmp), Path(out)
    backup = None
    if os.path.lexists(out):
        empty = out.is_dir() and not out.is_symlink() and not any(out.iterdir())
        if empty:
            with contextlib.suppress(OSError):
                out.rmdir()  # fails (ENOTEMPTY) if a concurrent run has filled it meanwhile
        elif overwrite and (kind is None or kind_of(out) == kind):
            backup = _sibling(out, "old")
            os.rename(out, backup)
    try:
        rename_noreplace(tmp, out)
    except FileExistsError:
        if backup is not None:
            _restore(backup, out)
        found = _describe(out) if out.is_dir() else "a file"
        raise BenchgenError(f"{option} {out}: another run wrote {found} there meanwhile; it was left "
                            f"intact and this run's output discarded") from None
    except BaseException:
        if backup is not None:
            _restore(backup, out)
        raise
    if backup is not None:
        shutil.rmtree(backup, ignore_errors=True)
    return out


def _restore(backup: Path, out: Path) -> None:
    """Move the old output back after a failed swap (best effort; the next run finishes it)."""
    with contextlib.suppress(OSError):  # else a later run's cleanup_stale rolls it back or removes it
        rename_noreplace(backup, out)


def remove_tree(path: Path) -> None:
    """Remove a temp directory, ignoring errors."""
    shutil.rmtree(path, ignore_errors=True)


@contextmanager
def atomic_dir(out: str | Path, overwrite: bool = False, option: str = "--out",
               kind: str = "dataset") -> Iterator[Path]:
    """Yield a marked temp dir to fill; on success it replaces ``out``, on any error it is removed."""
    out = check_target(out, overwrite, option, kind)
    tmp = new_temp_dir(out, kind)
    try:
        yield tmp
        swap_into_place(tmp, out, overwrite=overwrite, kind=kind, option=option)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


# --- single files ---------------------------------------------------------------------------------
def write_file(path: str | Path, data: str | bytes | Callable[[Path], None], *, overwrite: bool = True,
               option: str = "--out", encoding: str = "utf-8") -> Path:
    """Write one file atomically (temp file beside it, fsync, rename); umask modes.

    ``data`` is text, bytes, or a function writing to the temp path it is given. Without
    ``overwrite`` the final step is ``link(2)``, which fails if ``path`` exists (exclusive).
    """
    path = Path(path)
    if os.path.isdir(path):
        raise BenchgenError(f"{option} {path}: is a directory (expected a file)")
    path.parent.mkdir(parents=True, exist_ok=True)
    cleanup_stale(path)  # temp files of a writer that was killed (e.g. a checkpoint save)
    tmp = _sibling(path, "tmp")
    try:
        if callable(data):
            data(tmp)
            os.chmod(tmp, file_mode())  # some writers (safetensors) create 0600 whatever the umask
        else:
            raw = data.encode(encoding) if isinstance(data, str) else data
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # umask applies
            with os.fdopen(fd, "wb") as f:
                f.write(raw)
                f.flush()
                os.fsync(f.fileno())
        if overwrite:
            os.replace(tmp, path)
        else:
            try:
                os.link(tmp, path)
            except FileExistsError:
                raise BenchgenError(f"{option} {path}: already exists (pass --overwrite to replace it)") from None
            tmp.unlink()
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path
