"""Benchmark: score 10M predictions (1M examples x 10 loop counts) with every metric.

Builds a synthetic khop-like dataset (1M rows over test_id / test_depth, depths 2..21, answers
``<e_k>`` over 2,000 entities) in a temp dir, and a predictions table with loops, margin,
entropy and kl_prev (so margins, halting and the oracle best loop all run). Times
``evaluators.evaluate`` (scoring, cells and all metrics, 1,000 bootstrap resamples) and prints
seconds, rows/s and the process's peak RSS against the targets (10 s, 3 GiB on 2 CPU cores).

    python benchmarks/evaluate.py [--rows 1000000] [--loops 10] [--shuffled] [--file]

``--shuffled`` also times predictions in random row order (the id join then hashes every row
instead of one block of ids).
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchgen.dataset import DatasetWriter  # noqa: E402
from benchgen.pipeline.card import render_card  # noqa: E402
from benchgen.schema import example_schema, make_ids  # noqa: E402
from benchgen.vocab import Vocab, list_array_from_matrix  # noqa: E402

TARGET_S, TARGET_GIB = 10.0, 3.0
N_ENT = 2000


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def rss_gib() -> float:
    """Current resident set size (Linux /proc; NaN elsewhere)."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return float("nan")
    return pages * resource.getpagesize() / 2**30


def build_dataset(out: Path, rows: int, rng: np.random.Generator) -> tuple[Path, np.ndarray]:
    vocab = Vocab(["<pad>", "<bos>", "<eos>", "<sep>"] + [f"<e_{i}>" for i in range(N_ENT)])
    half = rows // 2
    tails = rng.integers(0, N_ENT, size=rows)
    with DatasetWriter(out, task="bench", config={"rows": rows}, seed=0, vocab=vocab,
                       schema=example_schema()) as w:
        for split, lo, hi, depths in (("test_id", 0, half, (2, 12)), ("test_depth", half, rows, (12, 22))):
            n = hi - lo
            tgt = (tails[lo:hi] + 4).astype(np.int32).reshape(-1, 1)
            w.write_split(split, [pa.table({
                "id": make_ids("bench", split, 0, n),
                "split": pa.array(np.full(n, split, dtype=object), pa.string()),
                "depth": pa.array(rng.integers(*depths, size=n).astype(np.int32)),
                "input_ids": list_array_from_matrix(np.zeros((n, 1), np.int32)),
                "target_ids": list_array_from_matrix(tgt),
                "prompt": pa.array(np.full(n, "", dtype=object), pa.string()),
                "answer": vocab.render(tgt),
            }, schema=example_schema())])
        w.finish()
        w.commit(validity=None, card=render_card(w.manifest()))
    return out, tails


def build_predictions(ds_path: Path, tails: np.ndarray, loops: int, rng: np.random.Generator) -> pa.Table:
    from benchgen.dataset import load

    ds = load(ds_path)
    ids = pa.concat_arrays([ds.table(s, columns=["id"]).column("id").combine_chunks() for s in ds.splits])
    n = len(ids)
    reps = np.tile(np.arange(n), loops)                    # loop-major, as predict-oracle/adapters emit
    t = np.repeat(np.arange(1, loops + 1, dtype=np.int32), n)
    p_right = 0.3 + 0.6 * t / loops                        # accuracy rises with loops
    right = rng.random(n * loops) < p_right
    guess = np.where(right, tails[reps], (tails[reps] + 1 + rng.integers(0, N_ENT - 1, n * loops)) % N_ENT)
    names = pa.array(np.array([f"<e_{i}>" for i in range(N_ENT)], dtype=object), pa.string())
    return pa.table({
        "id": ids.take(pa.array(reps)),
        "prediction": names.take(pa.array(guess)),
        "loops": pa.array(t),
        "margin": pa.array(rng.normal(size=n * loops)),
        "entropy": pa.array(rng.random(n * loops) * 4),
        "kl_prev": pa.array(np.where(t > 1, rng.random(n * loops) * 0.05, np.nan)),
    })


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--loops", type=int, default=10)
    ap.add_argument("--shuffled", action="store_true", help="also time predictions in random row order")
    ap.add_argument("--file", action="store_true", help="also time reading the predictions from a parquet file")
    args = ap.parse_args()
    import benchgen.evaluators as evaluators

    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        ds_path, tails = build_dataset(Path(tmp) / "ds", args.rows, rng)
        preds = build_predictions(ds_path, tails, args.loops, rng)
        print(f"setup: dataset {args.rows:,} rows + {preds.num_rows:,} predictions in "
              f"{time.perf_counter() - t0:.1f} s (not timed); peak RSS so far {peak_rss_gib():.2f} GiB")
        runs = [("loop-major order", preds)]
        if args.shuffled:
            runs.append(("shuffled order", preds.take(pa.array(rng.permutation(preds.num_rows)))))
        for label, table in runs:
            before = rss_gib()
            t0 = time.perf_counter()
            results = evaluators.evaluate(ds_path, table, model_name="bench")
            dt = time.perf_counter() - t0
            m = results.metrics
            print(f"evaluate ({label}): {table.num_rows:,} predictions, {len(results.cells)} cells, "
                  f"all metrics in {dt:.2f} s ({table.num_rows / dt / 1e6:.2f} M predictions/s); "
                  f"target < {TARGET_S:.0f} s: {'OK' if dt < TARGET_S else 'MISSED'}")
            print(f"  RSS before {before:.2f} GiB (dataset + predictions in memory), "
                  f"process peak so far {peak_rss_gib():.2f} GiB")
            print(f"  test_depth accuracy {m['per_split']['test_depth']['accuracy']:.3f}, "
                  f"halting accuracy {m['halting']['per_split']['test_depth']['accuracy']:.3f}, "
                  f"oracle best loop {m['oracle_best_loop']['per_split']['test_depth']['accuracy']:.3f}")
        if args.file:
            path = evaluators.write_predictions(preds, Path(tmp) / "preds.parquet")
            t0 = time.perf_counter()
            results = evaluators.evaluate(ds_path, path, model_name="bench")
            dt = time.perf_counter() - t0
            print(f"evaluate (from {path.stat().st_size / 2**20:.0f} MiB parquet file, read included): "
                  f"{dt:.2f} s; target < {TARGET_S:.0f} s: {'OK' if dt < TARGET_S else 'MISSED'}")
        peak = peak_rss_gib()
        print(f"peak RSS (whole process, incl. setup): {peak:.2f} GiB; target < {TARGET_GIB:.0f} GiB: "
              f"{'OK' if peak < TARGET_GIB else 'MISSED'}")


if __name__ == "__main__":
    main()
