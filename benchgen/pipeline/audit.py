"""Dataset audit: the checks every task shares (hashes, ids, split column, depth histograms), the
task's own independent re-derivation of its split guarantees, and validity; as structured records.

Every violation is recorded under the check that found it (``files``, ``format``, ``ids``,
``task``, ``validity``), so ``benchgen audit --verbose`` / ``--json`` only format the report.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from benchgen import registry
from benchgen.dataset import Dataset
from benchgen.errors import BenchgenError, DatasetError
from benchgen.pipeline import validity as check_validity
from benchgen.schema import BASE_FIELDS
from benchgen.task import Task


@dataclass
class Check:
    """One family of checks: what it verifies, how much it covered, and what it found."""

    check: str
    description: str
    checked: int
    unit: str
    violations: list[str] = field(default_factory=list)
    sampled: str | None = None


@dataclass
class AuditReport:
    """Every check with its violations; ``problems`` lists them all in the order they were found."""

    checks: list[Check]
    problems: list[str]
    sample_note: str | None = None

    @property
    def passed(self) -> bool:
        return not self.problems

    def to_json(self) -> list[dict]:
        return [{k: v for k, v in asdict(c).items() if k != "sampled" or v} for c in self.checks]


class _Found:
    """Violations in discovery order, each filed under the check that found it."""

    def __init__(self) -> None:
        self.order: list[tuple[str, str]] = []

    def add(self, check: str, messages: list[str]) -> None:
        self.order += [(check, m) for m in messages]

    def of(self, check: str) -> list[str]:
        return [m for c, m in self.order if c == check]


def audit_files(ds: Dataset, found: _Found) -> None:
    """Shard and task-file hashes and row counts against manifest.json."""
    found.add("files", ds.verify_hashes())


def audit_format(ds: Dataset, found: _Found) -> None:
    """Format-level guarantees, independent of the task (one split, one column at a time)."""
    repeats, prefixes_ok = 0, True
    for split in ds.splits:
        schema = pq.read_schema(ds.shards(split)[0])
        found.add("format", [f"split '{split}': missing column '{f.name}'" for f in BASE_FIELDS
                             if f.name not in schema.names])
        t = ds.table(split, columns=["split", "depth"])
        if pc.any(pc.not_equal(t["split"], split)).as_py():
            found.add("format", [f"split '{split}': rows whose split column is not '{split}'"])
        d, c = np.unique(t["depth"].to_numpy(), return_counts=True)
        del t
        hist = {str(k): int(v) for k, v in zip(d.tolist(), c.tolist())}
        if hist != ds.manifest["splits"][split]["depths"]:
            found.add("format", [f"split '{split}': depth histogram {hist} != manifest "
                                 f"{ds.manifest['splits'][split]['depths']}"])
        ids = ds.table(split, columns=["id"])["id"]
        prefix = f"{ds.task}/{split}/"
        if not pc.all(pc.starts_with(ids, prefix)).as_py():
            found.add("format", [f"split '{split}': ids not of the form {prefix}NNNNNNNNN"])
            prefixes_ok = False
        repeats += len(ids) - pc.count_distinct(ids).as_py()
    if not prefixes_ok:  # ids of different splits can only collide when a prefix is wrong
        ids = pa.chunked_array([c for s in ds.splits for c in ds.table(s, columns=["id"])["id"].chunks],
                               type=pa.string())
        repeats = len(ids) - pc.count_distinct(ids).as_py()
    if repeats:
        found.add("ids", [f"ids are not unique across the dataset ({repeats} repeats)"])


def _checks(ds: Dataset, found: _Found, task: Task) -> list[Check]:
    """The report's checks, with what each covered."""
    splits = ds.manifest["splits"]
    rows = sum(i["rows"] for i in splits.values())
    return [
        Check("files", "shard and task-file hashes and row counts match manifest.json",
              sum(len(i["shards"]) for i in splits.values()) + len(ds.manifest.get("extras", {})), "files",
              found.of("files")),
        Check("format", "required columns, split column, id prefix and depth histogram per split", len(splits),
              "splits", found.of("format")),
        Check("ids", "ids unique across the dataset", rows, "ids", found.of("ids")),
        Check("validity", "no non-reasoning baseline beats chance on a held-out split (train lookup: on any "
              "test split)", sum(1 for s in splits if s.startswith("test")), "splits", found.of("validity")),
        Check("task", f"{task.name} split guarantees re-derived from the files by an independent route (per "
              "row, plus task-level checks)", rows, "rows", found.of("task")),
    ]


def sample_note(ds: Dataset, sample: int | None) -> str | None:
    """What a sampled audit walked (None when every row was walked)."""
    rows = {s: i["rows"] for s, i in ds.manifest["splits"].items()}
    if sample is None or sample >= max(rows.values()):
        return None
    return (f"sampled: the per-row {ds.task} check walked a seeded sample of at most {sample:,} rows per split ("
            + ", ".join(f"{s} {min(sample, n):,} of {n:,}" for s, n in rows.items())
            + "); every other check covered every row")


def audit(ds: Dataset, validity: bool = True, sample: int | None = None, workers: int | None = None) -> list[str]:
    """Every violation found in ``ds`` (empty: every guarantee holds); see :func:`audit_report`."""
    return audit_report(ds, validity=validity, sample=sample, workers=workers).problems


def audit_report(ds: Dataset, validity: bool = True, sample: int | None = None,
                 workers: int | None = None) -> AuditReport:
    """Every check of ``ds`` with what it covered and found; ``validity`` adds the baseline check.

    ``sample``: the task's per-row re-derivation walks only that many seeded rows per split (tasks
    whose audit supports it); hashes, ids, depth histograms and validity still cover every row.
    ``workers``: processes for the task's per-row check (tasks that run in parallel; None: the
    CPUs this job may use); the report is the same for any count.
    """
    task = registry.get_task(ds.task)
    if sample is not None and (sample < 1 or not task.audit_sample):
        raise BenchgenError(f"audit --sample {sample}: " + ("expected a row count >= 1" if sample < 1 else
                            f"task {ds.task!r} audits every row (its audit takes no sample)"))
    found = _Found()
    try:
        audit_files(ds, found)
        audit_format(ds, found)
        options = {"sample": sample} if sample is not None else {}
        if task.parallel:
            options["workers"] = workers
        found.add("task", list(task.audit(ds, **options)))
    except (DatasetError, pa.ArrowException, OSError, KeyError) as e:  # damaged shards or a missing
        first = str(e).splitlines()[0][:200] if str(e) else type(e).__name__  # column: violations, not a traceback
        if not found.order:  # keep what the common checks found (e.g. the missing column that stopped the task)
            audit_files(ds, found)
        found.add("task", [f"dataset files cannot be read ({first})"])
        return _report(ds, found, task, sample)
    if validity:
        found.add("validity", check_validity.audit_safely(ds, task))
    return _report(ds, found, task, sample)


def _report(ds: Dataset, found: _Found, task: Task, sample: int | None) -> AuditReport:
    checks = _checks(ds, found, task)
    note = sample_note(ds, sample)
    if note:
        checks[-1].checked = sum(min(sample or 0, i["rows"]) for i in ds.manifest["splits"].values())
        checks[-1].sampled = note
    return AuditReport(checks=checks, problems=[m for _, m in found.order], sample_note=note)
