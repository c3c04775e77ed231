"""p-hop rows: uniform sequences conditioned on a defined, moving chain, sampled exactly per (p, length)
cell (the law and its proof are in this package's docstring); written through the grid."""

from __future__ import annotations

import math
import string

import numpy as np
import pyarrow as pa

from benchgen.schema import example_schema, string_array
from benchgen.task import Writer
from benchgen.tasks.grid.cells import Cell
from benchgen.tasks.grid.procedural import GridProcedural
from benchgen.tasks.grid.stream import write_grid
from benchgen.tasks.induction.config import MAX_LENGTH, InductionConfig
from benchgen.vocab import SPECIALS, Vocab, list_array_from_matrix

NAME = "induction"
EXTRA_FIELDS = [pa.field("width", pa.int32(), nullable=False),
                pa.field("chain_positions", pa.list_(pa.int32()), nullable=False)]
SCHEMA = example_schema(EXTRA_FIELDS)
DIGIT0 = len(SPECIALS)
BAR = DIGIT0 + 10
LETTER0 = BAR + 1
CHUNK = 16384  # rows per internal sampling pass (keeps the (rows, length) temporaries in cache)


def make_vocab(alphabet: int) -> Vocab:
    return Vocab(list(SPECIALS) + [str(d) for d in range(10)] + ["|"] + list(string.ascii_lowercase[:alphabet]),
                 joiner="")


def support_size(alphabet: int, p: int, n: int) -> int:
    """Number of length-n sequences whose p-hop chain visits p+1 distinct non-zero positions."""
    a = alphabet
    return sum(math.comb(s - 1, p - 1) * a ** (n - s - 1) * (a - 1) ** (s - p + 1) for s in range(p, n - 1))


