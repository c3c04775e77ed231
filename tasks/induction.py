"""p-hop induction (Sanford et al. 2024; Saunshi et al. 2025, "Reasoning with Latent Thoughts").

A sequence ``v_1..v_n`` over an alphabet of ``alphabet`` letters. With 1-indexed positions,
``find1(v, i) = max({0} | {j <= i : v_{j-1} = v_i})`` (the position just after the previous
occurrence of ``v_i``), ``find_p`` applies find1 ``p`` times starting from ``i = n``, and the
answer is ``v[find_p(v, n)]``. depth = p, width = n.

Rows: ``input_ids`` = the digits of p, ``|``, then the n letters (p is written in the input
because a dataset mixes several p); prompt e.g. ``16|abdcab...``; the answer is one letter.
The sequence is ``input_ids[-width:]``. Extra column ``chain_positions`` = ``[i_0, ..., i_p]``
with ``i_t = find_t(v, n)`` (1-indexed sequence positions), so intermediate hops can be probed.

Sampler (chain first, then filler), vectorised over a batch:

1. choose ``p`` distinct positions ``n > i_1 > ... > i_p >= 2`` uniformly (``i_0 = n``);
2. blocks ``J_t = [i_{t+1}, i_t - 1]`` (t = 0..p-1) partition ``[i_p, n-1]``; choose chain
   letters ``c_0..c_p`` with ``c_{t+1} != c_t``, and ``c_{t+1} = c_{t-1}`` when ``|J_t| = 1``
   (t >= 1; that single position is both J_t's first and last element, see 3);
3. set ``v_n = c_0``; in ``J_t`` the first element ``v_{i_{t+1}} = c_{t+1}``, the last element
   ``v_{i_t - 1} = c_{t-1}`` (t >= 1), every other element uniform over the letters != c_t;
   before ``i_p``: ``v_{i_p - 1} = c_{p-1}``, the rest uniform over all letters.

Claim: ``find_t(v, n) = i_t`` for t = 0..p, so the answer is ``c_p``. Proof by induction on t:
``v_{i_t} = c_t`` (step 3); no element of ``J_t = [i_{t+1}, i_t - 1]`` equals c_t (its first is
c_{t+1} != c_t, its last c_{t-1} != c_t, the rest are drawn != c_t); and ``v_{i_{t+1} - 1} =
c_t`` (the last element of J_{t+1}, or the position before i_p when t = p-1). Hence the last
occurrence of c_t before i_t is at ``i_{t+1} - 1`` and ``find1(v, i_t) = i_{t+1}``. QED.

Conversely every sequence whose p-hop chain visits p+1 distinct non-zero positions satisfies
these constraints, so the sampler's support is exactly that set; its size is
``sum_{S=p}^{n-2} C(S-1, p-1) A^(n-S-1) (A-1)^(S-p+1)`` (S = i_0 - i_p, A = alphabet), which
``population`` uses to refuse requests for more unique rows than exist. The sampler is not
uniform over that support (chain positions are uniform subsets; the fill is uniform given them).

Splits come from the shared (depth, width) grid (tasks/grid.py): train/valid/test_id over
(p in ``train_hops``) x (n in ``train_lengths``) minus ``held_out``; test_systematic = the
held-out cells; test_depth = ``test_hops`` (above max(train_hops)) at every training length.
"""

from __future__ import annotations

import math
import string
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
from benchgen.tasks.grid import Cell, Counts, Grid, check_counts, check_populations, write_grid_dataset

from benchgen.config import to_dict
from benchgen.errors import ConfigError
from benchgen.schema import example_schema, string_array
from benchgen.vocab import SPECIALS, Vocab, list_array_from_matrix

NAME = "induction"
DESCRIPTION = "p-hop induction over short alphabets (held-out (p, length) cells + more hops)"
EXTRA_FIELDS = [pa.field("width", pa.int32(), nullable=False),
                pa.field("chain_positions", pa.list_(pa.int32()), nullable=False)]
SCHEMA = example_schema(EXTRA_FIELDS)
DIGIT0 = len(SPECIALS)
BAR = DIGIT0 + 10
LETTER0 = BAR + 1
MAX_LENGTH = 8192
CHUNK = 16384  # rows per internal sampling pass (keeps the (rows, length) temporaries in cache)


