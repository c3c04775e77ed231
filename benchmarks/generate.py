"""Throughput of the dataset generators, end to end (sampling + rendering + parquet write), against
reasoning-gym in the same run on the same machine.

Measures, printing a table and ratios:

* khop ``grokked-composition`` and ``ltg-depth``: rows/s through ``tasks.khop.generate`` into a
  temporary directory; target >= 50x reasoning-gym ``family_relationships`` examples/s;
* peak resident memory of ``ltg-depth`` generation in a fresh subprocess; target < 1 GiB;
* addition ``saunshi-addition``: rows/s building every split in memory (the like-for-like figure:
  reasoning-gym also returns in-memory examples), target >= 100x reasoning-gym
  ``basic_arithmetic`` examples/s; and rows/s end to end including the parquet write;
* induction ``saunshi-phop``: the sampler alone (draw + dedup hash + arrow rows) on its
  length-256 cells, target >= 100,000 sequences/s; all splits in memory; end to end.

reasoning-gym is an optional bench dependency (``pip install reasoning-gym``); when it cannot be
imported the script says so and skips only the baseline and the ratios that need it.

Usage: ``python benchmarks/generate.py [--only khop,addition,induction] [--rg-items N] [--check]``
(``--check`` exits 1 when a target is missed).
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
sys.path.insert(0, str(ROOT))

from benchgen.config import build_config  # noqa: E402
from benchgen.registry import get_task  # noqa: E402

GIB = 1 << 30


def reasoning_gym_rate(name: str, items: int) -> float | None:
    """Examples/s of reasoning-gym's dataset ``name`` (None when reasoning-gym is unavailable)."""
    try:
        import reasoning_gym
    except ImportError as e:
        print(f"reasoning-gym not importable ({e}); skipping the {name} baseline "
              f"(pip install reasoning-gym)")
        return None
    t = time.perf_counter()
    ds = reasoning_gym.create_dataset(name, size=items, seed=42)
    n = sum(1 for i in range(len(ds)) if ds[i]["answer"] is not None)
    return n / (time.perf_counter() - t)


def rg_version() -> str:
    try:
        from importlib.metadata import version

        return version("reasoning-gym")
    except Exception:  # noqa: BLE001 - informational only
        return "?"


def time_generate(task: str, preset: str, workdir: Path, repeats: int = 3) -> tuple[int, float]:
    """(rows written, best seconds of ``repeats``) of one preset generated end to end into ``workdir``."""
    from benchgen.dataset import load

    mod = get_task(task)
    cfg = build_config(mod.CONFIG, mod.PRESETS, preset, {})
    out = workdir / f"{task}-{preset}"
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        mod.generate(cfg, out, overwrite=True, progress=False)
        best = min(best, time.perf_counter() - t)
        rows = sum(s["rows"] for s in load(out).manifest["splits"].values())
        shutil.rmtree(out, ignore_errors=True)
    return rows, best


def memory_rate(task: str, preset: str) -> tuple[int, float]:
    """(rows, seconds) of building every split of a grid preset as arrow tables in memory (sampling,
    dedup, rendering, ids, train shuffle; no parquet write): the like-for-like figure against
    reasoning-gym, which also returns in-memory examples."""
    from benchgen.tasks.grid import split_tables

    mod = get_task(task)
    cfg = build_config(mod.CONFIG, mod.PRESETS, preset, {})
    t = time.perf_counter()
    n = 0
    for _, tables in split_tables(mod.NAME, cfg.grid(), mod.Sampler(cfg), cfg.counts(), cfg.seed,
                                  "train_per_cell", mod.SCHEMA, lambda k: None):
        for table in tables:
            n += table.num_rows
    return n, time.perf_counter() - t


