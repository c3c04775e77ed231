"""Multi-operand addition (Saunshi et al. 2025, "Reasoning with Latent Thoughts").

``n`` operands of ``width`` digits, zero-padded: prompt ``315 + 120 + 045 + 824 =``, answer
``1304`` (no leading zeros; least significant digit first with ``reverse_answer``). depth = n.
Tokens: ``<pad> <bos> <eos> <sep>``, digits ``0``-``9``, ``+``, ``=``; ``input_ids`` are the
operand digits with ``+`` between operands and ``=`` at the end (the prompt's spaces are
text-only), ``target_ids`` the answer digits. Operands are uniform over all ``width``-digit
strings. Extra columns: ``width`` (digits per operand) and ``carries`` (how many of the
``width`` digit columns, added right to left, pass a non-zero carry to the next column).

Splits come from the shared (depth, width) grid (tasks/grid.py): train/valid/test_id over the
training cells (n in ``train_operands``) x (width in ``train_widths``) minus ``held_out``;
test_systematic = the held-out cells; test_interp = ``interp_operands`` (strictly between
training n, never trained: Saunshi et al.'s n=24) and test_depth = ``test_operands`` (all above
the largest training n), each at every training width. Rows are unique within a cell across train/valid/test_id.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
from benchgen.tasks.grid import Cell, Counts, Grid, check_counts, check_populations, write_grid_dataset

from benchgen.config import to_dict
from benchgen.errors import ConfigError
from benchgen.schema import example_schema, string_array
from benchgen.vocab import SPECIALS, Vocab, list_array_from_matrix

NAME = "addition"
DESCRIPTION = "multi-operand addition of zero-padded numbers (held-out (n, width) cells + more operands)"
EXTRA_FIELDS = [pa.field("width", pa.int32(), nullable=False),
                pa.field("carries", pa.int32(), nullable=False)]
SCHEMA = example_schema(EXTRA_FIELDS)
DIGIT0 = len(SPECIALS)
PLUS, EQUALS = DIGIT0 + 10, DIGIT0 + 11
MAX_OPERANDS, MAX_WIDTH = 4096, 64


@dataclass
class AdditionConfig:
    """One addition dataset: the (operands, width) grid, split sizes, answer order, seed."""

    train_operands: tuple[int, ...] = field(default=(2, 3, 4), metadata={
        "help": "operand counts n in training, e.g. 2-4 or 2,4,8,16,32"})
    train_widths: tuple[int, ...] = field(default=(2, 3), metadata={
        "help": "digits per operand in training, e.g. 2-3"})
    held_out: tuple[tuple[int, int], ...] = field(default=((4, 3),), metadata={
        "help": "held-out (n x width) cells for test_systematic, e.g. 4x3,16x4; each n and width must "
                "occur in another training cell"})
    test_operands: tuple[int, ...] = field(default=(5, 6), metadata={
        "help": "operand counts of test_depth (all above max(train-operands)), at every training width"})
    interp_operands: tuple[int, ...] = field(default=(), metadata={
        "help": "operand counts of test_interp (strictly between training counts, never trained), at every "
                "training width, e.g. 24; empty for none"})
    train_per_cell: int = field(default=1200, metadata={"help": "train rows per training cell"})
    valid_per_cell: int = field(default=100, metadata={"help": "valid rows per training cell"})
    test_per_cell: int = field(default=200, metadata={
        "help": "rows per cell of test_id, test_systematic and test_depth"})
    reverse_answer: bool = field(default=False, metadata={
        "help": "write answer digits least significant first (length-generalisation convention)"})
    seed: int = field(default=0, metadata={"help": "random seed (same seed + config => identical files)"})

    def grid(self) -> Grid:
        return Grid(tuple(self.train_operands), tuple(self.train_widths), tuple(map(tuple, self.held_out)),
                    tuple(self.test_operands), depth_option="train_operands", width_option="train_widths",
                    held_out_option="held_out", test_option="test_operands",
                    interp_depths=tuple(self.interp_operands), interp_option="interp_operands")

    def counts(self) -> Counts:
        return Counts(self.train_per_cell, self.valid_per_cell, self.test_per_cell)

    def validate(self) -> None:
        """Reject impossible values before any work (one option named per error)."""
        for name in ("train_operands", "test_operands", "interp_operands"):
            bad = [n for n in getattr(self, name) if not 2 <= n <= MAX_OPERANDS]
            if bad:
                raise ConfigError(name, f"operand counts must be in 2..{MAX_OPERANDS}, got {bad}")
        bad = [w for w in self.train_widths if not 1 <= w <= MAX_WIDTH]
        if bad:
            raise ConfigError("train_widths", f"widths must be in 1..{MAX_WIDTH}, got {bad}")
        check_counts(self.counts())
        grid = self.grid()
        grid.validate()
        check_populations(Sampler(self), grid, self.counts())


PRESETS = {
    "saunshi-addition": {
        "description": "Saunshi et al. 2025's grid exactly: 3-digit operands (width 3 only), train n in "
                       "{2,4,8,16,32}; test_id holds the trained n (the paper's n=8,16,32), test_interp the "
                       "untrained n=24; no test_systematic or test_depth (the paper has none); 100,000 train "
                       "rows per n (500k), 1,000 per test cell",
        "config": {"train_operands": (2, 4, 8, 16, 32), "train_widths": (3,), "held_out": (),
                   "test_operands": (), "interp_operands": (24,), "train_per_cell": 100_000,
                   "valid_per_cell": 1000, "test_per_cell": 1000, "reverse_answer": False, "seed": 0},
    },
    "addition-grid": {
        "description": "Saunshi-style mixed grid: train n in {2,4,8,16,32} at widths 3 and 4 minus held-out "
                       "cell 16x4 (test_systematic), test_interp n=24, test_depth n in {40,48}; 100,000 "
                       "train rows per cell (900k), 1,000 per test cell",
        "config": {"train_operands": (2, 4, 8, 16, 32), "train_widths": (3, 4), "held_out": ((16, 4),),
                   "test_operands": (40, 48), "interp_operands": (24,), "train_per_cell": 100_000,
                   "valid_per_cell": 1000, "test_per_cell": 1000, "reverse_answer": False, "seed": 0},
    },
    "addition-small": {
        "description": "CPU-sized: widths {2,3}, train n in {2,3,4} minus held-out cell 4x3, test_depth "
                       "n in {5,6}; 1,200 train rows per cell (6,000), 200 per test cell",
        "config": {"train_operands": (2, 3, 4), "train_widths": (2, 3), "held_out": ((4, 3),),
                   "test_operands": (5, 6), "train_per_cell": 1200, "valid_per_cell": 100,
                   "test_per_cell": 200, "reverse_answer": False, "seed": 0},
    },
}
CONFIG = AdditionConfig


def make_vocab() -> Vocab:
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


def generate(cfg: AdditionConfig, out: str | Path, overwrite: bool = False, progress: bool = True,
             workers: int | None = None) -> Path:
    """Generate an addition dataset into ``out`` (atomic write; refuses to overwrite unless asked).

    ``workers`` processes (default: the CPUs this job may use; 1 = in-process) sample and encode
    train shards of large datasets; the files are byte-identical for any number of workers.
    """
    from benchgen.dataset import check_target

    cfg.validate()
    check_target(out, overwrite)
    return write_grid_dataset(task=NAME, grid=cfg.grid(), sampler=Sampler(cfg), counts=cfg.counts(),
                              seed=cfg.seed, config=to_dict(cfg), vocab=make_vocab(), schema=SCHEMA,
                              out=out, overwrite=overwrite, progress=progress, description=__doc__ or "",
                              workers=workers)


# --- audit: plain Python, shares no code with the generator ----------------------------------------
def audit(dataset) -> list[str]:
    """Recompute every answer with Python integers from the prompt text and check the splits."""
    from benchgen.tasks.grid import audit_grid

    reverse, tokens = dataset.config.get("reverse_answer"), dataset.vocab.tokens

    def check_row(row: dict) -> tuple[list[str], bool]:
        prompt, answer, width = row["prompt"], row["answer"], row["width"]
        if not prompt.endswith(" =") or any(not o.isdigit() for o in prompt[:-2].split(" + ")):
            return ["prompt is not 'a + b + ... ='"], False
        ops = prompt[:-2].split(" + ")
        msgs = []
        if len(ops) != row["depth"]:
            msgs.append("depth != number of operands")
        if any(len(o) != width for o in ops):
            return msgs + ["an operand's digit count != width"], True
        if "".join(tokens[i] for i in row["input_ids"]) != prompt.replace(" ", ""):
            msgs.append("input_ids do not spell the prompt")
        expected = str(sum(int(o) for o in ops))
        if answer != (expected[::-1] if reverse else expected):
            msgs.append("answer != Python integer sum of the operands")
        if "".join(tokens[i] for i in row["target_ids"]) != answer:
            msgs.append("target_ids do not spell the answer")
        carry, count = 0, 0
        for j in reversed(range(width)):
            carry = (sum(int(o[j]) for o in ops) + carry) // 10
            count += carry > 0
        if row["carries"] != count:
            msgs.append("carries != carry positions of column addition")
        return msgs, True

    return audit_grid(dataset, ["carries"], check_row, "train_operands", "train_widths", "test_operands",
                      "interp_operands")
