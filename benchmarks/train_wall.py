"""Whole ``benchgen train`` runs of ``cpu-depth-looped`` (4,000 steps, one thread) against a baseline
checkout on the same machine: wall and CPU time, and the final accuracies, per seed.

    python benchmarks/train_wall.py --baseline /path/to/old/venv/bin/benchgen --seeds 0,1,2

Generates ``khop --preset khop-depth-small`` once (with this checkout; both train on the same files),
then for each seed runs the baseline and this checkout one after the other (never two models at
once), each as ``benchgen train --data D --preset cpu-depth-looped --seed S --out R``. Reports per
run the wall seconds, CPU seconds (user + sys, less sensitive to other load) and the last
evaluation's accuracies, then best of the seeds with the spread; target: this checkout's wall time
<= 0.5x the baseline's (MET / MISSED), with ``uptime`` load printed before and after each run.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def run(cmd: list[str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the child) of one process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def final_accuracy(run_dir: Path) -> dict[str, float]:
    """The last evaluation's accuracy per split, from metrics.jsonl."""
    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines() if x.strip()]
    return [r for r in rows if r["kind"] == "eval"][-1]["acc"]


def main() -> int:
    """Run every seed with both checkouts and print the table and the target."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--baseline", required=True, help="the baseline checkout's benchgen console script")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--preset", default="cpu-depth-looped")
    ap.add_argument("--data-preset", default="khop-depth-small")
    args = ap.parse_args()
    ours = str(Path(sys.executable).with_name("benchgen"))
    figures: dict[str, list[tuple[float, float]]] = {"baseline": [], "this checkout": []}
    with tempfile.TemporaryDirectory(prefix="train-wall-") as t:
        data = Path(t) / "data"
        subprocess.run([ours, "generate", "khop", "--preset", args.data_preset, "--out", str(data)], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        print("| code | seed | wall s | CPU s | load before -> after | final accuracy |")
        print("|---|---:|---:|---:|---|---|")
        for seed in args.seeds.split(","):
            for name, exe in (("baseline", args.baseline), ("this checkout", ours)):
                out = Path(t) / f"{name.replace(' ', '-')}-{seed}"
                load0 = os.getloadavg()[0]
                wall, cpu = run([exe, "train", "--data", str(data), "--preset", args.preset, "--seed", seed,
                                 "--out", str(out), "--no-progress"])
                figures[name].append((wall, cpu))
                acc = ", ".join(f"{k} {v:.3f}" for k, v in final_accuracy(out).items())
                print(f"| {name} | {seed} | {wall:.1f} | {cpu:.1f} | {load0:.2f} -> {os.getloadavg()[0]:.2f} | "
                      f"{acc} |", flush=True)
    (bw, bc), (ow, oc) = ([min(x[i] for x in figures[n]) for i in (0, 1)] for n in ("baseline", "this checkout"))
    spread = {n: max(x[0] for x in f) - min(x[0] for x in f) for n, f in figures.items()}
    ok = ow <= 0.5 * bw
    print(f"\nbest wall: baseline {bw:.1f} s (spread {spread['baseline']:.1f}), this checkout {ow:.1f} s (spread "
          f"{spread['this checkout']:.1f}): {ow / bw:.2f}x <= 0.5x {'MET' if ok else 'MISSED'}; best CPU: "
          f"{bc:.1f} s vs {oc:.1f} s ({oc / bc:.2f}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
