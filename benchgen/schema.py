"""Column contract: the arrow schema every task's examples share, plus task extras."""

from __future__ import annotations

import re

import numpy as np
import pyarrow as pa

SPLITS = ("train", "valid", "test_id", "test_systematic", "test_depth")
SPLIT_NAME = re.compile(r"^\w+$")

BASE_FIELDS = [
    pa.field("id", pa.string(), nullable=False),
    pa.field("split", pa.string(), nullable=False),
    pa.field("depth", pa.int32(), nullable=False),
    pa.field("input_ids", pa.list_(pa.int32()), nullable=False),
    pa.field("target_ids", pa.list_(pa.int32()), nullable=False),
    pa.field("prompt", pa.string(), nullable=False),
    pa.field("answer", pa.string(), nullable=False),
]


def example_schema(extras: list[pa.Field] | None = None) -> pa.Schema:
    """Arrow schema of one task's examples: the base contract followed by its extras."""
    return pa.schema(BASE_FIELDS + list(extras or []))


def make_ids(task: str, split: str, start: int, n: int) -> pa.Array:
    """Stable ids ``task/split/000000123`` for rows ``start .. start+n-1`` of a split."""
    nums = np.char.zfill(np.arange(start, start + n).astype(str), 9)
    return pa.array(np.char.add(f"{task}/{split}/", nums), pa.string())
