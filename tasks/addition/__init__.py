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

from benchgen.task import Task, deferred
from benchgen.tasks import citations
from benchgen.tasks.addition.audit_numpy import audit as audit_rows
from benchgen.tasks.addition.config import PRESETS, AdditionConfig
from benchgen.tasks.addition.generator import SCHEMA, generate, make_vocab, procedural

TASK = Task(
    name="addition", pretty_name="multi-operand addition",
    description="multi-operand addition of zero-padded numbers (held-out (n, width) cells + more operands)",
    config=AdditionConfig, presets=PRESETS, schema=SCHEMA, vocab=make_vocab, generate=generate, audit=audit_rows,
    baselines=deferred("benchgen.tasks.addition.baselines:BASELINES"),
    about=__doc__ or "", citations=(citations.LATENT_THOUGHTS,), parallel=True,
    procedural=procedural)
