"""Generation speed as a user measures it: whole processes, against baselines timed in the same run.

Every figure is a fresh process (interpreter start, imports, sampling, rendering, writing), best of
``--repeats``, all in one run on one machine:

* ``benchgen generate`` for khop ``grokked-composition`` and ``ltg-depth``, addition
  ``saunshi-addition`` and the induction preset ``saunshi-phop-16`` (or ``saunshi-phop``), with
  each process's peak RSS;
* reasoning-gym 0.1.25 ``family_relationships`` and ``basic_arithmetic`` (``--rg-items`` examples,
  default 100,000) in their own processes; targets: khop >= 50x ``family_relationships``,
  addition >= 100x ``basic_arithmetic``;
* the anchor researchers run today: ``benchmarks/ltg_style_generate.py``, a plain-Python random-walk
  generator written like the Loop-Think-Generalize scripts, making the ``ltg-depth`` shape.

reasoning-gym pins packages that fight benchgen's dev extras, so it can live in its own venv:
``--rg-python /path/to/venv/bin/python`` (default: this interpreter). When it cannot be imported the
script says so and skips only those ratios.

``--scale 1000000,3000000,10000000`` then times khop at those sizes (the ``ltg-depth`` graph, train
hops 4-40, test hops 41-44, ``train-per-hop`` sized to the row count) at ``--workers 1`` and ``2``,
one process each, with peak RSS: time should grow linearly and RSS stay under 2 GiB. The first row,
``python -c "import numpy, pyarrow, pyarrow.parquet, click"``, is the floor no generator that writes
parquet from Python can go below.

Usage: ``python benchmarks/generate.py [--only khop,addition,induction] [--repeats 3]
[--rg-python PY] [--workers N] [--scale ROWS,...] [--check]`` (``--check`` exits 1 when a target is
missed).
"""

from __future__ import annotations

import argparse
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

RG_CODE = (
    "import sys, reasoning_gym\n"
    "ds = reasoning_gym.create_dataset(sys.argv[1], size=int(sys.argv[2]), seed=42)\n"
    "print(sum(1 for i in range(len(ds)) if ds[i]['answer'] is not None))\n")


def run_process(cmd: list[str], repeats: int, before=None) -> tuple[str, float, int]:
    """(last stdout, best wall seconds, peak RSS bytes of the best run) of ``cmd`` as a fresh process."""
    best, rss, out = float("inf"), 0, ""
    for _ in range(repeats):
        if before is not None:
            before()
        t = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=USER_ENV)
        _, status, usage = os.wait4(proc.pid, 0)
        dt = time.perf_counter() - t
        proc.returncode = os.waitstatus_to_exitcode(status)
        stdout, stderr = proc.stdout.read(), proc.stderr.read()
        proc.stdout.close()
        proc.stderr.close()
        if proc.returncode != 0:
            raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}): {stderr.strip()[-500:]}")
        if dt < best:
            best, rss, out = dt, usage.ru_maxrss * 1024, stdout  # ru_maxrss is KiB on Linux
    return out, best, rss


def rg_rate(python: str, name: str, items: int, repeats: int) -> tuple[int, float] | None:
    """(examples, best seconds) of reasoning-gym's ``name`` as a whole process, or None if unavailable."""
    probe = subprocess.run([python, "-c", "import reasoning_gym"], capture_output=True, text=True)
    if probe.returncode != 0:
        print(f"reasoning-gym not importable by {python}; skipping the {name} baseline "
              "(pip install reasoning-gym, or --rg-python a venv that has it)")
        return None
    out, dt, _ = run_process([python, "-c", RG_CODE, name, str(items)], repeats)
    return int(out.strip().splitlines()[-1]), dt


def benchgen_cmd() -> list[str]:
    """The installed console script, as a user types it (``python -m benchgen`` when not on PATH)."""
    exe = shutil.which("benchgen")
    return [exe] if exe else [sys.executable, "-m", "benchgen"]


def rows_written(out: Path) -> int:
    """Rows of a written dataset, from its manifest."""
    import json

    manifest = json.loads((out / "manifest.json").read_text())
    return sum(s["rows"] for s in manifest["splits"].values())


