"""Addition rows: uniform operand digits per (n, width) cell, rendered in bulk; written through the grid."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from benchgen.schema import example_schema, string_array
from benchgen.task import Writer
from benchgen.tasks.addition.config import MAX_OPERANDS, AdditionConfig
from benchgen.tasks.grid.cells import Cell
from benchgen.tasks.grid.procedural import GridProcedural
from benchgen.tasks.grid.stream import write_grid
from benchgen.vocab import SPECIALS, Vocab, list_array_from_matrix

NAME = "addition"
EXTRA_FIELDS = [pa.field("width", pa.int32(), nullable=False),
                pa.field("carries", pa.int32(), nullable=False)]
SCHEMA = example_schema(EXTRA_FIELDS)
DIGIT0 = len(SPECIALS)
PLUS, EQUALS = DIGIT0 + 10, DIGIT0 + 11


def make_vocab(cfg: AdditionConfig | None = None) -> Vocab:
    """Specials, the ten digits, ``+`` and ``=`` (the same for every config)."""
    return Vocab(list(SPECIALS) + [str(d) for d in range(10)] + ["+", "="], joiner="")


class Sampler:
    """Uniform operand digits for one (n, width) cell, rendered to rows in bulk."""

    def __init__(self, cfg: AdditionConfig):
        self.reverse = bool(cfg.reverse_answer)

    def population(self, cell: Cell) -> int:
        n, w = cell
        return 10 ** (n * w)

    def draw(self, rng: np.random.Generator, cell: Cell, m: int) -> dict[str, np.ndarray]:
        n, w = cell
        return {"key": rng.integers(0, 10, size=(m, n * w), dtype=np.int8)}

    def table(self, rows: dict[str, np.ndarray], cell: Cell, split: str) -> pa.Table:
        n, w = cell
        digits = rows["key"].reshape(-1, n, w)
        m = len(digits)
        ids = np.empty((m, n, w + 1), dtype=np.int32)
        ids[:, :, :w] = digits + DIGIT0
        ids[:, :, w] = PLUS
        ids[:, -1, w] = EQUALS
        chars = np.empty((m, n, w + 3), dtype=np.uint8)
        chars[:, :, :w] = digits + ord("0")
        chars[:, :, w:] = np.frombuffer(b" + ", np.uint8)
        chars[:, -1, w:] = np.frombuffer(b" = ", np.uint8)
        prompt = string_array(chars.reshape(m, -1)[:, :-1])

        # column addition right to left (a loop over digit columns, vectorised over rows)
        cols = digits.sum(axis=1, dtype=np.int64)
        extra = len(str(n - 1))  # the final carry is below n
        total = np.zeros((m, extra + w), dtype=np.int64)
        carry = np.zeros(m, dtype=np.int64)
        carries = np.zeros(m, dtype=np.int32)
        for j in range(w - 1, -1, -1):
            s = cols[:, j] + carry
            total[:, extra + j] = s % 10
            carry = s // 10
            carries += carry > 0
        for j in range(extra - 1, -1, -1):
            total[:, j] = carry % 10
            carry //= 10
        width = total.shape[1]
        nonzero = total != 0
        lead = np.where(nonzero.any(axis=1), nonzero.argmax(axis=1), width - 1)
        length = (width - lead).astype(np.int32)
        ar = np.arange(width)
        if self.reverse:
            aligned = total[:, ::-1]
        else:
            aligned = np.take_along_axis(total, np.minimum(lead[:, None] + ar, width - 1), axis=1)
        return pa.table({
            "split": pa.repeat(pa.scalar(split, pa.string()), m),
            "depth": pa.array(np.full(m, n, dtype=np.int32)),
            "input_ids": list_array_from_matrix(ids.reshape(m, -1)),
            "target_ids": list_array_from_matrix(aligned + DIGIT0, length),
            "prompt": prompt,
            "answer": string_array(aligned + ord("0"), length),
            "width": pa.array(np.full(m, w, dtype=np.int32)),
            "carries": pa.array(carries),
        })


def generate(cfg: AdditionConfig, writer: Writer, *, progress: bool = False, workers: int = 1) -> None:
    """Write every split of an addition dataset through ``writer`` (byte-identical for any ``workers``)."""
    write_grid(writer, task=NAME, grid=cfg.grid(), sampler=Sampler(cfg), counts=cfg.counts(), seed=cfg.seed,
               schema=SCHEMA, progress=progress, workers=workers)


def procedural(cfg: AdditionConfig) -> GridProcedural:
    """Procedural rows for ``benchgen.procedural``: this task's cell sampler, difficulty = operands."""
    cfg.validate()
    cfg.grid().validate()
    return GridProcedural(cfg.grid(), Sampler(cfg), "operands", (2, MAX_OPERANDS))
