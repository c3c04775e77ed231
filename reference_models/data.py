"""Dataset splits -> padded token tensors, loss masks on answer tokens, deterministic batches.

A row becomes ``input_ids + target_ids`` (+ ``<eos>`` when answers vary in length), right-padded
with the pad id. The model sees ``tokens[:, :-1]`` and predicts ``tokens[:, 1:]``; the loss mask
keeps only the positions that predict answer tokens (for khop: the last position, as in
Loop-Think-Generalize). Right padding + causal attention means pads never affect real tokens.

Answer format (decided once from the train split and saved with the checkpoint):
``fixed_len`` when every training answer has the same length (khop: 1 token, no eos), else
answers end with ``<eos>`` and greedy decoding stops there.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import torch

from benchgen import seeding
from benchgen.dataset import Dataset
from benchgen.errors import DatasetError
from benchgen.vocab import EOS

COLUMNS = ["id", "depth", "input_ids", "target_ids"]


@dataclass
class AnswerFormat:
    """How answers are laid out: a fixed token count, or variable length terminated by eos."""

    fixed_len: int | None
    eos_id: int | None
    max_answer: int  # longest answer in tokens, eos included

    def to_dict(self) -> dict:
        return {"fixed_len": self.fixed_len, "eos_id": self.eos_id, "max_answer": self.max_answer}

    @classmethod
    def from_dict(cls, d: dict) -> AnswerFormat:
        return cls(d["fixed_len"], d["eos_id"], d["max_answer"])


def _lengths(arr: pa.Array | pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    """(lengths, flat values) of an arrow list<int> column, without Python loops."""
    arr = arr.combine_chunks() if isinstance(arr, pa.ChunkedArray) else arr
    offsets = np.asarray(arr.offsets)
    values = np.asarray(arr.values)[offsets[0]:offsets[-1]]
    return np.diff(offsets).astype(np.int64), values.astype(np.int64)


def answer_format(ds: Dataset) -> AnswerFormat:
    """Fixed-length answers if every train answer has one length, else eos-terminated."""
    lens, _ = _lengths(ds.table("train", columns=["target_ids"]).column("target_ids"))
    if len(lens) == 0 or lens.min() < 1:
        raise DatasetError(f"{ds.path}: train split has an empty target_ids row (need >= 1 answer token)")
    if lens.min() == lens.max():
        return AnswerFormat(int(lens[0]), None, int(lens[0]))
    if EOS not in ds.vocab.tokens:
        raise DatasetError(f"{ds.path}: answers vary in length but vocab.json has no {EOS} token")
    longest = max(int(_lengths(ds.table(s, columns=["target_ids"]).column("target_ids"))[0].max())
                  for s in ds.splits)
    return AnswerFormat(None, ds.vocab.id(EOS), longest + 1)


@dataclass
class Encoded:
    """One split as tensors: ``tokens`` (N, L) right-padded; per-row input/answer lengths."""

    tokens: torch.Tensor
    n_in: torch.Tensor
    n_ans: torch.Tensor  # answer tokens scored (eos included when the format has one)
    depth: torch.Tensor

    def __len__(self) -> int:
        return self.tokens.shape[0]


def encode(table: pa.Table, fmt: AnswerFormat, pad_id: int) -> Encoded:
    """Vectorised: scatter input and target values into a padded matrix with boolean masks."""
    n_in, in_vals = _lengths(table.column("input_ids"))
    n_tg, tg_vals = _lengths(table.column("target_ids"))
    if len(n_in) and n_in.min() < 1:
        raise DatasetError("input_ids: every row needs at least one token")
    n_ans = n_tg + (1 if fmt.eos_id is not None else 0)
    width = int((n_in + n_ans).max()) if len(n_in) else 1
    cols = np.arange(width)[None, :]
    mat = np.full((len(n_in), width), pad_id, dtype=np.int64)
    mat[cols < n_in[:, None]] = in_vals
    mat[(cols >= n_in[:, None]) & (cols < (n_in + n_tg)[:, None])] = tg_vals
    if fmt.eos_id is not None:
        mat[np.arange(len(n_in)), n_in + n_tg] = fmt.eos_id
    depth = np.asarray(table.column("depth").combine_chunks()).astype(np.int64) if "depth" in table.column_names \
        else np.zeros(len(n_in), np.int64)
    return Encoded(torch.from_numpy(mat), torch.from_numpy(n_in), torch.from_numpy(n_ans), torch.from_numpy(depth))


def load_split(ds: Dataset, split: str, fmt: AnswerFormat, limit: int = 0, seed: int = 0) -> Encoded:
    """Encode a split; ``limit`` > 0 keeps a fixed random subset (same for every run with this seed)."""
    table = ds.table(split, columns=COLUMNS)
    if 0 < limit < table.num_rows:
        keep = np.sort(seeding.rng(seed, "eval-subset", split).choice(table.num_rows, limit, replace=False))
        table = table.take(pa.array(keep))
    return encode(table, fmt, ds.vocab.pad_id)


def make_batch(data: Encoded, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(x, y, mask) for rows ``idx``, trimmed to the batch's longest row. mask marks answer targets."""
    n_in, n_ans = data.n_in[idx], data.n_ans[idx]
    width = int((n_in + n_ans).max())
    tok = data.tokens[idx, :width]
    x, y = tok[:, :-1], tok[:, 1:]
    pos = torch.arange(width - 1)[None, :]
    mask = (pos >= (n_in - 1)[:, None]) & (pos < (n_in - 1 + n_ans)[:, None])
    return x, y, mask


def batch_indices(n: int, batch_size: int, step: int, seed: int, rank: int = 0, world: int = 1) -> torch.Tensor:
    """Rows of global batch ``step`` for ``rank``: epoch-wise permutations, a pure function of the step.

    The global batch (``batch_size`` rows) is cut into ``world`` equal slices, so DDP ranks see
    disjoint rows and the union is exactly the single-process batch (exact resume, exact DDP).
    """
    per_epoch = max(1, n // batch_size)
    epoch, k = divmod(step, per_epoch)
    perm = seeding.rng(seed, "batches", epoch).permutation(n)
    if n < batch_size:  # tiny datasets: repeat the permutation to fill the batch
        perm = np.resize(perm, batch_size)
    rows = perm[k * batch_size:(k + 1) * batch_size]
    share = batch_size // world
    return torch.from_numpy(rows[rank * share:(rank + 1) * share].astype(np.int64))
