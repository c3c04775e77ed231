"""What every command module shares: one-line errors, hints, progress flags, small option parsers."""

from __future__ import annotations

import contextlib
import errno as _errno
import math
import re
import sys
from collections.abc import Callable

import click

from benchgen.errors import BenchgenError

PROGRESS_HELP = "show progress bars [default: only when stderr is a terminal]"
MAX_SEED = 2**63 - 1
MAX_LOOPS, MAX_LOOP_COUNTS = 4096, 256

# Filesystem conditions a user can cause (bad --out, full disk, permissions): one line, never a traceback.
_FS_ERRNOS = {"ENOSPC", "EDQUOT", "EACCES", "EPERM", "EROFS", "ENAMETOOLONG", "ENOTDIR", "EISDIR", "ENOENT",
              "EEXIST", "ENOTEMPTY", "ELOOP", "EMFILE", "ENFILE", "EFBIG", "EIO", "EXDEV", "EBUSY", "ETXTBSY"}


def fail(message: str) -> None:
    """Print one clear error line and exit non-zero."""
    click.echo(f"error: {message}", err=True)
    sys.exit(2)


def os_error_line(e: OSError) -> str | None:
    """One line for a filesystem error (None for OS errors that are not about files)."""
    name = _errno.errorcode.get(e.errno or 0)
    if name is None and e.errno is None:
        short = re.search(r"(\d+) requested and (\d+) written", str(e))  # numpy tofile / pyarrow on a full disk
        if short:
            return f"write failed: only {int(short[2]):,} of {int(short[1]):,} bytes written (disk full?)"
        if "No space left on device" in str(e):
            return f"{str(e).splitlines()[0]} (disk full)"
    if name not in _FS_ERRNOS:
        return None
    where = e.filename if e.filename is not None else ""
    extra = {"ENOSPC": " (disk full)", "EDQUOT": " (quota exceeded)"}.get(name, "")
    return f"{where}: {e.strerror or name}{extra}" if where else f"{e.strerror or name}{extra}"


def progress(flag: bool | None) -> bool:
    """Progress bars as asked; by default only when stderr is a terminal (scripts and CI stay quiet)."""
    return sys.stderr.isatty() if flag is None else flag


def hint(*commands: str) -> None:
    """Suggest next commands on stderr (stdout stays parseable)."""
    click.echo("next:", err=True)
    for c in commands:
        click.echo(f"  {c}", err=True)


def unused(path: str) -> str:
    """``path``, or ``path-2``, ``path-3``... when it exists: a hint never points at someone's output."""
    import os

    if not os.path.lexists(path):
        return path
    stem, dot, ext = path.rpartition(".") if "." in path.rsplit("/", 1)[-1] else (path, "", "")
    n = 2
    while os.path.lexists(f"{stem}-{n}{dot}{ext}"):
        n += 1
    return f"{stem}-{n}{dot}{ext}"


def quoted(path) -> str:
    """A path as a shell word (quoted only when it needs to be)."""
    import shlex

    return shlex.quote(str(path))


def leaderboard_hint(results: list[str], board: str = "board.html") -> str:
    """The leaderboard command for exactly these results (a glob would mix in other datasets' results);
    --overwrite when the board already exists (it is re-rendered, as the user expects)."""
    import os

    over = " --overwrite" if os.path.lexists(board) else ""
    return f"benchgen leaderboard {' '.join(quoted(r) for r in results)} --out {board}{over}"


def echo_json(data) -> None:
    """Machine-readable output for --json (one JSON document on stdout)."""
    import json

    click.echo(json.dumps(data, indent=1, default=str))


def options(*decorators: Callable) -> Callable:
    """Apply a group of click options in the order listed (so related options stay together in --help)."""
    def apply(fn: Callable) -> Callable:
        for d in reversed(decorators):
            fn = d(fn)
        return fn
    return apply


def check_numbers(floats: dict, ints: dict) -> None:
    """Finite floats; integers within (lo, hi) (limit named): one line instead of a crash or a hang."""
    for flag, v in floats.items():
        if v is not None and not math.isfinite(v):
            fail(f"{flag}: expected a finite number, got {v}")
    for flag, (v, lo, hi) in ints.items():
        if v is not None and not lo <= v <= hi:
            fail(f"{flag}: expected an integer in {lo}..{hi:,}, got {v}")


def loops(text: str | None) -> list[int] | None:
    """--loops INTS: at most 256 loop counts, each in 1..4096 (a sweep beyond that never ends)."""
    from benchgen.config import parse_int_set

    if not text:
        return None
    values = list(parse_int_set(text, "loops"))
    if len(values) > MAX_LOOP_COUNTS or values[0] < 1 or values[-1] > MAX_LOOPS:
        fail(f"--loops: expected at most {MAX_LOOP_COUNTS} loop counts in 1..{MAX_LOOPS}, got {text!r}")
    return values


def check_device(device: str | None, *, allow_auto: bool) -> None:
    """--device must be cpu, cuda, cuda:N or mps (and auto for train)."""
    if device is None:
        return
    if not re.fullmatch(r"cpu|cuda(:\d+)?|mps" + ("|auto" if allow_auto else ""), device):
        fail(f"--device: expected {'auto, ' if allow_auto else ''}cpu, cuda or cuda:N, got {device!r}")


def split_list(values: tuple[str, ...]) -> list[str] | None:
    """``--splits a,b --splits c`` -> ["a", "b", "c"] (None when not given)."""
    names = [s for v in values for s in v.replace(" ", "").split(",") if s]
    return names or None


def metadata(pairs: tuple[str, ...]) -> dict:
    """``--model-meta KEY=VALUE`` pairs as a dict."""
    meta = {}
    for p in pairs:
        key, sep, value = p.partition("=")
        if not sep or not key:
            fail(f"--model-meta {p!r}: expected KEY=VALUE")
        meta[key] = value
    return meta


def spec_name(spec: str) -> str:
    """Default model name from a --model spec: its last path part (no absolute paths on boards)."""
    from pathlib import PurePath

    scheme, _, arg = spec.partition(":")
    if scheme == "python" and not arg.split(":")[0].endswith(".py"):
        return arg  # MODULE:FN is already a name
    path, sep, attr = arg.rpartition(":") if scheme == "python" else (arg, "", "")
    return (PurePath(path.rstrip("/\\")).name or path) + (f":{attr}" if sep else "")


@contextlib.contextmanager
def rendering(source: str):
    """results.json files are validated on load; a field the renderers still cannot use is one line."""
    try:
        yield
    except BenchgenError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as e:
        fail(f"{source}: malformed results.json, cannot render it ({type(e).__name__}: {str(e)[:120]})")