def induction_preset() -> str:
    """The per-p Saunshi preset when it exists (newer releases), else the mixed one."""
    out = subprocess.run(benchgen_cmd() + ["tasks"], capture_output=True, text=True).stdout
    return "saunshi-phop-16" if "saunshi-phop-16" in out else "saunshi-phop"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", default="khop,addition,induction", help="comma-separated task families")
    ap.add_argument("--rg-items", type=int, default=100_000, help="reasoning-gym items per baseline process")
    ap.add_argument("--rg-python", default=sys.executable, help="interpreter that has reasoning-gym")
    ap.add_argument("--repeats", type=int, default=3, help="best of this many processes per figure")
    ap.add_argument("--workers", type=int, default=None, help="pass --workers N to benchgen generate")
    ap.add_argument("--scale", default="", help="comma-separated khop row counts to time at workers 1 and 2")
    ap.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    args = ap.parse_args()
    only = set(args.only.split(","))
    missed = []

    def row(what: str, rows: int, dt: float, extra: str = "", target: str = "", met: bool | None = None) -> None:
        mark = "" if met is None else ("  [met]" if met else "  [MISSED]")
        if met is False:
            missed.append(what)
        print(f"| {what} | {rows:,} | {dt:.2f} | {rows / dt:,.0f} | {extra} | {target}{mark} |", flush=True)

    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs; whole processes, best of {args.repeats}, "
          "one run\n")
    print("| what | rows | s | rows/s | peak RSS / ratio | target |")
    print("|---|---:|---:|---:|---|---|")
    _, floor, _ = run_process([sys.executable, "-c", "import numpy, pyarrow, pyarrow.parquet, click"], args.repeats)
    print(f"| floor: `python -c 'import numpy, pyarrow, pyarrow.parquet, click'` | 0 | {floor:.2f} | – | | |")
    rg = {}
    for name in ("family_relationships", "basic_arithmetic"):
        got = rg_rate(args.rg_python, name, args.rg_items, args.repeats)
        if got is not None:
            rg[name] = got[0] / got[1]
            row(f"reasoning-gym `{name}`", got[0], got[1])

    def ratio(rate: float, base: str, target: float) -> tuple[str, str, bool | None]:
        if base not in rg:
            return "no baseline", "", None
        r = rate / rg[base]
        return f"{r:,.1f}x `{base}`", f">= {target:g}x", r >= target

    jobs = []
    if "khop" in only:
        jobs += [("khop", "grokked-composition", "family_relationships", 50),
                 ("khop", "ltg-depth", "family_relationships", 50)]
    if "addition" in only:
        jobs.append(("addition", "saunshi-addition", "basic_arithmetic", 100))
    if "induction" in only:
        jobs.append(("induction", induction_preset(), None, None))
    workers = ["--workers", str(args.workers)] if args.workers else []
    with tempfile.TemporaryDirectory(prefix="benchgen-bench-") as tmp:
        for task, preset, base, target in jobs:
            out = Path(tmp) / f"{task}-{preset}"
            cmd = benchgen_cmd() + ["generate", task, "--preset", preset, "--out", str(out),
                                    *workers]
            _, dt, rss = run_process(cmd, args.repeats, before=lambda o=out: shutil.rmtree(o, ignore_errors=True))
            n = rows_written(out)
            if base is None:
                row(f"benchgen `{preset}`", n, dt, f"{rss / GIB:.2f} GiB")
                continue
            text, tgt, met = ratio(n / dt, base, target)
            row(f"benchgen `{preset}`", n, dt, f"{rss / GIB:.2f} GiB; {text}", tgt, met)
            if preset == "ltg-depth":
                anchor = Path(tmp) / "ltg-style"
                outp, adt, arss = run_process(
                    [sys.executable, str(ROOT / "benchmarks" / "ltg_style_generate.py"), str(anchor)],
                    args.repeats, before=lambda a=anchor: shutil.rmtree(a, ignore_errors=True))
                an = int(outp.strip().splitlines()[-1])
                row("LTG-style plain Python (`ltg_style_generate.py`)", an, adt,
                    f"{arss / GIB:.2f} GiB; benchgen is {(n / dt) / (an / adt):.1f}x")
        for rows in [int(x) for x in args.scale.split(",") if x.strip()]:
            per_hop = max(1, round((rows - SCALE_FIXED_ROWS) / 37))
            for w in (1, 2):
                out = Path(tmp) / f"scale-{rows}-{w}"
                cmd = benchgen_cmd() + ["generate", "khop", "--preset", "ltg-depth", "--train-hops", "4-40",
                                        "--test-hops", "41-44", "--train-per-hop", str(per_hop),
                                        "--out", str(out), "--workers", str(w), "--no-progress"]
                _, dt, rss = run_process(cmd, 1)
                n = rows_written(out)
                shutil.rmtree(out)
                row(f"khop scale, --workers {w}", n, dt, f"{rss / GIB:.2f} GiB", "< 2 GiB", rss < 2 * GIB)
    print(f"\n{len(missed)} target(s) missed: {', '.join(missed)}" if missed else "\nall measured targets met")
    return 1 if (args.check and missed) else 0


if __name__ == "__main__":
    sys.exit(main())
