"""Worker processes for generators whose work units are pure functions of (config, seed, unit).

A task's ``generate(..., workers=None)`` resolves the count with :func:`resolve_workers` and, for
datasets large enough to pay for process start-up, runs its units on :func:`spawn_pool`. Units
draw randomness keyed by purpose and unit (``benchgen.seeding``), never by worker, so the bytes
written are identical for any number of workers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from benchgen.errors import ConfigError

if TYPE_CHECKING:
    from concurrent.futures import ProcessPoolExecutor


def resolve_workers(workers: int | None) -> int:
    """The worker count to use: ``None`` means the CPUs this process may run on, below 1 is a ConfigError.

    The affinity mask (taskset, cgroup cpusets, Slurm) rather than the machine's core count, so a job
    given 4 of 64 cores starts 4 workers.
    """
    import os

    if workers is None:
        workers = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if workers < 1:
        raise ConfigError("workers", f"expected at least 1, got {workers}")
    return workers


def spawn_pool(workers: int) -> ProcessPoolExecutor:
    """A spawn-safe process pool (workers import the unit's module; arguments must be plain picklable data)."""
    import multiprocessing
    from concurrent.futures import (
        ProcessPoolExecutor,  # lazy: multiprocessing costs imports in-process runs skip
    )

    return ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"))
