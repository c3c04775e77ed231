"""Addition audit: every answer recomputed with Python integers from the prompt text, then the
(depth, width) split guarantees from the decoded rows. Plain Python, shares no code with the generator.

This row-by-row walk is the reference route; ``benchgen audit`` runs the same checks vectorised
(``audit_numpy.py``), and a test holds the two equal on clean and corrupted datasets.
"""

from __future__ import annotations

from benchgen.tasks.grid.audit import audit_grid

EXTRA = ["carries"]
KEYS = ("train_operands", "train_widths", "test_operands", "interp_operands")


def check_row(row: dict, tokens: list[str], reverse: bool) -> tuple[list[str], bool]:
    """The problems of one decoded row and whether it is well-formed (its cell and query count)."""
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


def audit_plain(dataset) -> list[str]:
    """Recompute every answer with Python integers from the prompt text and check the splits."""
    reverse, tokens = bool(dataset.config.get("reverse_answer")), dataset.vocab.tokens
    return audit_grid(dataset, EXTRA, lambda row: check_row(row, tokens, reverse), *KEYS)
