"""k-hop knowledge-graph composition (Grokked Transformers; Loop, Think & Generalize).

A knowledge graph of entities ``<e_i>`` and relations ``<r_j>``; a k-hop query
``<e_h><r_1>...<r_k>`` asks for the entity reached by following the chain. Splits:

- train: every atomic triple (ID and OOD) as a 1-hop query + ID-only compositions of ``train_hops``;
- valid / test_id: held-out ID compositions of ``train_hops`` (disjoint from train and each other);
- test_systematic: compositions of ``train_hops`` built only from OOD triples (each OOD triple is
  seen in training as an atomic fact, never inside a composition); mixed chains are dropped;
- test_interp: ID compositions of ``interp_hops`` (strictly between the smallest and largest
  training hop, never trained; empty unless asked);
- test_depth: ID compositions of ``test_hops`` (all deeper than any training hop).

Chains are drawn *uniformly* over all chains of a given length in the ID (or OOD) subgraph,
without replacement: exact path counts by dynamic programming weight each step, so sampling
is one vectorised gather per hop; small populations are enumerated instead.
"""

from __future__ import annotations

from benchgen.task import Task, deferred
from benchgen.tasks import citations
from benchgen.tasks.khop.config import PRESETS, KhopConfig
from benchgen.tasks.khop.generator import SCHEMA, generate, make_vocab
from benchgen.tasks.khop.procedural import KhopProcedural

TASK = Task(
    name="khop", pretty_name="k-hop knowledge composition",
    description="k-hop composition over a random or permutation knowledge graph (systematic + depth splits)",
    config=KhopConfig, presets=PRESETS, schema=SCHEMA, vocab=make_vocab, generate=generate,
    audit=deferred("benchgen.tasks.khop.audit_numpy:audit_khop"),  # networkx: loaded only by an audit
    baselines=deferred("benchgen.tasks.khop.baselines:BASELINES"),
    about=__doc__ or "", citations=(citations.GROKKED, citations.LOOP_THINK_GENERALIZE),
    parallel=True, audit_sample=True,
    procedural=KhopProcedural)
