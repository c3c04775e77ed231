"""p-hop audit: find_p re-run on every decoded sequence with a plain Python loop, answers and chains
checked, then the (depth, width) split guarantees. Shares no code with the generator.

This row-by-row walk is the reference route; ``benchgen audit`` runs the same checks vectorised
(``audit_numpy.py``), and a test holds the two equal on clean and corrupted datasets.
"""

from __future__ import annotations

from benchgen.tasks.grid.audit import audit_grid


def find1(v: list[str], i: int) -> int:
    """find1 on a 1-indexed sequence (v[0] unused): the position after the last v_i before i, or 0."""
    for k in range(i - 1, 0, -1):  # the largest j = k + 1 <= i with v_{j-1} = v_i
        if v[k] == v[i]:
            return k + 1
    return 0


EXTRA = ["chain_positions"]
KEYS = ("train_hops", "train_lengths", "test_hops", "interp_hops")


def check_row(row: dict, tokens: list[str]) -> tuple[list[str], bool]:
    """The problems of one decoded row and whether it is well-formed (its cell and query count)."""
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


def audit_plain(dataset) -> list[str]:
    """Re-run find_p on every decoded sequence and check answers, chains and the splits."""
    tokens = dataset.vocab.tokens
    return audit_grid(dataset, EXTRA, lambda row: check_row(row, tokens), *KEYS)
