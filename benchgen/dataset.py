"""On-disk dataset: parquet shards + manifest.json + vocab.json + dataset card; load; validate.

Layout of a dataset directory::

    data/<split>-NNNNN-of-NNNNN.parquet   shards (Hugging Face naming)
    manifest.json                         version, task, config, seed, per-split counts/hashes
    vocab.json                            {"tokens": [...] (id = position), "joiner": str, "pad_id": int}
    README.md                             dataset card with ``configs:`` YAML for load_dataset
    <task extras>                         e.g. kg.parquet for khop

Writes build everything in a temporary directory next to the target and rename it into place
at the end, so an interrupted run never leaves a half dataset that looks whole. A task writes
through the writer it is handed; the pipeline (``benchgen.pipeline.generate``) then calls
``finish`` (shards named and hashed, manifest and vocab written), measures validity on the
finished files, and ``commit`` adds the validity record and the card and moves it into place.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from benchgen.atomic import check_target, new_temp_dir, restore_interrupted, swap_into_place
from benchgen.errors import BenchgenError, DatasetError
from benchgen.schema import SPLIT_NAME
from benchgen.version import __version__
from benchgen.vocab import Vocab

MANIFEST = "manifest.json"
VOCAB = "vocab.json"
CARD = "README.md"
DATA = "data"
DEFAULT_ROWS_PER_SHARD = 250_000


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def encode_shard(table: pa.Table, path: Path, dictionary_columns: list[str]) -> None:
    """Encode one shard as parquet: the one encoding every writer (thread or worker process) uses."""
    pq.write_table(table, path, compression="zstd", row_group_size=65536,
                   use_dictionary=dictionary_columns, write_statistics=False)


def _done() -> Future:
    f: Future = Future()
    f.set_result(None)
    return f


@dataclass
class SplitInfo:
    rows: int
    shards: list[str]
    sha256: str
    depths: dict[str, int]


def dictionary_columns(schema: pa.Schema) -> list[str]:
    """Columns worth dictionary-encoding (low cardinality); ids and prompts gain nothing and cost time."""
    return [n for n in ("split", "depth", "width") if n in schema.names]


def build_manifest(task: str, config: dict, seed: int, schema: pa.Schema, splits: dict[str, SplitInfo],
                   extras: dict[str, str]) -> dict:
    """manifest.json's content; the fingerprint hashes task, config, seed and every file's hash."""
    fp = hashlib.sha256(json.dumps(
        {"task": task, "config": config, "seed": seed,
         "splits": {k: v.sha256 for k, v in splits.items()}, "extras": extras},
        sort_keys=True).encode()).hexdigest()
    return {
        "benchgen_version": __version__,
        "task": task,
        "config": config,
        "seed": seed,
        "fingerprint": fp,
        "schema": [{"name": f.name, "type": str(f.type)} for f in schema],
        "splits": {k: {"rows": v.rows, "shards": v.shards, "sha256": v.sha256, "depths": v.depths}
                   for k, v in splits.items()},
        "extras": extras,
    }


def check_split(split: str, known) -> None:
    """A new split's name is Hub-safe and not written before."""
    if not SPLIT_NAME.match(split):
        raise BenchgenError(f"split name {split!r}: must match ^\\w+$")
    if split in known:
        raise BenchgenError(f"split {split!r} written twice")


