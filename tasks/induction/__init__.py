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
the time at every p (c_{t+1} = c_{t-1} whenever a gap is 1, else 1/3 of the time), the (p-4)-hop
answer ~0.34, the (p-3)-hop ~0.13 and the (p-1)-hop never (c_p != c_{p-1}). These find_{p-j}
answers are the *partial-depth lines* of ``baselines.py`` (partial reasoning, recorded in the validity
record and drawn on depth plots, outside the audit rule): a model whose algorithm runs two hops
short scores ~0.5, so depth claims are judged against them, not against chance. The 1-hop answer is at chance only
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

from benchgen.task import Task, deferred
from benchgen.tasks import citations
from benchgen.tasks.induction.audit_numpy import audit as audit_rows
from benchgen.tasks.induction.config import PRESETS, InductionConfig
from benchgen.tasks.induction.generator import SCHEMA, generate, procedural, vocab

TASK = Task(
    name="induction", pretty_name="p-hop induction",
    description="p-hop induction over short alphabets (held-out (p, length) cells + more hops)",
    config=InductionConfig, presets=PRESETS, schema=SCHEMA, vocab=vocab, generate=generate, audit=audit_rows,
    baselines=deferred("benchgen.tasks.induction.baselines:BASELINES"),
    about=__doc__ or "", citations=(citations.SANFORD, citations.LATENT_THOUGHTS), parallel=True,
    procedural=procedural)
