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
#   margin: float64         target logit minus best other logit (optional)
#   entropy: float64        entropy of the answer distribution at this iteration (optional)
#   kl_prev: float64        KL(p_t || p_{t-1}) vs the previous iteration (optional)
PREDICTION_COLUMNS = ("id", "prediction", "loops", "margin", "entropy", "kl_prev")


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
