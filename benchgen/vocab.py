"""Token vocabulary: ids <-> strings, and vectorised rendering of id rows to text."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

PAD, BOS, EOS, SEP = "<pad>", "<bos>", "<eos>", "<sep>"
SPECIALS = (PAD, BOS, EOS, SEP)


@dataclass
class Vocab:
    """Ordered token list; id = position. ``joiner`` separates tokens when rendering text."""

    tokens: list[str]
    joiner: str = ""
    _index: dict[str, int] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._index = {t: i for i, t in enumerate(self.tokens)}
        if len(self._index) != len(self.tokens):
            raise ValueError("vocabulary tokens must be unique")
        self._strings = pa.array(self.tokens, pa.string())

    def __len__(self) -> int:
        return len(self.tokens)

    @property
    def pad_id(self) -> int:
        return self._index[PAD]

    def id(self, token: str) -> int:
        """Id of one token (KeyError names the token)."""
        return self._index[token]

    def ids(self, tokens: list[str]) -> np.ndarray:
        return np.array([self._index[t] for t in tokens], dtype=np.int32)

    def render(self, ids: pa.Array | np.ndarray, lengths: np.ndarray | None = None) -> pa.Array:
        """Render rows of token ids to strings: an arrow take + list join, all in C.

        ``ids`` is a 2-D int matrix (ragged rows via ``lengths``) or an arrow list array.
        """
        if isinstance(ids, np.ndarray):
            ids = list_array_from_matrix(ids, lengths)
        ids = ids.combine_chunks() if isinstance(ids, pa.ChunkedArray) else ids
        words = pc.take(self._strings, ids.flatten())
        offsets = pc.subtract(ids.offsets, ids.offsets[0])
        return pc.binary_join(pa.ListArray.from_arrays(offsets, words), self.joiner)

    def decode(self, ids) -> str:
        """Render one row (plain Python; for audits and debugging)."""
        return self.joiner.join(self.tokens[int(i)] for i in ids)

    def to_json(self) -> dict:
        return {"tokens": self.tokens, "joiner": self.joiner, "pad_id": self._index.get(PAD)}

    def save(self, path: str | Path) -> None:
        """Write vocab.json atomically (umask modes) through the one atomic-write helper."""
        from benchgen.atomic import write_file

        write_file(path, json.dumps(self.to_json(), indent=1) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> Vocab:
        """Read vocab.json, validating its structure (ValueError naming the field otherwise)."""
        d = json.loads(Path(path).read_text(encoding="utf-8"))
        return cls.from_json(d)

    @classmethod
    def from_json(cls, d: object) -> Vocab:
        """Build from a parsed vocab.json: {"tokens": [str, ...], "joiner": str}."""
        if not isinstance(d, dict):
            raise ValueError(f"expected a JSON object, got {type(d).__name__}")
        tokens = d.get("tokens")
        if not isinstance(tokens, list) or not tokens or not all(isinstance(t, str) for t in tokens):
            raise ValueError("field 'tokens' must be a non-empty list of strings")
        joiner = d.get("joiner", "")
        if not isinstance(joiner, str):
            raise ValueError("field 'joiner' must be a string")
        if PAD not in tokens:
            raise ValueError(f"field 'tokens' must contain {PAD}")
        return cls(tokens=list(tokens), joiner=joiner)


def list_array_from_matrix(m: np.ndarray, lengths: np.ndarray | None = None) -> pa.ListArray:
    """Arrow list<int32> array from a 2-D matrix (optionally ragged via per-row ``lengths``)."""
    n, width = m.shape
    if lengths is None:
        offsets = np.arange(n + 1, dtype=np.int32) * width
        values = np.ascontiguousarray(m, dtype=np.int32).reshape(-1)
    else:
        lengths = np.asarray(lengths, dtype=np.int32)
        offsets = np.zeros(n + 1, dtype=np.int32)
        np.cumsum(lengths, out=offsets[1:])
        mask = np.arange(width)[None, :] < lengths[:, None]
        values = m[mask].astype(np.int32, copy=False)  # boolean indexing reads any strides: no contiguous copy first
    return pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), pa.array(values, pa.int32()))
