"""In-memory datasets: the writer the Python API hands to a task, and the dataset it yields.

:class:`MemoryWriter` has the writer interface of :class:`benchgen.dataset.DatasetWriter` but
keeps the tables; it hashes each shard's parquet bytes exactly as the file writer would write
them, so the manifest and fingerprint of an in-memory dataset equal those of the same config on
disk, and :meth:`MemoryDataset.save` writes the very same files.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from benchgen.dataset import (
    DEFAULT_ROWS_PER_SHARD,
    Dataset,
    DatasetWriter,
    SplitInfo,
    build_manifest,
    check_split,
    dictionary_columns,
)
from benchgen.errors import BenchgenError, DatasetError
from benchgen.schema import hf_split
from benchgen.vocab import Vocab


def _parquet_sha256(table: pa.Table, **options) -> str:
    """sha256 of the parquet bytes the on-disk writer would produce (so fingerprints agree)."""
    buf = pa.BufferOutputStream()
    pq.write_table(table, buf, compression="zstd", **options)
    return hashlib.sha256(buf.getvalue().to_pybytes()).hexdigest()


class MemoryWriter:
    """A dataset writer that keeps tables in memory; shard hashes match the on-disk writer's."""

    supports_parts = False  # no files: worker processes cannot encode shards for it

    def __init__(self, *, task: str, config: dict, seed: int, vocab: Vocab, schema: pa.Schema,
                 rows_per_shard: int = DEFAULT_ROWS_PER_SHARD):
        self.task, self.config, self.seed, self.vocab = task, config, seed, vocab
        self.schema, self.rows_per_shard = schema, rows_per_shard
        self.dictionary_columns = dictionary_columns(schema)
        self.splits: dict[str, SplitInfo] = {}
        self.extras: dict[str, str] = {}
        self.tables: dict[str, pa.Table] = {}
        self.extra_tables: dict[str, pa.Table] = {}

    def write_split(self, split: str, tables: Iterable[pa.Table]) -> None:
        """Collect one split; hash it shard by shard exactly as the file writer shards it."""
        check_split(split, self.tables)
        parts = [t for t in tables if t.num_rows]
        for t in parts:
            if not t.schema.equals(self.schema):
                raise BenchgenError(f"split {split!r}: table schema {t.schema} != dataset schema {self.schema}")
        if not parts:
            raise BenchgenError(f"split {split!r} has no rows")
        table = pa.concat_tables(parts)
        n_shards = -(-table.num_rows // self.rows_per_shard)
        names, digest = [], hashlib.sha256()
        for i in range(n_shards):
            shard = table.slice(i * self.rows_per_shard, self.rows_per_shard)
            digest.update(_parquet_sha256(shard, row_group_size=65536, use_dictionary=self.dictionary_columns,
                                          write_statistics=False).encode())
            names.append(f"data/{split}-{i:05d}-of-{n_shards:05d}.parquet")
        d, c = np.unique(table.column("depth").to_numpy(), return_counts=True)
        self.splits[split] = SplitInfo(rows=table.num_rows, shards=names, sha256=digest.hexdigest(),
                                       depths={str(k): int(v) for k, v in zip(d.tolist(), c.tolist())})
        self.tables[split] = table

    def write_extra(self, name: str, table: pa.Table) -> None:
        """Keep a task extra (e.g. ``kg.parquet``) in memory."""
        self.extras[name] = _parquet_sha256(table)
        self.extra_tables[name] = table

    def manifest(self) -> dict:
        return build_manifest(self.task, self.config, self.seed, self.schema, self.splits, self.extras)

    def finish(self) -> MemoryDataset:
        """The collected dataset (manifest without validity yet), readable like files on disk."""
        return MemoryDataset(self.manifest(), self.vocab, self.tables, self.extra_tables)

    def commit(self, *, validity: dict | None, card: str) -> MemoryDataset:
        """The finished dataset, with its validity record and the card :meth:`MemoryDataset.save` writes."""
        manifest = self.manifest()
        if validity is not None:
            manifest["validity"] = validity
        return MemoryDataset(manifest, self.vocab, self.tables, self.extra_tables, card=card)

    def __enter__(self) -> MemoryWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


class MemoryDataset(Dataset):
    """A generated dataset held in memory: the same reading API as an on-disk ``Dataset``."""

    in_memory = True

    def __init__(self, manifest: dict, vocab: Vocab, tables: dict[str, pa.Table],
                 extras: dict[str, pa.Table] | None = None, card: str = ""):
        self.manifest, self.vocab, self.tables = manifest, vocab, tables
        self.extras, self.card = dict(extras or {}), card
        self.path = Path(f"<memory:{manifest['task']}:{manifest['fingerprint'][:16]}>")

    def shards(self, split: str) -> list[Path]:
        raise DatasetError(f"{self.path}: an in-memory dataset has no shard files (save() it first)")

    def table(self, split: str, columns: list[str] | None = None) -> pa.Table:
        """One split (optionally only some columns) as an arrow table."""
        if split not in self.tables:
            raise DatasetError(f"split '{split}': not in {self.path} (has: {', '.join(self.splits)})")
        t = self.tables[split]
        return t.select(columns) if columns is not None else t

    def iter_batches(self, split: str, batch_size: int = 65536, columns: list[str] | None = None) -> Iterator:
        yield from self.table(split, columns).to_batches(max_chunksize=batch_size)

    def extra(self, name: str) -> pa.Table:
        if name not in self.extras:
            raise DatasetError(f"{self.path}: task file {name} is missing")
        return self.extras[name]

    def verify_hashes(self) -> list[str]:
        return []  # the tables are the ones that were hashed; nothing on disk can drift

    def save(self, out: str | Path, overwrite: bool = False) -> Path:
        """Write the dataset as the CLI would (atomic; refuses an existing target unless asked)."""
        m = self.manifest
        with DatasetWriter(out, task=m["task"], config=m["config"], seed=m["seed"], vocab=self.vocab,
                           schema=next(iter(self.tables.values())).schema, overwrite=overwrite) as writer:
            for name, table in self.extras.items():
                writer.write_extra(name, table)
            for split, table in self.tables.items():
                writer.write_split(split, [table])
            writer.finish()
            writer.commit(validity=m.get("validity"), card=self.card)
        return Path(out)

    def to_arrow(self) -> dict[str, pa.Table]:
        """{split: arrow table}, benchgen split names."""
        return dict(self.tables)

    def to_datasets(self):
        """A ``datasets.DatasetDict`` with Hugging Face split names (``valid`` -> ``validation``)."""
        return to_datasets(self.tables)


def to_datasets(tables: dict[str, pa.Table]):
    """``{split: Table}`` as a ``datasets.DatasetDict`` with the Hub's split names."""
    try:
        import datasets
    except ModuleNotFoundError:
        from benchgen.install import install_hint

        raise BenchgenError(f"output='datasets' needs the datasets package, which is not installed: "
                            f"{install_hint('datasets')} (or output='arrow' for {{split: pyarrow.Table}})") from None
    return datasets.DatasetDict({hf_split(s): datasets.Dataset(t) for s, t in tables.items()})
