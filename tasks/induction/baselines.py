"""p-hop induction shortcut baselines (one hop instead of p, fixed positions, letter counts, a
positional linear probe) and the partial-depth lines (the find_{p-j} answer, j = 1..4).

A query's ``input_ids`` are the digits of p, ``|``, then the ``width`` letters; the sequence is
``input_ids[-width:]``. Rows of one width share a layout, so each baseline works on one letter
matrix per width (a loop over the few widths, vectorised over rows).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
import pyarrow as pa

from benchgen.schema import string_array
from benchgen.tasks.baselines import Baseline, Context, list_values, unique_sorted
from benchgen.vocab import SPECIALS

LETTER0 = len(SPECIALS) + 11  # after the ten digits and "|"
FIT_ROWS = 100_000  # at most this many train rows fit the fixed position (the first; train is shuffled)
FIT_CELLS = 10_000_000  # ... and at most this many letters (rows x length)
PROBE_ROWS = 20_000  # at most this many train rows fit the probe (the first; train is shuffled)
PROBE_CELLS = 8_000_000  # ... and at most this many feature-matrix entries (rows x features)
PROBE_STEPS = 150


def sequences(inputs: pa.Array, width: pa.Array) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(row indices, letter matrix (rows, width) with letters 0..A-1) per width among the rows."""
    width = np.asarray(width.to_numpy(), dtype=np.int64)
    values, offsets = list_values(inputs)
    for n in unique_sorted(width).tolist():
        sel = np.flatnonzero(width == n)
        yield sel, values[offsets[sel + 1][:, None] - n + np.arange(n)].astype(np.int16) - LETTER0


def row_sequences(ctx: Context, rows: pa.Table) -> list[tuple[np.ndarray, np.ndarray]]:
    """:func:`sequences` of the rows being predicted, built once for every baseline that reads them
    (the memo holds ``rows`` itself, so its id cannot be reused while the entry lives)."""
    key = ("induction_sequences", id(rows))
    cached = ctx.memo(key, lambda: (rows, list(sequences(rows.column("input_ids"), rows.column("width")))))
    return cached[1]


def _letters(codes: np.ndarray) -> pa.Array:
    """Letter numbers as answer strings (``""`` for -1)."""
    chars = np.where(codes >= 0, codes + ord("a"), 0).astype(np.uint8)[:, None]
    return string_array(chars, (codes >= 0).astype(np.int32))


def _per_width(ctx: Context, rows: pa.Table, fn: Callable[[np.ndarray], np.ndarray]) -> pa.Array:
    """Apply ``fn(letter matrix) -> letter per row`` width by width; answers in row order."""
    out = np.full(rows.num_rows, -1, dtype=np.int64)
    for sel, seq in row_sequences(ctx, rows):
        out[sel] = fn(seq)
    return _letters(out)


def find1_letter(seq: np.ndarray) -> np.ndarray:
    """The letter after the previous occurrence of the last letter (-1 when it never occurred)."""
    n = seq.shape[1]
    same = seq[:, :-1] == seq[:, -1:]
    j = n - 2 - np.argmax(same[:, ::-1], axis=1)  # last earlier position holding the last letter
    return np.where(same.any(axis=1), seq[np.arange(len(seq)), np.minimum(j + 1, n - 1)], -1)


def previous_occurrence(seq: np.ndarray, alphabet: int) -> np.ndarray:
    """``prev[r, k]``: the last position q < k with ``seq[r, q] == seq[r, k]`` (-1 when none)."""
    m, n = seq.shape
    prev = np.full((m, n), -1, dtype=np.int32)
    idx = np.arange(n, dtype=np.int32)
    for a in range(alphabet):  # a loop over the few letters, vectorised over rows and positions
        is_a = seq == a
        last = np.maximum.accumulate(np.where(is_a, idx, -1), axis=1)  # last a at or before k
        prev[:, 1:][is_a[:, 1:]] = last[:, :-1][is_a[:, 1:]]           # ... strictly before k
    return prev


