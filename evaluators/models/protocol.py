"""The model protocol every adapter implements (reference models, hf:, torchscript:, python:).

An adapter turns a batch of dataset examples into rows of the predictions contract, so a model
run and a predictions file are scored by the same code.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import pyarrow as pa

# Columns of a predictions table (file or adapter output). Only id and prediction are required.
#   id: string              example id from the dataset
#   prediction: string      answer text (or list<int32> token ids)
#   loops: int32            test-time iteration count (null / absent for models without loops)
#   margin, entropy, kl_prev, kl_from_prev, minp_kl, confidence, latent_diff: float64, optional
#                           per-loop statistics over the whole answer (evaluators/models/loop_stats.py
#                           defines each; margin = min over answer tokens of target minus best other logit)
#   lens_top1: string       the model's top-1 next token at the answer position read out after this
#                           loop count (logit lens), as text (optional; per-loop probes of khop)
#   lens_positions: list<int32>  the top-1 token id read out at every input position after this loop
#                           count (optional; the per-position "wavefront" probe of khop)
LOOP_STAT_COLUMNS = ("margin", "entropy", "kl_prev", "kl_from_prev", "minp_kl", "confidence", "latent_diff")
PREDICTION_COLUMNS = ("id", "prediction", "loops", *LOOP_STAT_COLUMNS, "lens_top1", "lens_positions")


@runtime_checkable
class ModelAdapter(Protocol):
    """A model that can answer benchgen examples, optionally at several loop counts."""

    name: str
    supports_loops: bool

    def predict(self, examples: pa.Table, loops: Sequence[int] | None) -> pa.Table:
        """Predict a batch. ``examples`` has the model-visible columns only: id, prompt, input_ids.

        Returns a predictions table with one row per (example, loop count) — a single row per
        example with null ``loops`` when ``loops`` is None or the model has no loops.
        """
        ...