@dataclass
class InductionConfig:
    """One p-hop dataset: alphabet, the (p, length) grid, split sizes, seed."""

    alphabet: int = field(default=4, metadata={"help": "number of letters (2..26)"})
    train_hops: tuple[int, ...] = field(default=(1, 2, 3), metadata={
        "help": "hop counts p in training, e.g. 1-3 or 16,32"})
    train_lengths: tuple[int, ...] = field(default=(12, 16), metadata={
        "help": "sequence lengths n in training, e.g. 128,256"})
    held_out: tuple[tuple[int, int], ...] = field(default=((3, 16),), metadata={
        "help": "held-out (p x length) cells for test_systematic, e.g. 32x128; each p and length must "
                "occur in another training cell"})
    test_hops: tuple[int, ...] = field(default=(4, 5), metadata={
        "help": "hop counts of test_depth (all above max(train-hops)), at every training length"})
    train_per_cell: int = field(default=2000, metadata={"help": "train rows per training cell"})
    valid_per_cell: int = field(default=100, metadata={"help": "valid rows per training cell"})
    test_per_cell: int = field(default=200, metadata={
        "help": "rows per cell of test_id, test_systematic and test_depth"})
    seed: int = field(default=0, metadata={"help": "random seed (same seed + config => identical files)"})

    def grid(self) -> Grid:
        return Grid(tuple(self.train_hops), tuple(self.train_lengths), tuple(map(tuple, self.held_out)),
                    tuple(self.test_hops), depth_option="train_hops", width_option="train_lengths",
                    held_out_option="held_out", test_option="test_hops")

    def counts(self) -> Counts:
        return Counts(self.train_per_cell, self.valid_per_cell, self.test_per_cell)

    def validate(self) -> None:
        """Reject impossible values before any work (one option named per error)."""
        if not 2 <= self.alphabet <= 26:
            raise ConfigError("alphabet", f"expected 2..26 letters, got {self.alphabet}")
        for name in ("train_hops", "test_hops"):
            bad = [p for p in getattr(self, name) if p < 1]
            if bad:
                raise ConfigError(name, f"hop counts must be >= 1, got {bad}")
        bad = [n for n in self.train_lengths if not 3 <= n <= MAX_LENGTH]
        if bad:
            raise ConfigError("train_lengths", f"lengths must be in 3..{MAX_LENGTH}, got {bad}")
        check_counts(self.counts())
        grid = self.grid()
        grid.validate()
        for option, cells in (("train_hops", grid.train_cells()), ("held_out", grid.systematic_cells()),
                              ("test_hops", grid.depth_cells())):
            for p, n in cells:
                if p > n - 2:
                    raise ConfigError(option, f"cell {p}x{n}: a {p}-hop chain needs length >= {p + 2}")
        check_populations(Sampler(self), grid, self.counts())


PRESETS = {
    "saunshi-phop": {
        "description": "Saunshi et al. 2025: alphabet 4, length 256, p in {16,32}; length 128 is also "
                       "trained so that cell 32x128 can be held out (test_systematic); test_depth p in "
                       "{48,64} at lengths 128 and 256; 100,000 train rows per cell (300k), 1,000 per test cell",
        "config": {"alphabet": 4, "train_hops": (16, 32), "train_lengths": (128, 256),
                   "held_out": ((32, 128),), "test_hops": (48, 64), "train_per_cell": 100_000,
                   "valid_per_cell": 1000, "test_per_cell": 1000, "seed": 0},
    },
    "phop-small": {
        "description": "CPU-sized: alphabet 4, lengths {12,16}, train p in {1,2,3} minus held-out cell 3x16, "
                       "test_depth p in {4,5}; 2,000 train rows per cell (10,000), 200 per test cell",
        "config": {"alphabet": 4, "train_hops": (1, 2, 3), "train_lengths": (12, 16),
                   "held_out": ((3, 16),), "test_hops": (4, 5), "train_per_cell": 2000,
                   "valid_per_cell": 100, "test_per_cell": 200, "seed": 0},
    },
}
CONFIG = InductionConfig


def make_vocab(alphabet: int) -> Vocab:
    return Vocab(list(SPECIALS) + [str(d) for d in range(10)] + ["|"] + list(string.ascii_lowercase[:alphabet]),
                 joiner="")


def support_size(alphabet: int, p: int, n: int) -> int:
    """Number of length-n sequences whose p-hop chain visits p+1 distinct non-zero positions."""
    a = alphabet
    return sum(math.comb(s - 1, p - 1) * a ** (n - s - 1) * (a - 1) ** (s - p + 1) for s in range(p, n - 1))


