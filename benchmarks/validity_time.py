"""Seconds of the validity measurement ``benchgen generate`` runs at the end, on a written dataset.

In a fresh process, with benchgen, the task and its baselines imported first (generate has them
loaded already), the time of one ``benchgen.pipeline.validity.measure`` on the files: what the
cheap baselines cost a generate. ``benchmarks/generate.py`` divides it by generate's whole time.

Usage: ``python benchmarks/validity_time.py DATASET_DIR``; prints the seconds.
"""

from __future__ import annotations

import sys
import time


def main() -> None:
    """Print the seconds of one validity measurement on the dataset given."""
    from benchgen import registry
    from benchgen.dataset import load
    from benchgen.pipeline.validity import measure
    from benchgen.tasks.baselines import for_task

    ds = load(sys.argv[1])
    task = registry.get_task(ds.task)
    for_task(task)  # the task's baselines module, as generate has it imported
    t0 = time.perf_counter()
    measure(ds, task)
    print(f"{time.perf_counter() - t0:.6f}")


if __name__ == "__main__":
    main()
