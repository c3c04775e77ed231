"""Tiny hand-made datasets for tests and examples (no task generator needed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa

from benchgen.dataset import DatasetWriter
from benchgen.schema import example_schema, make_ids
from benchgen.vocab import Vocab, list_array_from_matrix

N_TOKENS = 10


def toy_vocab() -> Vocab:
    return Vocab(["<pad>", "<bos>", "<eos>", "<sep>"] + [f"<e_{i}>" for i in range(N_TOKENS)])


def toy_dataset(out: str | Path, depths: dict[str, list[int]], targets: dict[str, list[list[int]]] | None = None,
                task: str = "toy", overwrite: bool = False) -> Path:
    """Write a dataset with the given depths per split.

    Row i of a split has target tokens ``targets[split][i]`` (entity numbers 0..9), by default
    ``[i % 10]``; its answer is their rendering, e.g. ``"<e_3>"`` or ``"<e_1><e_2>"``.
    """
    vocab = toy_vocab()
    with DatasetWriter(out, task=task, config={"toy": True}, seed=0, vocab=vocab, schema=example_schema(),
                       overwrite=overwrite) as w:
        for split, ds in depths.items():
            n = len(ds)
            rows = (targets or {}).get(split) or [[i % N_TOKENS] for i in range(n)]
            lengths = np.array([len(r) for r in rows])
            width = int(lengths.max())
            m = np.zeros((n, width), np.int32)
            for i, r in enumerate(rows):
                m[i, : len(r)] = np.asarray(r) + 4
            tgt = list_array_from_matrix(m, lengths)
            w.write_split(split, [pa.table({
                "id": make_ids(task, split, 0, n),
                "split": pa.array([split] * n, pa.string()),
                "depth": pa.array(ds, pa.int32()),
                "input_ids": list_array_from_matrix(np.zeros((n, 1), np.int32)),
                "target_ids": tgt,
                "prompt": pa.array([f"q{i}" for i in range(n)], pa.string()),
                "answer": vocab.render(tgt),
            }, schema=example_schema())])
    return Path(out)