class Sampler:
    """Chain-first p-hop sequences for one (p, length) cell, rendered to rows in bulk."""

    def __init__(self, cfg: InductionConfig):
        self.alphabet = int(cfg.alphabet)

    def population(self, cell: Cell) -> int:
        p, n = cell
        return support_size(self.alphabet, p, n)

    def draw(self, rng: np.random.Generator, cell: Cell, m: int) -> dict[str, np.ndarray]:
        """Steps 1-3 of the module docstring, vectorised over rows (in cache-sized chunks)."""
        parts = [self._draw(rng, cell, min(CHUNK, m - lo)) for lo in range(0, m, CHUNK)]
        return {k: np.concatenate([d[k] for d in parts]) for k in parts[0]}

    def _draw(self, rng: np.random.Generator, cell: Cell, m: int) -> dict[str, np.ndarray]:
        p, n = cell
        a = self.alphabet
        cols = np.arange(m)
        # 1. chain positions i_1 > ... > i_p: a uniform p-subset of the n-2 candidates 2..n-1 by
        #    Floyd's algorithm (p vectorised steps), read back in order from a membership matrix
        cand = n - 2
        member = np.zeros((m, cand), dtype=bool)
        for j in range(cand - p, cand):
            t = rng.integers(0, j + 1, size=m)
            member[cols, np.where(member[cols, t], j, t)] = True
        chain = (np.nonzero(member)[1].reshape(m, p)[:, ::-1] + 2).astype(np.int32)
        gaps = np.concatenate([np.full((m, 1), n, dtype=np.int32), chain], axis=1)  # i_0..i_p
        lengths = gaps[:, :-1] - gaps[:, 1:]  # |J_t| = i_t - i_{t+1}, t = 0..p-1
        # 2. chain letters c_0..c_p (a loop over hops, vectorised over rows)
        c = np.empty((m, p + 1), dtype=np.int8)
        c[:, 0] = rng.integers(0, a, size=m)
        step = rng.integers(1, a, size=(m, p), dtype=np.int8)
        for t in range(p):
            nxt = (c[:, t] + step[:, t]) % a
            if t >= 1:
                nxt = np.where(lengths[:, t] == 1, c[:, t - 1], nxt)
            c[:, t + 1] = nxt
        # 3. filler. excl = 1 + the letter excluded at each position (0 = free prefix): row-wise the
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


def generate(cfg: InductionConfig, out: str | Path, overwrite: bool = False, progress: bool = True) -> Path:
    """Generate a p-hop induction dataset into ``out`` (atomic write; refuses to overwrite unless asked)."""
    from benchgen.dataset import check_target

    cfg.validate()
    check_target(out, overwrite)
    return write_grid_dataset(task=NAME, grid=cfg.grid(), sampler=Sampler(cfg), counts=cfg.counts(),
                              seed=cfg.seed, config=to_dict(cfg), vocab=make_vocab(cfg.alphabet),
                              schema=SCHEMA, out=out, overwrite=overwrite, progress=progress,
                              description=__doc__ or "")


# --- audit: plain Python, shares no code with the generator ----------------------------------------
def find1(v: list[str], i: int) -> int:
    """find1 on a 1-indexed sequence (v[0] unused): the position after the last v_i before i, or 0."""
    for k in range(i - 1, 0, -1):  # the largest j = k + 1 <= i with v_{j-1} = v_i
        if v[k] == v[i]:
            return k + 1
    return 0


def audit(dataset) -> list[str]:
    """Re-run find_p on every decoded sequence and check answers, chains and the splits."""
    from benchgen.tasks.grid import audit_grid

    tokens = dataset.vocab.tokens

    def check_row(row: dict) -> tuple[list[str], bool]:
        inp, answer = row["input_ids"], row["answer"]
        text = "".join(tokens[i] for i in inp)
        head, sep, letters = text.partition("|")
        if not sep or not head.isdigit() or not letters.isalpha() or len(letters) != len(inp) - len(head) - 1:
            return ["input is not 'p|letters'"], False
        p = int(head)
        msgs = []
        if p != row["depth"]:
            msgs.append("depth != p written in the input")
        if len(letters) != row["width"]:
            msgs.append("width != sequence length")
        if row["prompt"] != text:
            msgs.append("prompt != rendered input_ids")
        v = [""] + list(letters)
        i, visited = len(letters), [len(letters)]
        for _ in range(p):
            i = find1(v, i)
            visited.append(i)
            if i == 0:
                break
        if i == 0:
            msgs.append("the p-hop chain reaches position 0 (no answer)")
        else:
            if answer != v[i]:
                msgs.append("answer != v[find_p(v, n)]")
            if row["chain_positions"] != visited:
                msgs.append("chain_positions != positions visited by find_1..find_p")
        if "".join(tokens[t] for t in row["target_ids"]) != answer:
            msgs.append("target_ids do not spell the answer")
        return msgs, True

    return audit_grid(dataset, ["chain_positions"], check_row, "train_hops", "train_lengths", "test_hops")
