"""Generation speed against the physical floor: whole processes, every figure measured in one run.

For every khop, addition and induction preset (``--presets`` narrows them):

* ``benchgen generate`` as a user runs it (fresh process: interpreter start, imports, sampling,
  rendering, writing, validity), best of ``--repeats`` with the spread, and its peak RSS;
* its **floor**: ``python -c "import numpy, pyarrow, pyarrow.parquet, click"`` (the imports any
  Python generator that writes parquet pays) plus writing the very same tables with the same parquet
  options (``benchmarks/write_floor.py``: zstd, row groups of 65,536, dictionary on split/depth/width,
  no statistics), and the ratio generate / floor (target <= 2x);
* the validity share: ``benchmarks/validity_time.py`` (the cheap baselines generate runs, timed on
  the files) over generate's time (target <= 15%).

Then the anchor researchers run today, ``benchmarks/ltg_style_generate.py`` (plain Python, the
``ltg-depth`` shape; target: benchgen >= 5x its rate), and reasoning-gym 0.1.25
``family_relationships`` / ``basic_arithmetic`` for reference (``--rg-python`` an interpreter that has
it; skipped when none does). ``--scale 10000000`` times khop at that many rows (the ``ltg-depth``
graph, train hops 4-40, test hops 41-44) at ``--workers 2``: ratio to its floor <= 2x and peak RSS
< 2 GiB. Every target prints MET or MISSED; ``uptime`` load is printed before and after.

Usage: ``python benchmarks/generate.py [--only khop,addition,induction] [--presets a,b] [--repeats 3]
[--rg-python PY] [--scale ROWS,...] [--check]`` (``--check`` exits 1 when a target is missed).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GIB = 1 << 30
# as a user runs it: bytecode caches written and reused (an editable checkout under
# PYTHONDONTWRITEBYTECODE=1 would recompile every benchgen module in every process, ~50 ms)
USER_ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
SCALE_FIXED_ROWS = 2_000 + 37 * 1_500 + 4 * 750  # atomics, valid + test_id per train hop, test_depth
FLOOR_IMPORTS = "import numpy, pyarrow, pyarrow.parquet, click"
RG_CODE = (
    "import sys, reasoning_gym\n"
    "ds = reasoning_gym.create_dataset(sys.argv[1], size=int(sys.argv[2]), seed=42)\n"
    "print(sum(1 for i in range(len(ds)) if ds[i]['answer'] is not None))\n")


def run_process(cmd: list[str], repeats: int, before=None) -> tuple[str, list[float], int]:
    """(stdout of the fastest run, wall seconds of every run, peak RSS bytes of the fastest) of ``cmd``."""
    times, best, rss, out = [], float("inf"), 0, ""
    for _ in range(repeats):
        if before is not None:
            before()
        t = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=USER_ENV)
        _, status, usage = os.wait4(proc.pid, 0)
        dt = time.perf_counter() - t
        code = os.waitstatus_to_exitcode(status)
        stdout, stderr = proc.stdout.read(), proc.stderr.read()
        proc.stdout.close()
        proc.stderr.close()
        if code != 0:
            raise SystemExit(f"{' '.join(cmd)} failed ({code}): {stderr.strip()[-500:]}")
        times.append(dt)
        if dt < best:
            best, rss, out = dt, usage.ru_maxrss * 1024, stdout  # ru_maxrss is KiB on Linux
    return out, times, rss


def printed(cmd: list[str], repeats: int) -> list[float]:
    """The number each run of ``cmd`` prints last (seconds timed inside the process), per run."""
    return [float(run_process(cmd, 1)[0].strip().splitlines()[-1]) for _ in range(repeats)]


def fmt(times: list[float]) -> str:
    """Best of the runs with their spread (max - min)."""
    return f"{min(times):.3f} (±{max(times) - min(times):.3f})" if len(times) > 1 else f"{times[0]:.3f}"


def load() -> str:
    """The 1/5/15-minute load averages, printed beside the figures."""
    return os.getloadavg().__repr__() if hasattr(os, "getloadavg") else "n/a"


def benchgen_cmd() -> list[str]:
    """The console script next to this interpreter, as a user types it (``python -m benchgen`` otherwise)."""
    exe = Path(sys.executable).with_name("benchgen")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "benchgen"]


def rows_written(out: Path) -> int:
    """Rows of a written dataset, from its manifest."""
    return sum(s["rows"] for s in json.loads((out / "manifest.json").read_text())["splits"].values())


class Table:
    """The markdown table being printed, and the targets met and missed."""

    def __init__(self) -> None:
        self.missed: list[str] = []
        self.met = 0
        print("| what | rows | s (best; spread) | floor s (import + write) | ratio | validity share | peak RSS | "
              "targets |")
        print("|---|---:|---:|---:|---:|---:|---:|---|")

    def target(self, what: str, text: str, ok: bool) -> str:
        """``text`` marked MET or MISSED (and counted)."""
        if ok:
            self.met += 1
        else:
            self.missed.append(f"{what}: {text}")
        return f"{text} {'MET' if ok else 'MISSED'}"

    def row(self, *cells: str) -> None:
        """Print one table row."""
        print("| " + " | ".join(cells) + " |", flush=True)


def presets(only: set[str], chosen: str) -> list[tuple[str, str]]:
    """(task, preset) for every preset of the chosen task families (or the ``--presets`` list)."""
    from benchgen import registry

    out = [(t, p) for t in ("khop", "addition", "induction") if t in only for p in registry.get_task(t).presets]
    return [x for x in out if not chosen or x[1] in chosen.split(",")]


def time_preset(tab: Table, task: str, preset: str, tmp: Path, imp: float, repeats: int,
                extra: list[str] = (), rows_label: str | None = None) -> tuple[int, float]:
    """One generate figure with its floor, ratio and validity share; returns (rows, best seconds)."""
    out = tmp / f"{task}-{preset}"
    cmd = benchgen_cmd() + ["generate", task, "--preset", preset, "--out", str(out), "--no-progress", *extra]
    _, times, rss = run_process(cmd, repeats, before=lambda: shutil.rmtree(out, ignore_errors=True))
    n, dt = rows_written(out), min(times)
    write = min(printed([sys.executable, str(ROOT / "benchmarks" / "write_floor.py"), str(out)], 1 if n > 2e6 else
                        repeats))
    floor = imp + write
    what = rows_label or f"`{task} --preset {preset}`"
    ratio = tab.target(what, f"{dt / floor:.2f}x <= 2x", dt / floor <= 2)
    share = ""
    if n <= 2e6:
        val = min(printed([sys.executable, str(ROOT / "benchmarks" / "validity_time.py"), str(out)], repeats))
        share = tab.target(what, f"{val / dt:.0%} ({val:.3f} s) <= 15%", val / dt <= 0.15)
    mem = f"{rss / GIB:.2f} GiB"
    if n > 2e6:
        mem = tab.target(what, f"{rss / GIB:.2f} GiB < 2 GiB", rss < 2 * GIB)
    tab.row(what, f"{n:,}", fmt(times), f"{floor:.3f} ({imp:.3f} + {write:.3f})", ratio, share, mem, "")
    shutil.rmtree(out, ignore_errors=True)
    return n, dt


def anchors(tab: Table, args, tmp: Path, ltg: tuple[int, float] | None, khop_rate: float | None,
            add_rate: float | None) -> None:
    """The plain-Python LTG-style generator (target) and reasoning-gym (reference) rows."""
    if ltg is not None:
        a = tmp / "ltg-style"
        out, times, rss = run_process([sys.executable, str(ROOT / "benchmarks" / "ltg_style_generate.py"), str(a)],
                                      args.repeats, before=lambda: shutil.rmtree(a, ignore_errors=True))
        an = int(out.strip().splitlines()[-1])
        x = (ltg[0] / ltg[1]) / (an / min(times))
        tab.row("LTG-style plain Python (`ltg_style_generate.py`)", f"{an:,}", fmt(times), "", "", "",
                f"{rss / GIB:.2f} GiB", tab.target("ltg-depth vs LTG-style", f"benchgen {x:.1f}x >= 5x", x >= 5))
    probe = subprocess.run([args.rg_python, "-c", "import reasoning_gym"], capture_output=True, text=True)
    if probe.returncode != 0:
        print(f"\nreasoning-gym not importable by {args.rg_python}: its reference rows are skipped "
              "(pip install reasoning-gym==0.1.25 into a venv, then --rg-python VENV/bin/python)")
        return
    for name, ours in (("family_relationships", khop_rate), ("basic_arithmetic", add_rate)):
        out, times, _ = run_process([args.rg_python, "-c", RG_CODE, name, str(args.rg_items)], args.repeats)
        n = int(out.strip().splitlines()[-1])
        ref = f"benchgen {ours / (n / min(times)):,.0f}x (reference)" if ours else ""
        tab.row(f"reasoning-gym `{name}`", f"{n:,}", fmt(times), "", "", "", "", ref)


def main() -> int:
    """Time every preset, the anchors and the scale runs; print the table and the targets."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", default="khop,addition,induction", help="comma-separated task families")
    ap.add_argument("--presets", default="", help="comma-separated presets (default: all of those families)")
    ap.add_argument("--rg-items", type=int, default=100_000, help="reasoning-gym items per baseline process")
    ap.add_argument("--rg-python", default=sys.executable, help="interpreter that has reasoning-gym")
    ap.add_argument("--repeats", type=int, default=3, help="best of this many processes per figure")
    ap.add_argument("--scale", default="", help="comma-separated khop row counts to time at --workers 2")
    ap.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    args = ap.parse_args()
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs; whole processes, best of {args.repeats} "
          f"(spread = max - min), one run; load average at start {load()}\n")
    tab = Table()
    _, itimes, _ = run_process([sys.executable, "-c", FLOOR_IMPORTS], args.repeats)
    imp = min(itimes)
    tab.row(f"import floor: `python -c '{FLOOR_IMPORTS}'`", "0", fmt(itimes), "", "", "", "", "")
    rates: dict[str, tuple[int, float]] = {}
    with tempfile.TemporaryDirectory(prefix="benchgen-bench-") as t:
        tmp = Path(t)
        for task, preset in presets(set(args.only.split(",")), args.presets):
            rates[preset] = time_preset(tab, task, preset, tmp, imp, args.repeats)
        khop = rates.get("grokked-composition")
        add = rates.get("saunshi-addition")
        anchors(tab, args, tmp, rates.get("ltg-depth"), khop and khop[0] / khop[1], add and add[0] / add[1])
        for rows in [int(x) for x in args.scale.split(",") if x.strip()]:
            per_hop = max(1, round((rows - SCALE_FIXED_ROWS) / 37))
            time_preset(tab, "khop", "ltg-depth", tmp, imp, 1,
                        ["--train-hops", "4-40", "--test-hops", "41-44", "--train-per-hop", str(per_hop),
                         "--workers", "2"], f"khop at {rows:,} rows, `--workers 2`")
    print(f"\nload average at end {load()}")
    print(f"{tab.met} target(s) met, {len(tab.missed)} missed" + "".join(f"\n  MISSED {m}" for m in tab.missed))
    return 1 if (args.check and tab.missed) else 0


if __name__ == "__main__":
    sys.exit(main())
