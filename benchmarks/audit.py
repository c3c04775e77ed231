"""``benchgen audit`` at scale: whole processes on 10M-row khop, addition and p-hop datasets.

    python benchmarks/audit.py --rows 10000000 --tasks khop,addition --workers 2
    python benchmarks/audit.py --rows 1000000 --baseline /path/to/old/venv/bin/benchgen

Generates each dataset once (khop: the ``ltg-depth`` graph, train hops 4-40, test hops 41-44;
addition: ``saunshi-addition`` with train n in {4, 8, 16} at widths 3 and 4; induction:
``phop-grid``, 3 train cells of length 256-512), each sized to about ``--rows`` rows, then times ``benchgen audit DIR --workers N`` (every check: hashes,
format, the task's per-row re-derivation, validity) as a fresh process: best of ``--repeats`` with
the spread, peak RSS, ``uptime`` load before and after. Targets at 10M rows: <= 60 s and < 2 GiB
(MET / MISSED). ``--baseline`` also times another checkout's ``benchgen audit`` (e.g. the plain
per-row audits) on the same files in the same run.
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

GIB = 1 << 30


def shape(task: str, rows: int) -> list[str]:
    """``benchgen generate`` arguments for about ``rows`` rows of ``task``."""
    if task == "khop":
        per_hop = max(1, round((rows - 2_000 - 37 * 1_500 - 4 * 750) / 37))
        return ["khop", "--preset", "ltg-depth", "--train-hops", "4-40", "--test-hops", "41-44",
                "--train-per-hop", str(per_hop)]
    if task == "addition":
        return ["addition", "--preset", "saunshi-addition", "--train-operands", "4,8,16", "--train-widths", "3,4", "--interp-operands", "12",
                "--train-per-cell", str(max(1, rows // 6))]
    return ["induction", "--preset", "phop-grid", "--train-per-cell", str(max(1, rows // 3))]


def timed(cmd: list[str]) -> tuple[float, int, int, float]:
    """(wall seconds, peak RSS bytes, exit code, CPU seconds with its workers) of one process."""
    t = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.stderr.read()
    proc.stderr.close()
    cpu = usage.ru_utime + usage.ru_stime
    return time.perf_counter() - t, usage.ru_maxrss * 1024, os.waitstatus_to_exitcode(status), cpu


def main() -> int:
    """Generate each dataset, time the audits, print the table and the targets."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--tasks", default="khop,addition,induction")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--baseline", default="", help="another checkout's benchgen, timed on the same files")
    ap.add_argument("--keep", default="", help="directory to keep (and reuse) the generated datasets in")
    args = ap.parse_args()
    ours = str(Path(sys.executable).with_name("benchgen"))
    missed = []
    print(f"{os.cpu_count()} CPUs, audit --workers {args.workers}, best of {args.repeats}; load {os.getloadavg()}")
    print("| dataset | code | wall s (best; spread) | CPU s (all processes) | peak RSS | targets |")
    print("|---|---|---:|---:|---:|---|")
    with tempfile.TemporaryDirectory(prefix="audit-bench-") as t:
        root = Path(args.keep or t)
        for task in args.tasks.split(","):
            data = root / f"{task}-{args.rows}"
            if not (data / "manifest.json").exists():
                subprocess.run([ours, "generate", *shape(task, args.rows), "--out", str(data), "--overwrite",
                                "--no-progress"], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            n = sum(i["rows"] for i in __import__("json").loads((data / "manifest.json").read_text())["splits"].values())
            for name, exe in [("this checkout", ours)] + ([("baseline", args.baseline)] if args.baseline else []):
                runs = [timed([exe, "audit", str(data), *(["--workers", str(args.workers)] if name != "baseline"
                                                          else [])]) for _ in range(args.repeats)]
                if any(r[2] not in (0, 1) for r in runs):
                    raise SystemExit(f"{exe} audit {data} failed")
                best = min(runs)
                spread = max(r[0] for r in runs) - best[0]
                targets = ""
                if name == "this checkout" and n >= 9_000_000:
                    ok = best[0] <= 60 and best[1] < 2 * GIB
                    targets = f"<= 60 s and < 2 GiB {'MET' if ok else 'MISSED'}"
                    if not ok:
                        missed.append(task)
                print(f"| {task} {n:,} rows | {name} | {best[0]:.1f} (±{spread:.1f}) | {best[3]:.1f} | "
                      f"{best[1] / GIB:.2f} GiB | {targets} |", flush=True)
            if not args.keep:
                shutil.rmtree(data)
    print(f"load at end {os.getloadavg()}; {len(missed)} missed" + (f": {', '.join(missed)}" if missed else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
