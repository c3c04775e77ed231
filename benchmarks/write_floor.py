"""The write floor of a dataset: seconds to write its very tables with benchgen's parquet options.

Reads every file of a written dataset back into memory (not timed; one file at a time, so 10M-row
datasets fit), then times writing the same table again, one ``pyarrow.parquet.write_table`` per file
with the options benchgen uses
(``benchgen.dataset.encode_shard`` for shards: zstd, row groups of 65,536, dictionary only on
split/depth/width, no statistics; zstd for task files such as ``kg.parquet``), one after another in
one thread. Any generator that writes these files from Python costs at least this plus its imports
(``python -c "import numpy, pyarrow, pyarrow.parquet, click"``); ``benchmarks/generate.py`` adds the
two and reports generate / floor.

Usage: ``python benchmarks/write_floor.py DATASET_DIR [--repeats N]``; prints the write seconds
(per file the best of N writes, summed).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import pyarrow.parquet as pq


def dictionary_columns(names: list[str]) -> list[str]:
    """The columns benchgen dictionary-encodes (``benchgen.dataset.dictionary_columns``, restated
    here so this script measures plain pyarrow and imports nothing of benchgen)."""
    return [n for n in ("split", "depth", "width") if n in names]


def files(path: Path) -> list[tuple[Path, bool]]:
    """(file, is a shard) for every parquet file the manifest lists."""
    manifest = json.loads((path / "manifest.json").read_text())
    out = [(path / s, True) for info in manifest["splits"].values() for s in info["shards"]]
    return out + [(path / name, False) for name in manifest.get("extras", {})]


def write_seconds(table, shard: bool, into: Path) -> float:
    """Seconds to write ``table`` into ``into`` with benchgen's options for a shard or a task file."""
    t0 = time.perf_counter()
    if shard:
        pq.write_table(table, into, compression="zstd", row_group_size=65536,
                       use_dictionary=dictionary_columns(table.column_names), write_statistics=False)
    else:
        pq.write_table(table, into, compression="zstd")
    return time.perf_counter() - t0


def floor(path: Path, repeats: int) -> float:
    """Sum over the dataset's files of the best of ``repeats`` writes of each (one file in memory at a time)."""
    total = 0.0
    with tempfile.TemporaryDirectory(prefix="write-floor-") as tmp:
        for i, (f, shard) in enumerate(files(path)):
            table = pq.ParquetFile(f).read()
            total += min(write_seconds(table, shard, Path(tmp) / f"{i}.parquet") for _ in range(repeats))
            del table
    return total


def main() -> None:
    """Print the write floor of the dataset given."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dataset")
    ap.add_argument("--repeats", type=int, default=1)
    args = ap.parse_args()
    print(f"{floor(Path(args.dataset), args.repeats):.6f}")


if __name__ == "__main__":
    main()
