"""Fuzz `benchgen generate` for every task with random option values (issue #10).

Each example overrides a few options of a small base config with random numbers, ranges, floats
(nan/inf included) or strings, and asserts: either exit 0 and the written dataset passes the
audit's split guarantees, or exit 2 with one stderr line and no traceback, within a time limit;
never a leftover temp directory.
"""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from benchgen import registry
from benchgen.cli import main
from benchgen.config import field_kind

BASE = {
    "khop": ["--structure", "permutation", "--num-entities", "12", "--num-relations", "3", "--out-degree", "3",
             "--train-hops", "2", "--test-hops", "3", "--train-per-hop", "30", "--valid-per-hop", "4",
             "--test-per-hop", "4", "--systematic-per-hop", "4"],
    "addition": ["--preset", "addition-small", "--train-per-cell", "20", "--valid-per-cell", "4",
                 "--test-per-cell", "4"],
    "induction": ["--preset", "phop-small", "--train-per-cell", "20", "--valid-per-cell", "4",
                  "--test-per-cell", "4"],
}
TIME_LIMIT_S = 30.0

HUGE = st.sampled_from([10**7, 10**9, 10**12, 2**63, -(2**40)])
SMALL_INT = st.integers(-3, 40)
PLAUSIBLE = st.integers(1, 8)  # often valid, so the success path (and its audit) is exercised too
INTS = st.one_of(PLAUSIBLE, PLAUSIBLE, SMALL_INT, HUGE).map(str)
FLOATS = st.one_of(st.floats(-2, 10, allow_nan=False), st.sampled_from([float("nan"), float("inf"), -float("inf"),
                                                                        1e300])).map(str)
RANGES = st.one_of(
    st.tuples(PLAUSIBLE, PLAUSIBLE).map(lambda t: f"{min(t)}-{max(t)}"),
    st.tuples(SMALL_INT, SMALL_INT).map(lambda t: f"{t[0]}-{t[1]}"),
    st.lists(SMALL_INT, min_size=1, max_size=4).map(lambda v: ",".join(map(str, v))),
    st.tuples(st.integers(0, 5), HUGE).map(lambda t: f"{t[0]}-{t[1]}"),
)
CELLS = st.lists(st.tuples(SMALL_INT, SMALL_INT), min_size=1, max_size=3).map(
    lambda v: ",".join(f"{a}x{b}" for a, b in v))
TEXT = st.one_of(st.text(max_size=12), st.sampled_from(["", "-", "2-", "x", "1e3", "0x10", "３", "nan", "2--5"]))


def value_strategy(f: dataclasses.Field):
    """Random CLI text for one config field: mostly its own kind, sometimes anything."""
    kind, _ = field_kind(f)
    own = {"int": INTS, "float": FLOATS, "intset": RANGES, "cells": CELLS}.get(kind)
    if kind in ("bool", "choice") or own is None:
        return None
    return st.one_of(own, own, own, TEXT, INTS, RANGES)


def options(task: str):
    """A few (flag, value) overrides for ``task``."""
    mod = registry.get_task(task)
    pairs = []
    for f in dataclasses.fields(mod.config):
        s = value_strategy(f)
        if s is not None:
            pairs.append(st.tuples(st.just("--" + f.name.replace("_", "-")), s))
    return st.lists(st.one_of(*pairs), min_size=1, max_size=3, unique_by=lambda p: p[0])


def check(task: str, overrides: list[tuple[str, str]]) -> None:
    from benchgen.dataset import load
    from benchgen.pipeline.audit import audit

    root = Path(tempfile.mkdtemp(prefix="fuzz-"))
    try:
        out = root / "ds"
        args = ["generate", task, *BASE[task], "--no-progress", "--out", str(out)]
        for flag, value in overrides:
            args += [f"{flag}={value}"]
        t0 = time.perf_counter()
        r = CliRunner().invoke(main, args)
        elapsed = time.perf_counter() - t0
        assert elapsed < TIME_LIMIT_S, (overrides, elapsed)
        assert r.exception is None or isinstance(r.exception, SystemExit), (overrides, repr(r.exception))
        assert "Traceback" not in r.stderr
        if r.exit_code == 0:
            # structural + split guarantees (the statistical validity baselines mean little on 4-row splits)
            problems = audit(load(out), validity=False)
            assert problems == [], (overrides, problems)
        else:
            assert r.exit_code == 2, (overrides, r.exit_code, r.stderr)
            lines = r.stderr.strip().splitlines()
            assert len(lines) == 1 and lines[0].startswith("error: "), (overrides, r.stderr)
            assert not out.exists()
        assert [p.name for p in root.iterdir() if p.name.startswith(".")] == []
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.mark.parametrize("task", registry.task_names())
def test_fuzz_generate_options(task):
    assert task in BASE, f"add a small base config for task {task!r} to BASE"

    @settings(max_examples=15, deadline=None, derandomize=True,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(options(task))
    def run(overrides):
        check(task, overrides)

    run()
