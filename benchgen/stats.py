"""Small statistics shared by the evaluator and the dataset validity check (no heavy imports)."""

from __future__ import annotations

import numpy as np

Z95 = 1.959963984540054


def wilson(correct: np.ndarray, n: np.ndarray, z: float = Z95) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval for binomial proportions (vectorised; n = 0 gives NaN)."""
    correct = np.asarray(correct, dtype=np.float64)
    n = np.asarray(n, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = correct / n
        denom = 1 + z * z / n
        center = (p + z * z / (2 * n)) / denom
        half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    # the bounds bracket p exactly (rounding can leave 1e-17 on the wrong side at p = 0 or 1)
    return np.clip(center - half, 0.0, np.nan_to_num(p, nan=1.0)), np.clip(center + half, np.nan_to_num(p, nan=0.0), 1.0)
