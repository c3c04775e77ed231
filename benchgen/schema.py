"""Column contract: the arrow schema every task's examples share, plus task extras."""

from __future__ import annotations

import re

import numpy as np
import pyarrow as pa

SPLITS = ("train", "valid", "test_id", "test_systematic", "test_interp", "test_depth")
SPLIT_NAME = re.compile(r"^\w+$")
# Hub split name for benchgen split names that differ from the Hub convention.
HF_SPLIT_NAMES = {"valid": "validation"}
ID_DIGITS = 9

BASE_FIELDS = [
    pa.field("id", pa.string(), nullable=False),
    pa.field("split", pa.string(), nullable=False),
    pa.field("depth", pa.int32(), nullable=False),
    pa.field("input_ids", pa.list_(pa.int32()), nullable=False),
    pa.field("target_ids", pa.list_(pa.int32()), nullable=False),
    pa.field("prompt", pa.string(), nullable=False),
    pa.field("answer", pa.string(), nullable=False),
]


def hf_split(split: str) -> str:
    """Hub split name of a benchgen split (``valid`` -> ``validation``; others unchanged)."""
    return HF_SPLIT_NAMES.get(split, split)


def example_schema(extras: list[pa.Field] | None = None) -> pa.Schema:
    """Arrow schema of one task's examples: the base contract followed by its extras."""
    return pa.schema(BASE_FIELDS + list(extras or []))


def make_ids(task: str, split: str, start: int, n: int) -> pa.Array:
    """Stable ids ``task/split/000000123`` for rows ``start .. start+n-1`` (built as bytes in numpy)."""
    digits = max(ID_DIGITS, len(str(max(start + n - 1, 0))))
    prefix = np.frombuffer(f"{task}/{split}/".encode(), np.uint8)
    buf = np.empty((n, len(prefix) + digits), np.uint8)
    buf[:, :len(prefix)] = prefix
    i = np.arange(start, start + n, dtype=np.int64)
    k = digits
    while k >= 3:  # three digits per pass through a 1000-entry table
        buf[:, len(prefix) + k - 3:len(prefix) + k] = _TRIPLES[i % 1000]
        i //= 1000
        k -= 3
    for j in range(k):
        buf[:, len(prefix) + k - 1 - j] = i % 10 + 48
        i //= 10
    return string_array(buf)


_TRIPLES = np.array([[48 + a, 48 + b, 48 + c] for a in range(10) for b in range(10) for c in range(10)], np.uint8)


def repeat_string(value: str, n: int) -> pa.Array:
    """A string column holding ``value`` n times (e.g. the split column)."""
    return string_array(np.tile(np.frombuffer(value.encode(), np.uint8), (n, 1)))


def string_array(chars: np.ndarray, lengths: np.ndarray | None = None) -> pa.Array:
    """Arrow strings from a uint8 matrix of UTF-8 bytes (rows = strings; optional ragged lengths)."""
    chars = np.ascontiguousarray(chars, dtype=np.uint8)
    n, width = chars.shape
    if lengths is None:
        offsets = np.arange(n + 1, dtype=np.int32) * width
        data = chars.reshape(-1)
    else:
        offsets = np.zeros(n + 1, dtype=np.int32)
        np.cumsum(lengths, out=offsets[1:])
        data = chars[np.arange(width)[None, :] < np.asarray(lengths)[:, None]]
    return pa.StringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(np.ascontiguousarray(data)))
