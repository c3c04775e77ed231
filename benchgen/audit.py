"""Dataset audit: checks every task shares (hashes, ids, split column, depth histograms), then
the task's own independent re-derivation of its split guarantees."""

from __future__ import annotations

import inspect

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from benchgen import registry
from benchgen.dataset import Dataset
from benchgen.errors import BenchgenError, DatasetError
from benchgen.schema import BASE_FIELDS


def audit_common(ds: Dataset) -> list[str]:
    """Format-level guarantees, independent of the task (one split, one column at a time)."""
    problems = ds.verify_hashes()
    repeats, prefixes_ok = 0, True
    for split in ds.splits:
        schema = pq.read_schema(ds.shards(split)[0])
        for f in BASE_FIELDS:
            if f.name not in schema.names:
                problems.append(f"split '{split}': missing column '{f.name}'")
        t = ds.table(split, columns=["split", "depth"])
        if pc.any(pc.not_equal(t["split"], split)).as_py():
            problems.append(f"split '{split}': rows whose split column is not '{split}'")
        d, c = np.unique(t["depth"].to_numpy(), return_counts=True)
        del t
        hist = {str(k): int(v) for k, v in zip(d.tolist(), c.tolist())}
        if hist != ds.manifest["splits"][split]["depths"]:
            problems.append(f"split '{split}': depth histogram {hist} != manifest {ds.manifest['splits'][split]['depths']}")
        ids = ds.table(split, columns=["id"])["id"]
        prefix = f"{ds.task}/{split}/"
        if not pc.all(pc.starts_with(ids, prefix)).as_py():
            problems.append(f"split '{split}': ids not of the form {prefix}NNNNNNNNN")
            prefixes_ok = False
        repeats += len(ids) - pc.count_distinct(ids).as_py()
    if not prefixes_ok:  # ids of different splits can only collide when a prefix is wrong
        ids = pa.chunked_array([c for s in ds.splits for c in ds.table(s, columns=["id"])["id"].chunks],
                               type=pa.string())
        repeats = len(ids) - pc.count_distinct(ids).as_py()
    if repeats:
        problems.append(f"ids are not unique across the dataset ({repeats} repeats)")
    return problems


def samples_rows(task) -> bool:
    """Whether a task's audit takes ``sample`` (walks a seeded sample of rows per split)."""
    return "sample" in inspect.signature(task.audit).parameters


def audit(ds: Dataset, validity: bool = True, sample: int | None = None) -> list[str]:
    """All problems found (empty list = every guarantee holds); ``validity`` adds the baseline check.

    ``sample``: the task's per-row re-derivation walks only that many seeded rows per split (tasks
    whose audit supports it); hashes, ids, depth histograms and validity still cover every row.
    """
    problems: list[str] = []
    task = registry.get_task(ds.task)
    if sample is not None and (sample < 1 or not samples_rows(task)):
        raise BenchgenError(f"audit --sample {sample}: " + ("expected a row count >= 1" if sample < 1 else
                            f"task {ds.task!r} audits every row (its audit takes no sample)"))
    try:
        problems = audit_common(ds)
        problems += list(task.audit(ds) if sample is None else task.audit(ds, sample=sample))
    except (DatasetError, pa.ArrowException, OSError, KeyError) as e:  # damaged shards or a missing
        first = str(e).splitlines()[0][:200] if str(e) else type(e).__name__  # column: violations, not a traceback
        # keep what the common checks found (e.g. the missing column that stopped the task audit)
        return [*(problems or ds.verify_hashes()), f"dataset files cannot be read ({first})"]
    if validity:
        from benchgen import validity as check

        problems += check.audit_safely(ds)
    return problems
