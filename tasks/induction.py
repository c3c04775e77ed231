"""p-hop induction (Sanford et al. 2024; Saunshi et al. 2025, "Reasoning with Latent Thoughts").

A sequence ``v_1..v_n`` over an alphabet of ``alphabet`` letters. With 1-indexed positions,
``find1(v, i) = max({0} | {j <= i : v_{j-1} = v_i})`` (the position just after the previous
occurrence of ``v_i``), ``find_p`` applies find1 ``p`` times starting from ``i = n``, and the
answer is ``v[find_p(v, n)]``. depth = p, width = n.

Rows: ``input_ids`` = the digits of p, ``|``, then the n letters (p is written in the input
because a dataset mixes several p); prompt e.g. ``16|abdcab...``; the answer is one letter.
The sequence is ``input_ids[-width:]``. Extra column ``chain_positions`` = ``[i_0, ..., i_p]``
with ``i_t = find_t(v, n)`` (1-indexed sequence positions), so intermediate hops can be probed.

Distribution (issue #15). Rows of a cell are *uniformly random sequences conditioned on the
p-hop chain being defined and moving*: ``find_t(v, n)`` is non-zero for t <= p (no hop falls off
the start) and ``v_{n-1} != v_n``. The second condition excludes only the degenerate fixed point
of find1: if ``v_{i-1} = v_i`` then ``find1(v, i) = i``, and one can check that the chain can
stall only at its first hop (a later stall at i_{t+1} would need ``v_{i_{t+1}} = c_t``, an
occurrence of c_t after the one find1 chose). A stalled chain answers ``v_n`` for every p (a
quarter of all uniform sequences), so without it depth would not mean hops. Sanford et al.
define find_p on arbitrary sequences and Saunshi et al. build "chain first" so that a true p-hop
answer exists; uniform sequences conditioned on that answer existing is the law both aim at
with no extra structure. It is sampled exactly, so hop gaps, chain span, answer position and answer letter (uniform) are those of
rejection-sampled uniform sequences (tests/test_phop_distribution.py compares them).

Why it can be sampled exactly, for every cell: reading a conditioned uniform sequence from the
right, each hop gap ``g_t = i_{t-1} - i_t`` is ``1 + Geometric`` (failures before a 1/a success:
the letters scanned before the previous occurrence of c_t) independently of the others, and the
letters are uniform given the positions. Equivalently (the count below depends on the positions
only through the span), P(i_1..i_p) ∝ ((a-1)/a)^S with ``S = n - i_p``. So the sampler draws S
from its exact law P(S) ∝ C(S-1, p-1) ((a-1)/a)^S on p..n-2, then the gaps as a uniform
composition of S into p positive parts. No rejection is needed, so a cell where the condition
is rare (deep p on a short sequence: p=64 at n=128 needs mean gap 2 where uniform sequences
have a) is still sampled exactly, but its chains are squeezed; presets keep every cell where
the condition is natural (acceptance >= ~0.97) and say so.

Given the positions (vectorised over a batch; ``i_0 = n``):

1. blocks ``J_t = [i_{t+1}, i_t - 1]`` (t = 0..p-1) partition ``[i_p, n-1]``; choose chain
   letters ``c_0..c_p`` with ``c_{t+1} != c_t``, and ``c_{t+1} = c_{t-1}`` when ``|J_t| = 1``
   (t >= 1; that single position is both J_t's first and last element, see 2);
2. set ``v_n = c_0``; in ``J_t`` the first element ``v_{i_{t+1}} = c_{t+1}``, the last element
   ``v_{i_t - 1} = c_{t-1}`` (t >= 1), every other element uniform over the letters != c_t;
   before ``i_p``: ``v_{i_p - 1} = c_{p-1}``, the rest uniform over all letters.

Claim: ``find_t(v, n) = i_t`` for t = 0..p, so the answer is ``c_p``. Proof by induction on t:
``v_{i_t} = c_t`` (step 2); no element of ``J_t = [i_{t+1}, i_t - 1]`` equals c_t (its first is
c_{t+1} != c_t, its last c_{t-1} != c_t, the rest are drawn != c_t); and ``v_{i_{t+1} - 1} =
c_t`` (the last element of J_{t+1}, or the position before i_p when t = p-1). Hence the last
occurrence of c_t before i_t is at ``i_{t+1} - 1`` and ``find1(v, i_t) = i_{t+1}``. QED.

Conversely every sequence whose p-hop chain visits p+1 distinct non-zero positions satisfies
these constraints, and each free choice above has a count (a-1 or a) that does not depend on
earlier choices, so the fill is uniform given the positions. The support's size is
``sum_{S=p}^{n-2} C(S-1, p-1) A^(n-S-1) (A-1)^(S-p+1)`` (A = alphabet), which ``population``
uses to refuse requests for more unique rows than exist.

Letter statistics of this exact law (measured, alphabet 4): the (p-2)-hop answer is right half
the time at every p (c_{t+1} = c_{t-1} whenever a gap is 1); the 1-hop answer is at chance only
for p >= ~8 (p=3: 0.50, p=9: 0.265, p=16: 0.249); fixed positions are within ~0.02 of chance for
p >= 8; and the most frequent letter is the answer ~0.25 + 0.3/sqrt(n) of the time (0.28 at
n=96..128, 0.27 at n=256: the blocks near the answer avoid the last chain letters, not c_p).
Presets therefore use p >= 8.

Splits come from the shared (depth, width) grid (tasks/grid.py): train/valid/test_id over
(p in ``train_hops``) x (n in ``train_lengths``) minus ``held_out``; test_systematic = the
held-out cells; test_interp = ``interp_hops`` (strictly between training p, never trained) and
test_depth = ``test_hops`` (above max(train_hops)), each at every training length.
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
    train_hops: tuple[int, ...] = field(default=(8, 12), metadata={
        "help": "hop counts p in training, e.g. 1-3 or 16,32"})
    train_lengths: tuple[int, ...] = field(default=(256, 320), metadata={
        "help": "sequence lengths n in training, e.g. 128,256"})
    held_out: tuple[tuple[int, int], ...] = field(default=((12, 256),), metadata={
        "help": "held-out (p x length) cells for test_systematic, e.g. 32x128; each p and length must "
                "occur in another training cell"})
    test_hops: tuple[int, ...] = field(default=(16,), metadata={
        "help": "hop counts of test_depth (all above max(train-hops)), at every training length"})
    interp_hops: tuple[int, ...] = field(default=(), metadata={
        "help": "hop counts of test_interp (strictly between training hops, never trained), at every "
                "training length; empty for none"})
    train_per_cell: int = field(default=2000, metadata={"help": "train rows per training cell"})
    valid_per_cell: int = field(default=200, metadata={"help": "valid rows per training cell"})
    test_per_cell: int = field(default=2000, metadata={
        "help": "rows per cell of test_id, test_systematic and test_depth"})
    seed: int = field(default=0, metadata={"help": "random seed (same seed + config => identical files)"})

    def grid(self) -> Grid:
        return Grid(tuple(self.train_hops), tuple(self.train_lengths), tuple(map(tuple, self.held_out)),
                    tuple(self.test_hops), depth_option="train_hops", width_option="train_lengths",
                    held_out_option="held_out", test_option="test_hops", interp_depths=tuple(self.interp_hops),
                    interp_option="interp_hops")

    def counts(self) -> Counts:
        return Counts(self.train_per_cell, self.valid_per_cell, self.test_per_cell)

    def validate(self) -> None:
        """Reject impossible values before any work (one option named per error)."""
        if not 2 <= self.alphabet <= 26:
            raise ConfigError("alphabet", f"expected 2..26 letters, got {self.alphabet}")
        for name in ("train_hops", "test_hops", "interp_hops"):
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
                              ("interp_hops", grid.interp_cells()), ("test_hops", grid.depth_cells())):
            for p, n in cells:
                if p > n - 2:
                    raise ConfigError(option, f"cell {p}x{n}: a {p}-hop chain needs length >= {p + 2}")
        check_populations(Sampler(self), grid, self.counts())


NATURAL = ("Every cell is natural: the conditioned law is sampled exactly, and uniform sequences "
           "meet the condition with probability >= 0.97 there, so chains have their unconditioned gaps")


def _saunshi(p: int) -> dict:
    """Saunshi et al. 2025's one-p grid: alphabet 4, length 256, train and test at p (one model per p)."""
    return {
        "description": f"Saunshi et al. 2025's p={p} grid exactly: alphabet 4, length 256, train and test at "
                       f"p={p} (one model per p); 100,000 train rows, 1,000 valid and test_id. " + NATURAL,
        "config": {"alphabet": 4, "train_hops": (p,), "train_lengths": (256,), "held_out": (), "test_hops": (),
                   "interp_hops": (), "train_per_cell": 100_000, "valid_per_cell": 1000,
                   "test_per_cell": 1000, "seed": 0},
    }