def find_letters(seq: np.ndarray, hops: np.ndarray, alphabet: int) -> np.ndarray:
    """The letter at ``find_h(v, n)`` for each row's ``h = hops[r]`` (find_0 = the last position;
    -1 where h < 0 or the walk falls off the start), by walking find1 from the end."""
    m, n = seq.shape
    prev = previous_occurrence(seq, alphabet)
    rows = np.arange(m)
    pos = np.full(m, n - 1, dtype=np.int64)
    out = np.where(hops == 0, seq[:, n - 1], -1)
    for t in range(1, int(hops.max(initial=0)) + 1):  # a loop over hops, vectorised over rows
        q = prev[rows, np.maximum(pos, 0)]
        pos = np.where((pos >= 0) & (q >= 0), q + 1, -1)  # find1: just after the previous occurrence
        at = hops == t
        out[at] = np.where(pos[at] >= 0, seq[rows[at], np.maximum(pos[at], 0)], -1)
    return out


def partial_depth(j: int) -> Callable[[Context, pa.Table], pa.Array]:
    """The find_{p-j} answer: the letter reached when the walk stops ``j`` hops short of p."""
    def predict(ctx: Context, rows: pa.Table) -> pa.Array:
        A = int(ctx.config["alphabet"])
        depth = np.asarray(rows.column("depth").to_numpy(), dtype=np.int64)
        out = np.full(rows.num_rows, -1, dtype=np.int64)
        for sel, seq in sequences(rows.column("input_ids"), rows.column("width")):
            out[sel] = find_letters(seq, depth[sel] - j, A)
        return _letters(out)
    predict.__doc__ = f"The find_(p-{j}) answer: the letter reached {j} hop(s) short of p."
    return predict


def one_hop(ctx: Context, rows: pa.Table) -> pa.Array:
    """find_1 instead of find_p: the letter after the previous occurrence of the last letter."""
    return _per_width(ctx, rows, find1_letter)


def last_letter(ctx: Context, rows: pa.Table) -> pa.Array:
    """The sequence's last letter."""
    return _per_width(ctx, rows, lambda seq: seq[:, -1])


def most_frequent_letter(ctx: Context, rows: pa.Table) -> pa.Array:
    """The letter occurring most often in the sequence (ties: the earliest in the alphabet)."""
    A = int(ctx.config["alphabet"])

    def mode(seq: np.ndarray) -> np.ndarray:  # letter counts per row by one bincount; argmax: the first on ties
        m = len(seq)
        codes = np.arange(m)[:, None] * A + seq
        codes = codes[(seq >= 0) & (seq < A)]  # a token outside the alphabet counts for no letter
        return np.argmax(np.bincount(codes, minlength=m * A).reshape(m, A), axis=1)
    return _per_width(ctx, rows, mode)


def _train_answers(ctx: Context, n: int) -> np.ndarray:
    """Answer letters of the first ``n`` train rows."""
    values, _ = list_values(ctx.train_head("target_ids", n))
    return values.astype(np.int64) - LETTER0


