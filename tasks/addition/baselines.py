"""Addition shortcut baselines: sums without carries, partial sums, and answer priors per cell.

A query's ``input_ids`` are ``n`` operands of ``width`` digits, each followed by ``+`` (the last by
``=``); ``depth`` = n. Rows of one (n, width) cell share a layout, so each baseline works on one
digit matrix per cell (a loop over the few cells, vectorised over rows).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pyarrow as pa

from benchgen.schema import string_array
from benchgen.tasks.baselines import (
    Baseline,
    Context,
    depths,
    list_values,
    lookup,
    majority_code,
    mode_by_key,
    take_strings,
    train_answers,
)
from benchgen.vocab import SPECIALS

DIGIT0 = len(SPECIALS)


def cells(rows: pa.Table) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(row indices, digit tensor (rows, n, width)) for every (n, width) cell among ``rows``."""
    n_ops = depths(rows)
    width = np.asarray(rows.column("width").to_numpy(), dtype=np.int64)
    values, offsets = list_values(rows.column("input_ids"))
    for n, w in sorted(set(zip(n_ops.tolist(), width.tolist()))):
        sel = np.flatnonzero((n_ops == n) & (width == w))
        tok = values[offsets[sel][:, None] + np.arange(n * (w + 1))].reshape(len(sel), n, w + 1)
        yield sel, tok[:, :, :w].astype(np.int64) - DIGIT0


def render(total: np.ndarray, reverse: bool) -> pa.Array:
    """Digit matrices (most significant first) as answers: no leading zeros, optionally reversed."""
    m, width = total.shape
    nonzero = total != 0
    lead = np.where(nonzero.any(axis=1), nonzero.argmax(axis=1), width - 1)
    length = width - lead
    if reverse:
        aligned = total[:, ::-1]
    else:
        aligned = np.take_along_axis(total, np.minimum(lead[:, None] + np.arange(width), width - 1), axis=1)
    return string_array((aligned + ord("0")).astype(np.uint8), length.astype(np.int32))


def add_digits(digits: np.ndarray) -> np.ndarray:
    """Exact column sums with carries of a (rows, n, width) digit tensor, as a digit matrix."""
    m, n, w = digits.shape
    extra = len(str(9 * n))
    cols = digits.sum(axis=1)
    total = np.zeros((m, extra + w), dtype=np.int64)
    carry = np.zeros(m, dtype=np.int64)
    for j in range(w - 1, -1, -1):
        s = cols[:, j] + carry
        total[:, extra + j], carry = s % 10, s // 10
    for j in range(extra - 1, -1, -1):
        total[:, j], carry = carry % 10, carry // 10
    return total


def _per_cell(ctx: Context, rows: pa.Table, digits_to_total) -> pa.Array:
    """Apply ``digits_to_total`` cell by cell and scatter the rendered answers back in row order."""
    reverse = bool(ctx.config.get("reverse_answer"))
    parts, order = [], []
    for sel, digits in cells(rows):
        parts.append(render(digits_to_total(digits), reverse))
        order.append(sel)
    if not parts:
        return pa.array([], pa.string())
    flat = pa.concat_arrays(parts)
    inverse = np.empty(rows.num_rows, dtype=np.int64)
    inverse[np.concatenate(order)] = np.arange(rows.num_rows)
    return flat.take(pa.array(inverse))


def carry_free_sum(ctx: Context, rows: pa.Table) -> pa.Array:
    """Each digit column summed mod 10, no carries (a width-digit answer)."""
    return _per_cell(ctx, rows, lambda d: d.sum(axis=1) % 10)


def first_two_sum(ctx: Context, rows: pa.Table) -> pa.Array:
    """The exact sum of the first two operands only."""
    return _per_cell(ctx, rows, lambda d: add_digits(d[:, :2]))


def majority_per_cell(ctx: Context, rows: pa.Table) -> pa.Array:
    """The most frequent train answer of the row's (depth, width) cell (else of its depth, else overall)."""
    values, codes = train_answers(ctx)

    def fit():
        d, w = depths(ctx.train("depth")), np.asarray(ctx.train("width").to_numpy(), dtype=np.int64)
        return mode_by_key(d * 4096 + w, codes), mode_by_key(d, codes)

    (ck, cm), (dk, dm) = ctx.memo("addition_cell_modes", fit)
    d, w = depths(rows), np.asarray(rows.column("width").to_numpy(), dtype=np.int64)
    return take_strings(values, lookup(d * 4096 + w, ck, cm, lookup(d, dk, dm, majority_code(ctx))))


BASELINES = [
    Baseline("carry_free_sum", carry_free_sum, "digit columns summed mod 10, no carries"),
    Baseline("majority_per_depth_width", majority_per_cell, "most frequent train answer of the (n, width) cell"),
    Baseline("first_two_sum", first_two_sum, "sum of the first two operands", exact_at=(2,)),
]