PRESETS = {
    "saunshi-phop-16": _saunshi(16),
    "saunshi-phop-32": _saunshi(32),
    "phop-grid": {
        "description": "Saunshi-style mixed grid: alphabet 4, p in {16,32} at lengths {256,512} minus "
                       "held-out cell 32x256 (test_systematic), test_interp p=24, test_depth p=48 at both "
                       "lengths; 100,000 train rows per cell (300k), 1,000 per test cell. " + NATURAL,
        "config": {"alphabet": 4, "train_hops": (16, 32), "train_lengths": (256, 512),
                   "held_out": ((32, 256),), "test_hops": (48,), "interp_hops": (24,),
                   "train_per_cell": 100_000, "valid_per_cell": 1000, "test_per_cell": 1000, "seed": 0},
    },
    "phop-small": {
        "description": "CPU-sized: alphabet 4, p in {8,12} at lengths {256,320} minus held-out cell 12x256, "
                       "test_interp p=10, test_depth p=16; 2,000 train rows per cell (6,000), 2,000 per test "
                       "cell. p >= 8 because shallower p lets letter shortcuts beat chance; lengths >= 256 and "
                       "2,000-row test cells because the most frequent letter is naturally right ~0.25+0.3/sqrt(n) "
                       "of the time (0.285 at n=128), which 400-row cells cannot tell from a leak. " + NATURAL,
        "config": {"alphabet": 4, "train_hops": (8, 12), "train_lengths": (256, 320), "held_out": ((12, 256),),
                   "test_hops": (16,), "interp_hops": (10,), "train_per_cell": 2000, "valid_per_cell": 200,
                   "test_per_cell": 2000, "seed": 0},
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


def generate(cfg: InductionConfig, out: str | Path, overwrite: bool = False, progress: bool = True,
             workers: int | None = None) -> Path:
    """Generate a p-hop induction dataset into ``out`` (atomic write; refuses to overwrite unless asked).

    ``workers`` processes (default: the CPUs this job may use; 1 = in-process) sample and encode
    train shards of large datasets; the files are byte-identical for any number of workers.
    """
    from benchgen.dataset import check_target

    cfg.validate()
    check_target(out, overwrite)
    return write_grid_dataset(task=NAME, grid=cfg.grid(), sampler=Sampler(cfg), counts=cfg.counts(),
                              seed=cfg.seed, config=to_dict(cfg), vocab=make_vocab(cfg.alphabet),
                              schema=SCHEMA, out=out, overwrite=overwrite, progress=progress,
                              description=__doc__ or "", workers=workers)


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

    return audit_grid(dataset, ["chain_positions"], check_row, "train_hops", "train_lengths", "test_hops",
                      "interp_hops")
