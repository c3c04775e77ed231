"""The addition audit over whole record batches: the plain walk of ``audit.py``, vectorised.

Same checks, messages and order as :func:`benchgen.tasks.addition.audit.audit_plain` (a test holds
them equal). Still independent of the generator: operands are parsed from the prompt text
(pyarrow string kernels), their sum is recomputed digit column by digit column with carries (exact
for any width; the carry count falls out of the same pass) and written out as text, and the token
ids are checked by joining the vocabulary's strings. Rows whose prompt is not ASCII go to the plain
check (Python's ``isdigit``/``int`` accept other scripts' digits).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from benchgen.tasks.addition.audit import EXTRA, KEYS, check_row
from benchgen.tasks.audit_tally import Tally, joined, plain_rows
from benchgen.tasks.grid.audit_numpy import audit_grid_numpy

CARRY_DIGITS = 20  # the final carry of n operands is below n; 20 digits hold any int64


def digit_sums(ops: pa.Array, rows: np.ndarray, n_ops: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray]:
    """For rows whose ``n_ops`` operands (flattened in ``ops``, ASCII, all ``width`` digits) are
    contiguous: the sum's digits (most significant first, CARRY_DIGITS + width columns) and the
    number of columns that carry, by column addition from the right."""
    buf = np.frombuffer(ops.buffers()[2], np.uint8)
    start = np.frombuffer(ops.buffers()[1], np.int32)[ops.offset:ops.offset + len(ops)].astype(np.int64)
    digits = buf[start[:, None] + np.arange(width)].astype(np.int64) - 48  # (operands, width)
    col = np.add.reduceat(digits, np.concatenate([[0], np.cumsum(n_ops)[:-1]]), axis=0) if len(digits) else \
        np.zeros((0, width), np.int64)
    out = np.zeros((len(rows), CARRY_DIGITS + width), np.int64)
    carry, count = np.zeros(len(rows), np.int64), np.zeros(len(rows), np.int64)
    for j in reversed(range(width)):
        s = col[:, j] + carry
        out[:, CARRY_DIGITS + j], carry = s % 10, s // 10
        count += carry > 0
    for j in reversed(range(CARRY_DIGITS)):
        out[:, j], carry = carry % 10, carry // 10
    return out, count


def sum_text(digits: np.ndarray, reverse: bool) -> pa.Array:
    """Digit rows as the text of the number (no leading zeros; "0" for zero), reversed if asked."""
    n, m = digits.shape
    nonzero = digits != 0
    first = np.where(nonzero.any(axis=1), nonzero.argmax(axis=1), m - 1)
    keep = np.arange(m)[None, :] >= first[:, None]
    chars = (digits + 48).astype(np.uint8)
    if reverse:
        chars, keep = chars[:, ::-1], keep[:, ::-1]
    lengths = keep.sum(axis=1)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
    return pa.StringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(np.ascontiguousarray(chars[keep])))


def check(b: pa.RecordBatch, vocab, cfg: dict, tally: Tally, base: int) -> np.ndarray:
    """Every per-row check of the plain ``check_row`` on one batch; returns the well-formed rows."""
    n = b.num_rows
    prompt = b.column("prompt")
    ascii_ = pc.fill_null(pc.string_is_ascii(prompt), False).to_numpy(zero_copy_only=False)
    form = pc.fill_null(pc.ends_with(prompt, " ="), False).to_numpy(zero_copy_only=False) & ascii_
    body = pc.utf8_slice_codeunits(prompt, 0, -2)
    ops = pc.split_pattern(body, " + ")
    n_ops = np.diff(ops.offsets.to_numpy()).astype(np.int64)
    flat = ops.flatten()
    row_of = np.repeat(np.arange(n), n_ops)
    bad_op = ~pc.utf8_is_digit(flat).to_numpy(zero_copy_only=False)
    form[np.unique(row_of[bad_op])] = False
    tally.add("prompt is not 'a + b + ... ='", ascii_ & ~form, 0, base)
    depth = b.column("depth").to_numpy(zero_copy_only=False).astype(np.int64)
    width = b.column("width").to_numpy(zero_copy_only=False).astype(np.int64)
    tally.add("depth != number of operands", form & (n_ops != depth), 1, base)
    wrong_len = np.zeros(n, bool)
    wrong_len[row_of[pc.binary_length(flat).to_numpy(zero_copy_only=False) != width[row_of]]] = True
    tally.add("an operand's digit count != width", form & wrong_len, 2, base)
    full = form & ~wrong_len
    strings = pa.array(vocab.tokens, pa.string())
    spelled = pc.equal(joined(b.column("input_ids"), strings, ""), pc.replace_substring(prompt, " ", ""))
    tally.add("input_ids do not spell the prompt", full & ~pc.fill_null(spelled, False).to_numpy(zero_copy_only=False),
              3, base)
    answer_ok, carries = np.zeros(n, bool), np.zeros(n, np.int64)
    for w in np.unique(width[full]).tolist():
        rows = np.flatnonzero(full & (width == w))
        sel = np.isin(row_of, rows)
        digits, carries[rows] = digit_sums(flat.filter(pa.array(sel)), rows, n_ops[rows], w)
        expected = sum_text(digits, bool(cfg.get("reverse_answer")))
        answer_ok[rows] = pc.fill_null(pc.equal(b.column("answer").take(pa.array(rows)), expected),
                                       False).to_numpy(zero_copy_only=False)
    tally.add("answer != Python integer sum of the operands", full & ~answer_ok, 4, base)
    target = pc.fill_null(pc.equal(joined(b.column("target_ids"), strings, ""), b.column("answer")), False)
    tally.add("target_ids do not spell the answer", full & ~target.to_numpy(zero_copy_only=False), 5, base)
    stored = b.column("carries").to_numpy(zero_copy_only=False).astype(np.int64)
    tally.add("carries != carry positions of column addition", full & (stored != carries), 6, base)
    good = form.copy()
    other = np.flatnonzero(~ascii_)
    tokens, reverse = vocab.tokens, bool(cfg.get("reverse_answer"))
    good[other] = plain_rows(b, other, lambda row: check_row(row, tokens, reverse), tally, base)
    return good


def audit(dataset, workers: int | None = 1) -> list[str]:
    """Every answer recomputed from the prompt text, then the split guarantees (as ``audit_plain``)."""
    return audit_grid_numpy(dataset, EXTRA, check, *KEYS, workers=workers)