class DatasetWriter:
    """Streams split tables into shards in a temp dir; ``finish`` + ``commit`` write metadata and rename.

    Leaving the ``with`` block without a commit (an error, or an interrupted run) removes the
    temp dir, so nothing half-written ever appears at ``out``.
    """

    supports_parts = True  # worker processes may encode shards to part_path() themselves

    def __init__(self, out: str | Path, *, task: str, config: dict, seed: int, vocab: Vocab,
                 schema: pa.Schema, overwrite: bool = False, rows_per_shard: int = DEFAULT_ROWS_PER_SHARD):
        self.out = check_target(out, overwrite, kind="dataset").resolve()
        self.overwrite = overwrite
        self.task, self.config, self.seed, self.vocab = task, config, seed, vocab
        self.schema, self.rows_per_shard = schema, rows_per_shard
        self.tmp = new_temp_dir(self.out, "dataset")
        (self.tmp / DATA).mkdir()
        self.splits: dict[str, SplitInfo] = {}
        self._pending: dict[str, tuple[list, dict[int, int]]] = {}
        self._pool = ThreadPoolExecutor(max_workers=max(1, min(4, os.cpu_count() or 1)))
        self.dictionary_columns = dictionary_columns(schema)
        self.extras: dict[str, str] = {}
        self.committed = False

    # -- writing -------------------------------------------------------------------------
    def write_split(self, split: str, tables: Iterable[pa.Table]) -> None:
        """Write one split from an iterable of tables (any sizes), re-chunked into shards.

        Shards are encoded on a small thread pool (parquet encoding releases the GIL), so the
        generator produces the next batch while earlier shards compress; ``close`` waits for them.
        """
        check_split(split, {*self.splits, *self._pending})
        parts: list[tuple[Path, Future]] = []
        pending: list[pa.Table] = []
        pending_rows = 0
        depth_counts: dict[int, int] = {}

        def flush(final: bool) -> None:
            nonlocal pending, pending_rows
            while pending_rows >= self.rows_per_shard or (final and pending_rows > 0):
                t = pa.concat_tables(pending)
                take = min(self.rows_per_shard, t.num_rows)
                part = self.part_path(split, len(parts))
                parts.append((part, self._pool.submit(encode_shard, t.slice(0, take), part, self.dictionary_columns)))
                # backpressure: a fast generator must not queue unbounded shards in memory
                waiting = [f for _, f in parts if not f.done()]
                if len(waiting) > 2 * self._pool._max_workers:
                    waiting[0].result()
                rest = t.slice(take)
                pending, pending_rows = ([rest] if rest.num_rows else []), rest.num_rows

        for t in tables:
            if t.num_rows == 0:
                continue
            if not t.schema.equals(self.schema):
                raise BenchgenError(f"split {split!r}: table schema {t.schema} != dataset schema {self.schema}")
            d, c = np.unique(t.column("depth").to_numpy(), return_counts=True)
            for k, v in zip(d.tolist(), c.tolist()):
                depth_counts[k] = depth_counts.get(k, 0) + v
            pending.append(t)
            pending_rows += t.num_rows
            flush(final=False)
        flush(final=True)
        if not parts:
            raise BenchgenError(f"split {split!r} has no rows")
        self._pending[split] = (parts, depth_counts)

    def part_path(self, split: str, i: int) -> Path:
        """Temporary file of shard ``i`` of ``split`` (renamed NNNNN-of-NNNNN at close)."""
        return self.tmp / DATA / f".{split}-{i:05d}.part"

    def add_parts(self, split: str, parts: list[Path], depth_counts: dict[int, int]) -> None:
        """Register shards already encoded by :func:`encode_shard` at ``part_path(split, i)`` (worker processes)."""
        check_split(split, {*self.splits, *self._pending})
        if not parts:
            raise BenchgenError(f"split {split!r} has no rows")
        self._pending[split] = ([(p, _done()) for p in parts], dict(depth_counts))

    def _finish_splits(self) -> None:
        """Wait for shard writes, name shards NNNNN-of-NNNNN, hash them (in split order)."""
        for split, (parts, depth_counts) in self._pending.items():
            names, digest = [], hashlib.sha256()
            for i, (part, fut) in enumerate(parts):
                fut.result()
                name = f"{split}-{i:05d}-of-{len(parts):05d}.parquet"
                part.rename(self.tmp / DATA / name)
                names.append(f"{DATA}/{name}")
                digest.update(_sha256(self.tmp / DATA / name).encode())
            self.splits[split] = SplitInfo(rows=sum(depth_counts.values()), shards=names, sha256=digest.hexdigest(),
                                           depths={str(k): depth_counts[k] for k in sorted(depth_counts)})
        self._pending.clear()

    def write_extra(self, name: str, table: pa.Table) -> None:
        """Write a task extra file (e.g. ``kg.parquet``) at the dataset root."""
        path = self.tmp / name
        pq.write_table(table, path, compression="zstd")
        self.extras[name] = _sha256(path)

    # -- finishing -----------------------------------------------------------------------
    def manifest(self) -> dict:
        return build_manifest(self.task, self.config, self.seed, self.schema, self.splits, self.extras)

    def finish(self) -> Dataset:
        """Wait for every shard, name and hash them, write manifest.json and vocab.json; the files
        (still in the temp dir) open as a :class:`Dataset` for the validity check."""
        self._finish_splits()
        self._pool.shutdown()
        (self.tmp / MANIFEST).write_text(json.dumps(self.manifest(), indent=1) + "\n")
        self.vocab.save(self.tmp / VOCAB)
        return Dataset(self.tmp)

    def commit(self, *, validity: dict | None, card: str) -> Path:
        """Record ``validity`` in the manifest, write the dataset card, move the dataset into place."""
        manifest = self.manifest()
        if validity is not None:
            manifest["validity"] = validity
            (self.tmp / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
        (self.tmp / CARD).write_text(card)
        swap_into_place(self.tmp, self.out, overwrite=self.overwrite, kind="dataset")
        self.committed = True
        return self.out

    def abort(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
        shutil.rmtree(self.tmp, ignore_errors=True)

    def __enter__(self) -> DatasetWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if not self.committed:
            self.abort()


def _safe_relpath(name: object) -> bool:
    """A manifest file name that stays inside the dataset directory (no absolute paths, no '..')."""
    if not isinstance(name, str) or not name or "\x00" in name or "\\" in name:
        return False
    parts = name.split("/")
    return not name.startswith("/") and all(p not in ("", ".", "..") for p in parts)


def validate_manifest(m: object, where: Path | str) -> None:
    """Check manifest.json's structure (types of every field readers use); DatasetError naming the field."""
    def bad(field: str, expected: str) -> DatasetError:
        return DatasetError(f"{where}: field '{field}' is malformed (expected {expected})")

    if not isinstance(m, dict):
        raise DatasetError(f"{where}: expected a JSON object, got {type(m).__name__}")
    for key in ("task", "config", "splits", "fingerprint"):
        if key not in m:
            raise DatasetError(f"{where}: missing key '{key}'")
    if not isinstance(m["task"], str) or not m["task"]:
        raise bad("task", "a task name")
    if not isinstance(m["config"], dict):
        raise bad("config", "an object")
    if not isinstance(m["fingerprint"], str) or not m["fingerprint"]:
        raise bad("fingerprint", "a hex string")
    if "seed" in m and m["seed"] is not None and (isinstance(m["seed"], bool) or not isinstance(m["seed"], int)):
        raise bad("seed", "an integer")
    splits = m["splits"]
    if not isinstance(splits, dict) or not splits:
        raise bad("splits", "a non-empty object of split name -> info")
    for split, info in splits.items():
        f = f"splits.{split}"
        if not SPLIT_NAME.match(split):
            raise bad(f, "a split name matching ^\\w+$")
        if not isinstance(info, dict):
            raise bad(f, "an object")
        rows = info.get("rows")
        if isinstance(rows, bool) or not isinstance(rows, int) or rows < 0:
            raise bad(f"{f}.rows", "a non-negative integer")
        shards = info.get("shards")
        if not isinstance(shards, list) or not shards or not all(_safe_relpath(x) for x in shards):
            raise bad(f"{f}.shards", "a non-empty list of relative file names inside the dataset")
        if not isinstance(info.get("sha256"), str):
            raise bad(f"{f}.sha256", "a hex string")
        depths = info.get("depths")
        if not isinstance(depths, dict) or not all(
                isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in depths.values()):
            raise bad(f"{f}.depths", "an object of depth -> row count")
    extras = m.get("extras", {})
    if not isinstance(extras, dict) or not all(_safe_relpath(k) and isinstance(v, str) for k, v in extras.items()):
        raise bad("extras", "an object of relative file name -> sha256")
    if "schema" in m and not isinstance(m["schema"], list):
        raise bad("schema", "a list of columns")


class Dataset:
    """A dataset directory opened for reading (validated manifest, shard list, vocab)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        note = restore_interrupted(self.path) if not self.path.exists() else None  # a kill inside the swap
        if not self.path.exists():
            raise DatasetError(f"dataset directory {self.path}: does not exist" + (f"; {note}" if note else ""))
        if not self.path.is_dir():
            raise DatasetError(f"dataset directory {self.path}: is not a directory")
        mpath = self.path / MANIFEST
        if not mpath.exists():
            raise DatasetError(f"dataset directory {self.path}: no {MANIFEST} (not a benchgen dataset?)")
        try:
            self.manifest = json.loads(mpath.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as e:
            raise DatasetError(f"{mpath}: corrupt JSON ({str(e).splitlines()[0][:200]})") from None
        validate_manifest(self.manifest, mpath)
        for split, info in self.manifest["splits"].items():
            for shard in info.get("shards", []):
                if not (self.path / shard).is_file():
                    raise DatasetError(f"{self.path}: split '{split}' shard {shard} is missing")
        vpath = self.path / VOCAB
        if not vpath.exists():
            raise DatasetError(f"dataset directory {self.path}: no {VOCAB}")
        try:
            self.vocab = Vocab.load(vpath)
        except (json.JSONDecodeError, KeyError, ValueError, TypeError, RecursionError) as e:
            raise DatasetError(f"{vpath}: corrupt vocabulary ({str(e).splitlines()[0][:200]})") from None

    @property
    def task(self) -> str:
        return self.manifest["task"]

    @property
    def config(self) -> dict:
        return self.manifest["config"]

    @property
    def fingerprint(self) -> str:
        return self.manifest["fingerprint"]

    @property
    def splits(self) -> list[str]:
        return list(self.manifest["splits"])

    def shards(self, split: str) -> list[Path]:
        if split not in self.manifest["splits"]:
            raise DatasetError(f"split '{split}': not in {self.path} (has: {', '.join(self.splits)})")
        return [self.path / s for s in self.manifest["splits"][split]["shards"]]

    def table(self, split: str, columns: list[str] | None = None) -> pa.Table:
        """Read one split (optionally only some columns) as one arrow table."""
        paths = self.shards(split)
        try:
            # ParquetFile, not read_table: the same table without importing pyarrow.dataset (~8 ms a process)
            return pa.concat_tables([pq.ParquetFile(p).read(columns=columns) for p in paths])
        except (pa.ArrowException, OSError) as e:
            raise DatasetError(f"{self.path}: split '{split}' cannot be read ({str(e).splitlines()[0][:200]})") from None

    def iter_batches(self, split: str, batch_size: int = 65536, columns: list[str] | None = None):
        """Stream a split as record batches (bounded memory)."""
        for p in self.shards(split):
            try:
                yield from pq.ParquetFile(p).iter_batches(batch_size=batch_size, columns=columns)
            except (pa.ArrowException, OSError) as e:
                raise DatasetError(f"{p}: not readable parquet ({str(e).splitlines()[0][:200]})") from None

    def extra(self, name: str) -> pa.Table:
        path = self.path / name
        if not path.exists():
            raise DatasetError(f"{self.path}: task file {name} is missing")
        try:
            return pq.ParquetFile(path).read()
        except (pa.ArrowException, OSError) as e:
            raise DatasetError(f"{path}: corrupt ({str(e).splitlines()[0][:200]})") from None

    def verify_hashes(self) -> list[str]:
        """Recompute shard hashes against the manifest; return problems (empty when intact)."""
        problems = []
        for split, info in self.manifest["splits"].items():
            digest = hashlib.sha256()
            for s in info["shards"]:
                digest.update(_sha256(self.path / s).encode())
            if digest.hexdigest() != info["sha256"]:
                problems.append(f"split '{split}': shard contents do not match manifest sha256")
            try:
                rows = sum(pq.ParquetFile(self.path / s).metadata.num_rows for s in info["shards"])
            except (pa.ArrowException, OSError) as e:
                problems.append(f"split '{split}': a shard is not readable parquet ({str(e).splitlines()[0][:200]})")
                continue
            if rows != info["rows"]:
                problems.append(f"split '{split}': {rows} rows on disk, manifest says {info['rows']}")
        for name, sha in self.manifest.get("extras", {}).items():
            if not (self.path / name).exists():
                problems.append(f"task file {name} is missing")
            elif _sha256(self.path / name) != sha:
                problems.append(f"task file {name}: contents do not match manifest sha256")
        return problems


def load(path: str | Path) -> Dataset:
    """Open a benchgen dataset directory (raises DatasetError naming what is wrong)."""
    return Dataset(path)
