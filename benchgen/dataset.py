"""On-disk dataset: parquet shards + manifest.json + vocab.json + dataset card; load; validate.

Layout of a dataset directory::

    data/<split>-NNNNN-of-NNNNN.parquet   shards (Hugging Face naming)
    manifest.json                         version, task, config, seed, per-split counts/hashes
    vocab.json                            token list (id = position)
    README.md                             dataset card with ``configs:`` YAML for load_dataset
    <task extras>                         e.g. kg.parquet for khop

Writes build everything in a temporary directory next to the target and rename it into place
at the end, so an interrupted run never leaves a half dataset that looks whole.
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

from benchgen import __version__
from benchgen.atomic import check_target, new_temp_dir, swap_into_place
from benchgen.errors import BenchgenError, DatasetError
from benchgen.schema import SPLIT_NAME
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


@dataclass
class SplitInfo:
    rows: int
    shards: list[str]
    sha256: str
    depths: dict[str, int]


class DatasetWriter:
    """Streams split tables into shards in a temp dir; ``close`` writes metadata and renames."""

    def __init__(self, out: str | Path, *, task: str, config: dict, seed: int, vocab: Vocab,
                 schema: pa.Schema, overwrite: bool = False, description: str = "",
                 rows_per_shard: int = DEFAULT_ROWS_PER_SHARD):
        self.out = check_target(out, overwrite).resolve()
        self.task, self.config, self.seed, self.vocab = task, config, seed, vocab
        self.schema, self.description, self.rows_per_shard = schema, description, rows_per_shard
        self.tmp = new_temp_dir(self.out)
        (self.tmp / DATA).mkdir()
        self.splits: dict[str, SplitInfo] = {}
        self._pending: dict[str, tuple[list, dict[int, int]]] = {}
        self._pool = ThreadPoolExecutor(max_workers=max(1, min(4, os.cpu_count() or 1)))
        # dictionary-encode only low-cardinality columns: ids/prompts gain nothing and cost time
        self.dictionary_columns = [n for n in ("split", "depth", "width") if n in schema.names]
        self.extras: dict[str, str] = {}

    # -- writing -------------------------------------------------------------------------
    def write_split(self, split: str, tables: Iterable[pa.Table]) -> None:
        """Write one split from an iterable of tables (any sizes), re-chunked into shards.

        Shards are encoded on a small thread pool (parquet encoding releases the GIL), so the
        generator produces the next batch while earlier shards compress; ``close`` waits for them.
        """
        if not SPLIT_NAME.match(split):
            raise BenchgenError(f"split name {split!r}: must match ^\\w+$")
        if split in self.splits or split in self._pending:
            raise BenchgenError(f"split {split!r} written twice")
        parts: list[tuple[Path, Future]] = []
        pending: list[pa.Table] = []
        pending_rows = 0
        depth_counts: dict[int, int] = {}

        def flush(final: bool) -> None:
            nonlocal pending, pending_rows
            while pending_rows >= self.rows_per_shard or (final and pending_rows > 0):
                t = pa.concat_tables(pending)
                take = min(self.rows_per_shard, t.num_rows)
                part = self.tmp / DATA / f".{split}-{len(parts):05d}.part"
                parts.append((part, self._pool.submit(
                    pq.write_table, t.slice(0, take), part, compression="zstd", row_group_size=65536,
                    use_dictionary=self.dictionary_columns, write_statistics=False)))
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
        fp = hashlib.sha256(json.dumps(
            {"task": self.task, "config": self.config, "seed": self.seed,
             "splits": {k: v.sha256 for k, v in self.splits.items()}, "extras": self.extras},
            sort_keys=True).encode()).hexdigest()
        return {
            "benchgen_version": __version__,
            "task": self.task,
            "config": self.config,
            "seed": self.seed,
            "fingerprint": fp,
            "schema": [{"name": f.name, "type": str(f.type)} for f in self.schema],
            "splits": {k: {"rows": v.rows, "shards": v.shards, "sha256": v.sha256, "depths": v.depths}
                       for k, v in self.splits.items()},
            "extras": self.extras,
        }

    def close(self) -> Path:
        self._finish_splits()
        self._pool.shutdown()
        manifest = self.manifest()
        (self.tmp / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
        self.vocab.save(self.tmp / VOCAB)
        (self.tmp / CARD).write_text(render_card(manifest, self.description))
        swap_into_place(self.tmp, self.out)
        return self.out

    def abort(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
        shutil.rmtree(self.tmp, ignore_errors=True)

    def __enter__(self) -> DatasetWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def render_card(manifest: dict, description: str = "") -> str:
    """Dataset card: HF ``configs:`` YAML listing every split, then counts and config."""
    yaml = ["---", "configs:", "- config_name: default", "  data_files:"]
    for split in manifest["splits"]:
        yaml += [f"  - split: {split}", f"    path: data/{split}-*.parquet"]
    yaml += ["tags:", "- benchgen", f"- {manifest['task']}", "- implicit-reasoning", "---", ""]
    rows = ["| split | rows | depths |", "|---|---|---|"]
    for split, info in manifest["splits"].items():
        depths = ", ".join(f"{d}: {n}" for d, n in info["depths"].items())
        rows.append(f"| {split} | {info['rows']} | {depths} |")
    cfg = json.dumps(manifest["config"], indent=1, sort_keys=True)
    return "\n".join(yaml + [
        f"# benchgen `{manifest['task']}` dataset", "",
        description.strip(), "",
        f"Generated by benchgen {manifest['benchgen_version']} with seed {manifest['seed']}; "
        f"fingerprint `{manifest['fingerprint'][:16]}`.", "",
        "## Splits", "", *rows, "",
        "Split semantics: `train`/`valid`/`test_id` share one distribution (test queries never occur "
        "in train); `test_systematic` composes pieces each seen in training but never composed "
        "in training; `test_depth` is deeper than any training depth.", "",
        "## Load", "", "```python", "from datasets import load_dataset",
        "ds = load_dataset(\"path/to/this/dir\")", "```", "",
        "Verify every split guarantee from the files: `benchgen audit DIR`.", "",
        "## Config", "", "```json", cfg, "```", ""])


class Dataset:
    """A dataset directory opened for reading (validated manifest, shard list, vocab)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not self.path.exists():
            raise DatasetError(f"dataset directory {self.path}: does not exist")
        if not self.path.is_dir():
            raise DatasetError(f"dataset directory {self.path}: is not a directory")
        mpath = self.path / MANIFEST
        if not mpath.exists():
            raise DatasetError(f"dataset directory {self.path}: no {MANIFEST} (not a benchgen dataset?)")
        try:
            self.manifest = json.loads(mpath.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise DatasetError(f"{mpath}: corrupt JSON ({e})") from None
        for key in ("task", "config", "splits", "fingerprint"):
            if key not in self.manifest:
                raise DatasetError(f"{mpath}: missing key '{key}'")
        for split, info in self.manifest["splits"].items():
            for shard in info.get("shards", []):
                if not (self.path / shard).is_file():
                    raise DatasetError(f"{self.path}: split '{split}' shard {shard} is missing")
        vpath = self.path / VOCAB
        if not vpath.exists():
            raise DatasetError(f"dataset directory {self.path}: no {VOCAB}")
        try:
            self.vocab = Vocab.load(vpath)
        except (json.JSONDecodeError, KeyError, ValueError) as e:
            raise DatasetError(f"{vpath}: corrupt vocabulary ({e})") from None

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
            return pa.concat_tables([pq.read_table(p, columns=columns) for p in paths])
        except (pa.ArrowInvalid, OSError) as e:
            raise DatasetError(f"{self.path}: split '{split}' cannot be read ({e})") from None

    def iter_batches(self, split: str, batch_size: int = 65536, columns: list[str] | None = None):
        """Stream a split as record batches (bounded memory)."""
        for p in self.shards(split):
            yield from pq.ParquetFile(p).iter_batches(batch_size=batch_size, columns=columns)

    def extra(self, name: str) -> pa.Table:
        path = self.path / name
        if not path.exists():
            raise DatasetError(f"{self.path}: task file {name} is missing")
        try:
            return pq.read_table(path)
        except (pa.ArrowInvalid, OSError) as e:
            raise DatasetError(f"{path}: corrupt ({e})") from None

    def verify_hashes(self) -> list[str]:
        """Recompute shard hashes against the manifest; return problems (empty when intact)."""
        problems = []
        for split, info in self.manifest["splits"].items():
            digest = hashlib.sha256()
            for s in info["shards"]:
                digest.update(_sha256(self.path / s).encode())
            if digest.hexdigest() != info["sha256"]:
                problems.append(f"split '{split}': shard contents do not match manifest sha256")
            rows = sum(pq.ParquetFile(self.path / s).metadata.num_rows for s in info["shards"])
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