def sampler_rate(preset: str, width: int, rows: int = 131072) -> float:
    """Sequences/s of the p-hop sampler alone (draw, dedup hash, arrow rows) on ``preset``'s
    training cells of sequence length ``width``."""
    import numpy as np
    from benchgen.tasks import induction
    from benchgen.tasks.grid import row_hash

    cfg = build_config(induction.InductionConfig, induction.PRESETS, preset, {})
    s = induction.Sampler(cfg)
    cells = [c for c in cfg.grid().train_cells() if c[1] == width]
    rng = np.random.default_rng(0)
    t = time.perf_counter()
    done = 0
    for cell in cells:
        for _ in range(max(1, rows // len(cells) // 65536)):
            r = s.draw(rng, cell, 65536)
            row_hash(r["key"])
            s.table(r, cell, "train")
            done += 65536
    return done / (time.perf_counter() - t)


def peak_memory(task: str, preset: str, workdir: Path) -> int:
    """Peak RSS in bytes of generating one preset in a fresh Python process."""
    code = (
        "import resource, sys\n"
        f"sys.path.insert(0, {str(ROOT)!r})\n"
        "from benchgen.config import build_config\n"
        "from benchgen.registry import get_task\n"
        f"mod = get_task({task!r})\n"
        f"cfg = build_config(mod.CONFIG, mod.PRESETS, {preset!r}, {{}})\n"
        f"mod.generate(cfg, {str(workdir / 'mem')!r}, overwrite=True, progress=False)\n"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    shutil.rmtree(workdir / "mem", ignore_errors=True)
    return int(out.stdout.strip().splitlines()[-1]) * 1024  # ru_maxrss is KiB on Linux


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", default="khop,addition,induction", help="comma-separated task families")
    ap.add_argument("--rg-items", type=int, default=20000, help="reasoning-gym items per baseline")
    ap.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    args = ap.parse_args()
    only = set(args.only.split(","))
    results: list[tuple[str, str, str, bool | None]] = []  # (what, figure, target, met)

    def row(what: str, figure: str, target: str = "", met: bool | None = None) -> None:
        results.append((what, figure, target, met))
        mark = "" if met is None else ("  [met]" if met else "  [MISSED]")
        print(f"{what:<44} {figure:>22}  {target}{mark}", flush=True)

    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs; every figure from this one run\n")
    rg: dict[str, float | None] = {}

    def baselines(when: str) -> None:
        """Measure reasoning-gym; ratios use the 'before' run, the 'after' run shows how much the
        machine's load moved during the benchmark (ratios are only as steady as the machine)."""
        for name in ("family_relationships", "basic_arithmetic"):
            rate = reasoning_gym_rate(name, args.rg_items)
            if rate is None:
                rg[name] = None
                continue
            rg.setdefault(name, rate)
            row(f"reasoning-gym {rg_version()} {name} ({when})", f"{rate:,.0f} ex/s")

    baselines("before")
    with tempfile.TemporaryDirectory(prefix="benchgen-bench-") as tmp:
        work = Path(tmp)
        if "khop" in only:
            for preset in ("grokked-composition", "ltg-depth"):
                n, dt = time_generate("khop", preset, work)
                rate = n / dt
                base = rg.get("family_relationships")
                ratio = f"{rate / base:,.0f}x family_relationships" if base else "no baseline"
                row(f"khop {preset} ({n:,} rows, {dt:.1f} s)", f"{rate:,.0f} rows/s",
                    f"{ratio} (target >= 50x)", (rate >= 50 * base) if base else None)
            mem = peak_memory("khop", "ltg-depth", work)
            row("khop ltg-depth peak RSS (subprocess)", f"{mem / GIB:.2f} GiB", "target < 1 GiB", mem < GIB)
        if "addition" in only:
            base = rg.get("basic_arithmetic")
            n, dt = memory_rate("addition", "saunshi-addition")
            rate = n / dt
            ratio = f"{rate / base:,.0f}x basic_arithmetic" if base else "no baseline"
            row(f"addition saunshi-addition in memory ({dt:.1f} s)", f"{rate:,.0f} rows/s",
                f"{ratio} (target >= 100x)", (rate >= 100 * base) if base else None)
            n, dt = time_generate("addition", "saunshi-addition", work)
            rate = n / dt
            ratio = f"{rate / base:,.0f}x basic_arithmetic" if base else "no baseline"
            row(f"addition saunshi-addition to parquet ({n:,} rows, {dt:.1f} s)", f"{rate:,.0f} rows/s",
                f"{ratio}, end to end")
        if "induction" in only:
            rate = sampler_rate("saunshi-phop", 256)
            row("induction sampler, length 256 (no write)", f"{rate:,.0f} seq/s", "target >= 100,000 seq/s",
                rate >= 100_000)
            n, dt = memory_rate("induction", "saunshi-phop")
            row(f"induction saunshi-phop in memory ({dt:.1f} s)", f"{n / dt:,.0f} rows/s",
                "all splits, lengths 128 + 256")
            n, dt = time_generate("induction", "saunshi-phop", work)
            row(f"induction saunshi-phop to parquet ({n:,} rows, {dt:.1f} s)", f"{n / dt:,.0f} rows/s",
                "end to end")
    if any(v is not None for v in rg.values()):
        baselines("after")
        print("(ratios use the 'before' baseline; compare 'after' to see how much the load moved)")
    missed = [r for r in results if r[3] is False]
    print(f"\n{len(missed)} target(s) missed" if missed else "\nall measured targets met")
    return 1 if (args.check and missed) else 0


if __name__ == "__main__":
    sys.exit(main())
