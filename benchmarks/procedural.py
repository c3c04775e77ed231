"""Procedural item throughput on one core: ``benchgen.procedural`` vs reasoning-gym, whole processes.

Each figure is a fresh process pinned to one CPU (``taskset -c 0``, BLAS/OpenMP threads 1) that imports,
builds the dataset and reads N items as dicts ``{"question", "answer", "metadata"}`` (interpreter start
and imports included), best of ``--repeats`` with the spread, all in one run:

* ``benchgen.procedural("khop", preset=...)`` iterated for ``--items`` items (target: >= 100,000 items/s);
* random access ``ds[i]`` at indices spread over 100x as many items (each mostly regenerates its block);
* reasoning-gym 0.1.25 ``family_relationships`` (``--rg-items`` items) in its own venv
  (``--rg-python``; reasoning-gym pins packages that conflict with benchgen's lmeval extra).

Usage: ``python benchmarks/procedural.py [--items 1000000] [--rg-items 20000] [--rg-python PY]
[--preset khop-small] [--repeats 3] [--check]`` (``--check`` exits 1 when the target is missed).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[var] = "1"  # one core: before generate.py snapshots the environment
sys.path.insert(0, str(Path(__file__).resolve().parent))
from generate import RG_CODE, run_process  # noqa: E402  (the same whole-process runner)

TARGET = 100_000
ITER_CODE = (
    "import sys, itertools, benchgen\n"
    "ds = benchgen.procedural('khop', preset=sys.argv[1], seed=0)\n"
    "n = sum(1 for item in itertools.islice(iter(ds), int(sys.argv[2])) if item['answer'])\n"
    "print(n)\n")
RANDOM_CODE = (
    "import sys, random, benchgen\n"
    "ds = benchgen.procedural('khop', preset=sys.argv[1], seed=0)\n"
    "idx = random.Random(0).sample(range(100 * int(sys.argv[2])), int(sys.argv[2]))\n"
    "print(sum(1 for i in idx if ds[i]['answer']))\n")


def pinned(cmd: list[str]) -> list[str]:
    """``cmd`` on CPU 0 when taskset exists (else as is, and the table says so)."""
    return ["taskset", "-c", "0", *cmd] if shutil.which("taskset") else cmd


def timed(cmd: list[str], repeats: int) -> tuple[int, list[float]]:
    """(items printed, wall seconds of each of ``repeats`` fresh processes)."""
    times, out = [], ""
    for _ in range(repeats):
        out, dt, _ = run_process(pinned(cmd), 1)
        times.append(dt)
    return int(out.strip().splitlines()[-1]), times


def main() -> int:
    """Run the three figures and print the table (exit 1 under --check when the target is missed)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--items", type=int, default=1_000_000, help="benchgen items per process")
    ap.add_argument("--random-items", type=int, default=5_000,
                    help="items read by random access (indices shuffled over 100x as many: blocks regenerate)")
    ap.add_argument("--rg-items", type=int, default=20_000, help="reasoning-gym items per process")
    ap.add_argument("--rg-python", default=sys.executable, help="interpreter that has reasoning-gym 0.1.25")
    ap.add_argument("--preset", default="khop-small", help="khop preset")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--check", action="store_true", help="exit 1 when benchgen is below the target")
    args = ap.parse_args()
    print(f"python {sys.version.split()[0]}; load {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f}; "
          f"{'pinned to CPU 0' if shutil.which('taskset') else 'NOT pinned (no taskset)'}; whole processes, "
          f"best of {args.repeats} (all runs in brackets)\n")
    print("| what | items | best s | items/s (best) | all runs, s | target |")
    print("|---|---:|---:|---:|---|---|")
    rates = {}

    def row(what: str, n: int, times: list[float], target: str = "") -> None:
        """Print one table row and remember its rate."""
        rates[what] = n / min(times)
        print(f"| {what} | {n:,} | {min(times):.2f} | {rates[what]:,.0f} | "
              f"{', '.join(f'{t:.2f}' for t in times)} | {target} |", flush=True)

    n, times = timed([sys.executable, "-c", ITER_CODE, args.preset, str(args.items)], args.repeats)
    met = n / min(times) >= TARGET
    row(f"benchgen.procedural khop `{args.preset}`, iterated", n, times,
        f">= {TARGET:,}/s {'[met]' if met else '[MISSED]'}")
    n, times = timed([sys.executable, "-c", RANDOM_CODE, args.preset, str(args.random_items)], args.repeats)
    row(f"benchgen.procedural khop `{args.preset}`, random ds[i]", n, times)
    probe = run_process([args.rg_python, "-c", "from importlib.metadata import version; print(version('reasoning-gym'))"], 1)[0]
    n, times = timed([args.rg_python, "-c", RG_CODE, "family_relationships", str(args.rg_items)], args.repeats)
    row(f"reasoning-gym {probe.strip()} `family_relationships`", n, times)
    ratio = rates[f"benchgen.procedural khop `{args.preset}`, iterated"] / rates[
        f"reasoning-gym {probe.strip()} `family_relationships`"]
    print(f"\nbenchgen.procedural khop is {ratio:,.0f}x reasoning-gym family_relationships on one core; load after: "
          f"{os.getloadavg()[0]:.2f}")
    return 1 if (args.check and not met) else 0


if __name__ == "__main__":
    sys.exit(main())