class Sampler:
    """Uniform sequences conditioned on a defined, moving p-hop chain, for one (p, length) cell."""

    def __init__(self, cfg: InductionConfig):
        self.alphabet = int(cfg.alphabet)

    def population(self, cell: Cell) -> int:
        p, n = cell
        return support_size(self.alphabet, p, n)

    def draw(self, rng: np.random.Generator, cell: Cell, m: int) -> dict[str, np.ndarray]:
        """Exact conditioned sequences (module docstring), vectorised over rows (in cache-sized chunks)."""
        parts = [self._draw(rng, cell, min(CHUNK, m - lo)) for lo in range(0, m, CHUNK)]
        return {k: np.concatenate([d[k] for d in parts]) for k in parts[0]}

    def span_weights(self, cell: Cell) -> tuple[np.ndarray, np.ndarray]:
        """Spans S = n - i_p in p..n-2 and their exact probabilities P(S) ∝ C(S-1, p-1)·((a-1)/a)^S."""
        p, n = cell
        a = self.alphabet
        spans = np.arange(p, n - 1)
        logw = np.array([math.lgamma(s) - math.lgamma(p) - math.lgamma(s - p + 1) + s * math.log((a - 1) / a)
                         for s in spans.tolist()])
        w = np.exp(logw - logw.max())
        return spans, w / w.sum()

    def _draw(self, rng: np.random.Generator, cell: Cell, m: int) -> dict[str, np.ndarray]:
        p, n = cell
        # chain positions: the span S from its exact law, then hop gaps as a uniform composition of
        #    S into p positive parts (cut points = a uniform (p-1)-subset of 1..S-1, by random keys)
        spans, prob = self.span_weights(cell)
        s = rng.choice(spans, size=m, p=prob)
        cuts = np.empty((m, 0), dtype=np.int64)
        if p > 1:
            keys = rng.random((m, n - 3))
            keys[np.arange(1, n - 2)[None, :] >= s[:, None]] = 2.0  # only 1..S-1 are candidates
            cuts = np.sort(np.argpartition(keys, p - 2, axis=1)[:, :p - 1], axis=1) + 1
        chain = (n - np.concatenate([cuts, s[:, None]], axis=1)).astype(np.int32)  # i_1 > ... > i_p
        return self.fill(rng, cell, chain)

    def fill(self, rng: np.random.Generator, cell: Cell, chain: np.ndarray) -> dict[str, np.ndarray]:
        """Steps 1-2: chain letters and filler, uniform given the chain positions ``chain`` (i_1..i_p)."""
        p, n = cell
        a = self.alphabet
        m = len(chain)
        cols = np.arange(m)
        gaps = np.concatenate([np.full((m, 1), n, dtype=np.int32), chain], axis=1)  # i_0..i_p
        lengths = gaps[:, :-1] - gaps[:, 1:]  # |J_t| = i_t - i_{t+1}, t = 0..p-1
        # 1. chain letters c_0..c_p (a loop over hops, vectorised over rows)
        c = np.empty((m, p + 1), dtype=np.int8)
        c[:, 0] = rng.integers(0, a, size=m)
        step = rng.integers(1, a, size=(m, p), dtype=np.int8)
        for t in range(p):
            nxt = (c[:, t] + step[:, t]) % a
            if t >= 1:
                nxt = np.where(lengths[:, t] == 1, c[:, t - 1], nxt)
            c[:, t + 1] = nxt
        # 2. filler. excl = 1 + the letter excluded at each position (0 = free prefix): row-wise the
        #    prefix (i_p - 1 positions), J_{p-1}, ..., J_0, then position n (overwritten below)
        vals = np.zeros((m, p + 2), dtype=np.int8)
        vals[:, 1:p + 1] = c[:, p - 1::-1] + 1
        counts = np.empty((m, p + 2), dtype=np.int64)
        counts[:, 0] = chain[:, -1] - 1
        counts[:, 1:p + 1] = lengths[:, ::-1]
        counts[:, -1] = 1
        excl = np.repeat(vals.ravel(), counts.ravel()).reshape(m, n)
        r = rng.integers(0, a - 1, size=(m, n), dtype=np.int8)  # offset past the excluded letter
        free = rng.integers(0, a, size=(m, n), dtype=np.int8)  # prefix letters
        seq = excl + r  # = excluded letter + 1 + offset, in 1..2a-2
        seq -= (seq >= a).astype(np.int8) * np.int8(a)
        seq = np.where(excl == 0, free, seq)
        rows = cols[:, None]
        seq[rows, chain - 2] = c[:, :-1]  # last of J_t (t >= 1); the position before i_p
        seq[rows, chain - 1] = c[:, 1:]   # first of J_t
        seq[:, n - 1] = c[:, 0]
        return {"key": seq, "chain": gaps}

    def table(self, rows: dict[str, np.ndarray], cell: Cell, split: str) -> pa.Table:
        p, n = cell
        seq = rows["key"]
        m = len(seq)
        head = [DIGIT0 + int(ch) for ch in str(p)] + [BAR]
        ids = np.empty((m, len(head) + n), dtype=np.int32)
        ids[:, :len(head)] = head
        ids[:, len(head):] = seq + LETTER0
        chars = np.empty((m, len(head) + n), dtype=np.uint8)
        chars[:, :len(head)] = np.frombuffer(f"{p}|".encode(), np.uint8)
        chars[:, len(head):] = seq + ord("a")
        answer = np.take_along_axis(seq, rows["chain"][:, -1:] - 1, axis=1)
        return pa.table({
            "split": pa.repeat(pa.scalar(split, pa.string()), m),
            "depth": pa.array(np.full(m, p, dtype=np.int32)),
            "input_ids": list_array_from_matrix(ids),
            "target_ids": list_array_from_matrix(answer + LETTER0),
            "prompt": string_array(chars),
            "answer": string_array(answer + ord("a")),
            "width": pa.array(np.full(m, n, dtype=np.int32)),
            "chain_positions": list_array_from_matrix(rows["chain"]),
        })


def vocab(cfg: InductionConfig) -> Vocab:
    """The task's vocabulary for a config (its alphabet)."""
    return make_vocab(cfg.alphabet)


def generate(cfg: InductionConfig, writer: Writer, *, progress: bool = False, workers: int = 1) -> None:
    """Write every split of a p-hop dataset through ``writer`` (byte-identical for any ``workers``)."""
    write_grid(writer, task=NAME, grid=cfg.grid(), sampler=Sampler(cfg), counts=cfg.counts(), seed=cfg.seed,
               schema=SCHEMA, progress=progress, workers=workers, option="train_per_cell")


def procedural(cfg: InductionConfig) -> GridProcedural:
    """Procedural rows for ``benchgen.procedural``: this task's cell sampler, difficulty = hops."""
    cfg.validate()
    cfg.grid().validate()
    return GridProcedural(cfg.grid(), Sampler(cfg), "hops", (1, MAX_LENGTH))
