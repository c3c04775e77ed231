"""The p-hop audit over whole record batches: the plain walk of ``audit.py``, vectorised.

Same checks, messages and order as :func:`benchgen.tasks.induction.audit.audit_plain` (a test holds
them equal). Still independent of the generator: the input text is rebuilt by joining the
vocabulary's strings and parsed as ``p|letters`` from its bytes, and find_p is re-run for every row
of a batch at once by one backward sweep over the positions (each row's chain only ever moves left:
at position k a row whose current letter matches takes the hop, then checks k again for its next
letter). Rows whose text is not ASCII, or whose p has more than 18 digits, go to the plain check.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from benchgen.tasks.audit_tally import Tally, joined, plain_rows
from benchgen.tasks.grid.audit_numpy import audit_grid_numpy
from benchgen.tasks.induction.audit import EXTRA, KEYS, check_row


def text_bytes(text: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """Byte offsets (from 0) and bytes of a string array."""
    off = np.frombuffer(text.buffers()[1], np.int32)[text.offset:text.offset + len(text) + 1].astype(np.int64)
    data = np.frombuffer(text.buffers()[2], np.uint8) if text.buffers()[2] is not None else np.zeros(0, np.uint8)
    return off - off[0], data[off[0]:off[-1]]


def parse(text: pa.Array, n_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray,
                                                     np.ndarray]:
    """Per ASCII row: well-formed ``p|letters``, p short enough to parse here, p, first letter's byte
    offset, letter count; and the text's bytes (``str.partition`` at the first '|', ASCII classes)."""
    off, data = text_bytes(text)
    length = np.diff(off)
    bar = pc.find_substring(text, "|").to_numpy(zero_copy_only=False).astype(np.int64)
    n_letters = length - bar - 1
    form = pc.match_substring_regex(text, r"^[0-9]+\|[A-Za-z]+$").to_numpy(zero_copy_only=False)
    ok = form & (bar >= 0) & (n_letters == n_ids - bar - 1)
    small = ok & (bar <= 18)
    p = np.zeros(len(length), np.int64)
    if small.any():
        digits = pc.extract_regex(text.filter(pa.array(small)), r"^(?P<p>[0-9]{1,18})\|").field("p")
        p[small] = pc.cast(digits, pa.int64()).to_numpy()
    return ok, small, p, off[:-1] + bar + 1, n_letters, data


def chains(v: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """find_p from the last position for each row of ``v`` (positions x rows, letters); returns the
    final position (0: undefined), the visited positions (rows x (max p + 1), -1 padded) and their count."""
    n, m = v.shape
    pos = np.full(m, n, np.int64)
    target = v[n - 1].copy()
    left = p.copy()
    visited = np.full((m, int(p.max(initial=0)) + 2), -1, np.int64)
    visited[:, 0] = n
    count = np.ones(m, np.int64)
    for k in range(n - 1, 0, -1):  # candidate position k (1-indexed) is row k - 1 of v
        act = left > 0
        if not act.any():
            break
        while True:
            hit = np.flatnonzero(act & (v[k - 1] == target))
            if not len(hit):
                break
            pos[hit] = k + 1
            visited[hit, count[hit]] = k + 1
            count[hit] += 1
            left[hit] -= 1
            target[hit] = v[k, hit]  # the letter at position k + 1
            act = left > 0
    stuck = np.flatnonzero(left > 0)  # no earlier occurrence: find_1 gives 0 and the chain stops
    pos[stuck] = 0
    visited[stuck, count[stuck]] = 0
    count[stuck] += 1
    return pos, visited, count


def chain_problems(b: pa.RecordBatch, rows: np.ndarray, start: np.ndarray, n: int, p: np.ndarray,
                   data: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For ``rows`` with ``n`` letters: chain undefined, answer wrong, chain_positions wrong."""
    v = data[start[rows][None, :] + np.arange(n)[:, None]]  # (positions, rows)
    pos, visited, count = chains(v, p[rows])
    undefined = pos == 0
    letter = v[np.maximum(pos, 1) - 1, np.arange(len(rows))]
    got = pc.fill_null(pc.equal(b.column("answer").take(pa.array(rows)),
                                pa.StringArray.from_buffers(len(rows), pa.py_buffer(np.arange(len(rows) + 1,
                                                            dtype=np.int32)), pa.py_buffer(letter.copy()))), False)
    chain = b.column("chain_positions").take(pa.array(rows))
    co = chain.offsets.to_numpy().astype(np.int64)
    cv = chain.values.to_numpy()[co[0]:co[-1]].astype(np.int64)
    clen = np.diff(co)
    same = clen == count
    fit = np.where(same, clen, 0)
    padded = np.full(visited.shape, -1, np.int64)
    inside = np.arange(visited.shape[1])[None, :] < fit[:, None]
    padded[inside] = cv[np.repeat(same, clen)]
    same &= ((padded == visited) | ~inside).all(axis=1)
    return undefined, ~got.to_numpy(zero_copy_only=False), ~same


def check(b: pa.RecordBatch, vocab, cfg: dict, tally: Tally, base: int) -> np.ndarray:
    """Every per-row check of the plain ``check_row`` on one batch; returns the well-formed rows."""
    n = b.num_rows
    strings = pa.array(vocab.tokens, pa.string())
    text = joined(b.column("input_ids"), strings, "")
    ascii_ = pc.fill_null(pc.string_is_ascii(text), False).to_numpy(zero_copy_only=False)
    n_ids = np.diff(b.column("input_ids").offsets.to_numpy().astype(np.int64))
    ok, small, p, start, n_letters, data = parse(text, n_ids)
    form = ascii_ & ok
    tally.add("input is not 'p|letters'", ascii_ & ~ok, 0, base)
    full = form & small
    depth = b.column("depth").to_numpy(zero_copy_only=False).astype(np.int64)
    width = b.column("width").to_numpy(zero_copy_only=False).astype(np.int64)
    tally.add("depth != p written in the input", full & (p != depth), 1, base)
    tally.add("width != sequence length", full & (n_letters != width), 2, base)
    same = pc.fill_null(pc.equal(b.column("prompt"), text), False).to_numpy(zero_copy_only=False)
    tally.add("prompt != rendered input_ids", full & ~same, 3, base)
    undefined, wrong, chain = np.zeros(n, bool), np.zeros(n, bool), np.zeros(n, bool)
    for w in np.unique(n_letters[full]).tolist():
        rows = np.flatnonzero(full & (n_letters == w))
        undefined[rows], wrong[rows], chain[rows] = chain_problems(b, rows, start, w, p, data)
    tally.add("the p-hop chain reaches position 0 (no answer)", full & undefined, 4, base)
    tally.add("answer != v[find_p(v, n)]", full & ~undefined & wrong, 5, base)
    tally.add("chain_positions != positions visited by find_1..find_p", full & ~undefined & chain, 6, base)
    target = pc.fill_null(pc.equal(joined(b.column("target_ids"), strings, ""), b.column("answer")), False)
    tally.add("target_ids do not spell the answer", full & ~target.to_numpy(zero_copy_only=False), 7, base)
    other = np.flatnonzero(~ascii_ | (ok & ~small))
    good = form.copy()
    good[other] = plain_rows(b, other, lambda row: check_row(row, vocab.tokens), tally, base)
    return good


def audit(dataset, workers: int | None = 1) -> list[str]:
    """find_p re-run on every row, then the split guarantees (as ``audit_plain``)."""
    return audit_grid_numpy(dataset, EXTRA, check, *KEYS, workers=workers)
