"""Per-loop statistics over the whole answer, shared by every adapter that reports them.

For each swept loop count T (ascending) an adapter hands :class:`LoopStats` the log-probabilities
at the answer positions under teacher forcing on the reference answer (``(B, A, V)``: position
``a`` predicts answer token ``a`` given the prompt and the reference tokens before it), and
optionally the loop state at those positions (``(B, A, D)``). The statistics, one value per
(example, T), are the predictions contract's optional columns (``STATS_DEFINITION`` is recorded
in the predictions file and in results.json):

- ``margin``: min over answer tokens of (target logit - best other logit);
- ``entropy``: mean over answer positions of the entropy of p_T (nats);
- ``kl_prev``: mean over answer positions of KL(p_T || p_T'), T' the previous swept T (null at the first);
- ``kl_from_prev``: mean of KL(p_T' || p_T) (Huginn's ``kl``), p_T' uniform at the first swept T;
- ``minp_kl``: the same after setting probabilities below 0.1 x max to 1/V and renormalising (Huginn);
- ``confidence``: min over answer positions of the largest probability;
- ``latent_diff``: mean over answer positions of ||s_T' - s_T|| / ||s_T|| (null at the first T).

Rows whose reference answer is unknown (no target tokens) get nulls.
"""

from __future__ import annotations

import json

import numpy as np

from benchgen.evaluators.models.protocol import LOOP_STAT_COLUMNS as STAT_COLUMNS

STATS_KEY = b"benchgen.loop_stats"
STATS_DEFINITION = {
    "scope": "whole answer, teacher-forced on the reference answer; previous = previous swept loop count",
    "margin": "min over answer tokens of (target logit - best other logit)",
    "entropy": "mean over answer positions of H(p_T) in nats",
    "kl_prev": "mean over answer positions of KL(p_T || p_prev) (null at the first swept T)",
    "kl_from_prev": "mean over answer positions of KL(p_prev || p_T); p_prev uniform at the first swept T",
    "minp_kl": "kl_from_prev after flooring probabilities below 0.1*max to 1/V and renormalising",
    "confidence": "min over answer positions of max_v p_T(v)",
    "latent_diff": "mean over answer positions of ||s_prev - s_T|| / ||s_T|| (null at the first swept T)",
}
MINP_RATIO = 0.1


def definition_json() -> str:
    """The statistics' definitions as one JSON line (predictions-file metadata, results.json)."""
    return json.dumps(STATS_DEFINITION, sort_keys=True)


def _minp(logp: np.ndarray) -> np.ndarray:
    """Huginn's min-p floor: probabilities below 0.1 x max become 1/V, then renormalise (log space)."""
    p = np.exp(logp)
    floor = p < MINP_RATIO * p.max(axis=-1, keepdims=True)
    p = np.where(floor, 1.0 / p.shape[-1], p)
    return np.log(p / p.sum(axis=-1, keepdims=True))


def _kl(logp: np.ndarray, logq: np.ndarray) -> np.ndarray:
    """KL(p || q) over the last axis (0 * log 0 = 0)."""
    p = np.exp(logp)
    return np.where(p > 0, p * (logp - logq), 0.0).sum(axis=-1)


class LoopStats:
    """Accumulates the per-loop statistics of one batch, one loop count at a time (ascending T)."""

    def __init__(self, target: np.ndarray):
        """``target`` (B, A): reference answer token ids, -1 past a row's answer (or when unknown)."""
        self.target = np.asarray(target, dtype=np.int64).reshape(len(target), -1)
        self.valid = self.target >= 0
        self.n_valid = self.valid.sum(axis=1)
        self.rows: dict[str, list[np.ndarray]] = {c: [] for c in STAT_COLUMNS}
        self.prev: tuple[np.ndarray, np.ndarray, np.ndarray | None] | None = None

    def _mean(self, x: np.ndarray) -> np.ndarray:
        """Mean over each row's answer positions (NaN for a row without any)."""
        with np.errstate(invalid="ignore", divide="ignore"):
            out = np.where(self.valid, x, 0.0).sum(axis=1) / self.n_valid
        return np.where(self.n_valid > 0, out, np.nan)

    def _min(self, x: np.ndarray) -> np.ndarray:
        """Min over each row's answer positions (NaN for a row without any)."""
        out = np.where(self.valid, x, np.inf).min(axis=1) if x.shape[1] else np.full(len(x), np.inf)
        return np.where(np.isfinite(out), out, np.nan)

    def add(self, logp: np.ndarray, state: np.ndarray | None = None) -> None:
        """Add loop count T: ``logp`` (B, A', V) log-softmax at answer positions (A' >= A), ``state`` (B, A', D)."""
        A = self.target.shape[1]
        logp = np.asarray(logp, dtype=np.float64)[:, :A]
        V = logp.shape[-1]
        known = self.valid & (self.target < V)
        safe = np.where(known, self.target, 0)
        tgt = np.take_along_axis(logp, safe[..., None], axis=-1)[..., 0]
        other = logp.copy()
        np.put_along_axis(other, safe[..., None], -np.inf, axis=-1)
        margin = np.where(known, tgt - other.max(axis=-1), np.nan)
        p = np.exp(logp)
        minp = _minp(logp)
        if self.prev is None:
            uniform = np.full_like(logp, -np.log(V))
            prev_logp, prev_minp, prev_state = None, uniform, None
            kl_from, minp_kl = _kl(uniform, logp), _kl(uniform, minp)
        else:
            prev_logp, prev_minp, prev_state = self.prev
            kl_from, minp_kl = _kl(prev_logp, logp), _kl(prev_minp, minp)
        stats = {
            "margin": self._min(np.where(known, margin, np.inf)),
            "entropy": self._mean(-np.where(p > 0, p * logp, 0.0).sum(axis=-1)),
            "kl_prev": self._mean(_kl(logp, prev_logp)) if prev_logp is not None else np.full(len(logp), np.nan),
            "kl_from_prev": self._mean(kl_from),
            "minp_kl": self._mean(minp_kl),
            "confidence": self._min(p.max(axis=-1)),
            "latent_diff": np.full(len(logp), np.nan),
        }
        if state is not None:
            state = np.asarray(state, dtype=np.float64)[:, :A]
            if prev_state is not None:
                with np.errstate(invalid="ignore", divide="ignore"):
                    rel = np.linalg.norm(prev_state - state, axis=-1) / np.linalg.norm(state, axis=-1)
                stats["latent_diff"] = self._mean(rel)
        for k, v in stats.items():
            self.rows[k].append(v)
        self.prev = (logp, minp, state)

    def result(self, swept: bool = True) -> dict[str, np.ndarray]:
        """Every statistic as (number of loop counts added, B); all-null columns are left out, and
        without a loop sweep (``swept=False``) so are those comparing loop counts."""
        keep = STAT_COLUMNS if swept else ("margin", "entropy", "confidence")
        out = {k: np.array(v) for k, v in self.rows.items() if v and k in keep}
        return {k: v for k, v in out.items() if not np.isnan(v).all()}
