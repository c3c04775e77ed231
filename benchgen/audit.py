"""Dataset audit: checks every task shares (hashes, ids, split column, depth histograms), then
the task's own independent re-derivation of its split guarantees."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from benchgen import registry
from benchgen.dataset import Dataset
from benchgen.errors import DatasetError
from benchgen.schema import BASE_FIELDS


def audit_common(ds: Dataset) -> list[str]:
    """Format-level guarantees, independent of the task."""
    problems = ds.verify_hashes()
    all_ids = []
    for split in ds.splits:
        t = ds.table(split, columns=["id", "split", "depth"])
        schema = pq.read_schema(ds.shards(split)[0])
        for f in BASE_FIELDS:
            if f.name not in schema.names:
                problems.append(f"split '{split}': missing column '{f.name}'")
        if pc.any(pc.not_equal(t["split"], split)).as_py():
            problems.append(f"split '{split}': rows whose split column is not '{split}'")
        prefix = f"{ds.task}/{split}/"
        if not pc.all(pc.starts_with(t["id"], prefix)).as_py():
            problems.append(f"split '{split}': ids not of the form {prefix}NNNNNNNNN")
        d, c = np.unique(t["depth"].to_numpy(), return_counts=True)
        hist = {str(k): int(v) for k, v in zip(d.tolist(), c.tolist())}
        if hist != ds.manifest["splits"][split]["depths"]:
            problems.append(f"split '{split}': depth histogram {hist} != manifest {ds.manifest['splits'][split]['depths']}")
        all_ids.append(t["id"].to_numpy(zero_copy_only=False))
    if all_ids:
        ids = np.concatenate(all_ids)
        if len(np.unique(ids)) != len(ids):
            problems.append(f"ids are not unique across the dataset ({len(ids) - len(np.unique(ids))} repeats)")
    return problems


def audit(ds: Dataset, validity: bool = True) -> list[str]:
    """All problems found (empty list = every guarantee holds); ``validity`` adds the baseline check."""
    problems: list[str] = []
    try:
        problems = audit_common(ds)
        task = registry.get_task(ds.task)
        problems += list(task.audit(ds))
    except (DatasetError, pa.ArrowException, OSError, KeyError) as e:  # damaged shards or a missing
        first = str(e).splitlines()[0][:200] if str(e) else type(e).__name__  # column: violations, not a traceback
        # keep what the common checks found (e.g. the missing column that stopped the task audit)
        return [*(problems or ds.verify_hashes()), f"dataset files cannot be read ({first})"]
    if validity:
        from benchgen import validity as check

        problems += check.audit_safely(ds)
    return problems