def _fixed_position(ctx: Context) -> int:
    """The position (k >= 0: from the start; k < 0: from the end) whose letter most often is the
    train answer, over the first train rows (FIT_ROWS, fewer for long sequences: FIT_CELLS; rows too
    short for k count as misses)."""
    def fit() -> int:
        longest = int(np.max(ctx.train_head("width", 1000).to_numpy()))
        n_fit = max(1, min(FIT_ROWS, FIT_CELLS // longest))
        ans = _train_answers(ctx, n_fit)
        width = ctx.train_head("width", n_fit)
        longest = int(np.max(width.to_numpy()))
        hits = np.zeros(2 * longest, dtype=np.int64)  # [0, longest): from start; [longest, 2L): -1, -2, ...
        for sel, seq in sequences(ctx.train_head("input_ids", n_fit), width):
            match = seq == ans[sel, None]
            n = seq.shape[1]
            hits[:n] += match.sum(axis=0)
            hits[longest:longest + n] += match[:, ::-1].sum(axis=0)
        best = int(np.argmax(hits))
        return best if best < longest else -(best - longest + 1)
    return ctx.memo("induction_fixed_position", fit)


def fixed_position(ctx: Context, rows: pa.Table) -> pa.Array:
    """The letter at the one position (from the start or the end) that best matches train answers."""
    k = _fixed_position(ctx)

    def pick(seq: np.ndarray) -> np.ndarray:
        n = seq.shape[1]
        if not -n <= k < n:
            return np.full(len(seq), -1)
        return seq[:, k]
    return _per_width(ctx, rows, pick)


def _features(seq: np.ndarray, longest: int, A: int) -> np.ndarray:
    """One-hot (position from the start, letter) and (position from the end, letter), float32."""
    m, n = seq.shape
    X = np.zeros((m, 2 * longest * A), dtype=np.float32)
    rows = np.arange(m)[:, None]
    pos = np.arange(n)[None, :]
    X[rows, pos * A + seq] = 1.0
    X[rows, (longest + n - 1 - pos) * A + seq] = 1.0
    return X


def _probe(ctx: Context) -> tuple[np.ndarray, np.ndarray, int]:
    """Multinomial logistic regression on positional one-hot features, fitted on train (full-batch
    Adam, light L2) on its first rows (PROBE_ROWS, fewer for long sequences: PROBE_CELLS)."""
    def fit():
        A = int(ctx.config["alphabet"])
        longest = int(np.max(ctx.train_head("width", PROBE_ROWS).to_numpy()))
        rows = max(1, min(PROBE_ROWS, PROBE_CELLS // (2 * longest * A)))
        width, inputs = ctx.train_head("width", rows), ctx.train_head("input_ids", rows)
        ans = _train_answers(ctx, rows)
        X = np.zeros((len(width), 2 * longest * A), dtype=np.float32)
        for sel, seq in sequences(inputs, width):
            X[sel] = _features(seq, longest, A)
        Y = np.eye(A, dtype=np.float32)[ans]
        W = np.zeros((X.shape[1], A), dtype=np.float32)
        b = np.zeros(A, dtype=np.float32)
        mW, vW, mb, vb = np.zeros_like(W), np.zeros_like(W), np.zeros_like(b), np.zeros_like(b)
        lr, l2, b1, b2 = 0.05, 1e-4, 0.9, 0.999
        for t in range(1, PROBE_STEPS + 1):
            z = X @ W + b
            z -= z.max(axis=1, keepdims=True)
            p = np.exp(z)
            p /= p.sum(axis=1, keepdims=True)
            g = (p - Y) / len(X)
            gW, gb = X.T @ g + l2 * W, g.sum(axis=0)
            for prm, grad, m1, m2 in ((W, gW, mW, vW), (b, gb, mb, vb)):
                m1 *= b1
                m1 += (1 - b1) * grad
                m2 *= b2
                m2 += (1 - b2) * grad * grad
                prm -= lr * (m1 / (1 - b1 ** t)) / (np.sqrt(m2 / (1 - b2 ** t)) + 1e-8)
        return W, b, longest
    return ctx.memo("induction_probe", fit)


def positional_probe(ctx: Context, rows: pa.Table) -> pa.Array:
    """Logistic regression on one-hot (position, letter) features fitted on train."""
    W, b, longest = _probe(ctx)
    A = int(ctx.config["alphabet"])

    def predict(seq: np.ndarray) -> np.ndarray:
        if seq.shape[1] > longest:  # positions never seen in train: keep the last `longest`
            seq = seq[:, -longest:]
        return np.argmax(_features(seq, longest, A) @ W + b, axis=1)
    return _per_width(ctx, rows, predict)


BASELINES = [
    Baseline("one_hop", one_hop, "find_1 instead of find_p: the letter after the last letter's previous occurrence",
             exact_at=(1,)),
    Baseline("fixed_position", fixed_position, "letter at the single position that best matches train answers"),
    Baseline("last_letter", last_letter, "the sequence's last letter"),
    Baseline("most_frequent_letter", most_frequent_letter, "the sequence's most frequent letter"),
    Baseline("positional_probe", positional_probe,
             "logistic regression on one-hot (position, letter), fitted on up to 20,000 train rows",
             cheap=False),
    # partial-depth lines (partial reasoning, not shortcuts; never fail the audit): measured on every
    # split of phop-small, find_{p-2} is the answer in ~0.5 of rows at every p (c_p = c_{p-2} whenever the
    # last gap is 1, else 1/3 of the time), find_{p-4} in ~0.34, find_{p-3} in ~0.13, find_{p-1} never
    *(Baseline(f"partial_p-{j}", partial_depth(j),
               f"partial reasoning, not a shortcut: the find_(p-{j}) answer, the letter reached {j} hop(s) "
               "short of p", hops_short=j) for j in range(1, 5)),
]
