"""Ensembles of next-byte distributions: models with different vocabularies share the byte alphabet.

mixture: p(b) = sum_i w_i p_i(b)              (log-sum-exp of log w_i + log p_i)
product: p(b) ∝ prod_i p_i(b) ** w_i          (weighted mean of log-probabilities, renormalized)
Weights are normalized to sum to 1. Inputs and outputs are log-distributions over the 257 outcomes
(bytes and END) along the last axis.
"""

from __future__ import annotations

import numpy as np

from transplant.errors import UserError

MODES = ("mixture", "product")


def normalize_weights(weights: list[float] | None, n: int) -> np.ndarray:
    if weights is None:
        return np.full(n, 1.0 / n)
    if len(weights) != n:
        raise UserError(f"got {len(weights)} weights for {n} models")
    w = np.asarray(weights, dtype=float)
    if np.any(w < 0) or w.sum() <= 0:
        raise UserError("weights must be non-negative and not all zero")
    return w / w.sum()


def combine(dists: list[np.ndarray], mode: str, weights: np.ndarray) -> np.ndarray:
    """One log-distribution from several (same shape, outcomes on the last axis)."""
    stacked = np.stack(dists)
    w = weights.reshape((-1,) + (1,) * (stacked.ndim - 1))
    with np.errstate(divide="ignore", invalid="ignore"):
        if mode == "mixture":
            return np.logaddexp.reduce(stacked + np.log(w), axis=0)
        if mode == "product":
            # a zero weight must not turn -inf into nan
            joint = np.where(w > 0, stacked * w, 0.0).sum(axis=0)
            return joint - np.logaddexp.reduce(joint, axis=-1, keepdims=True)
    raise UserError(f"unknown ensemble mode {mode!r}; known: {', '.join(MODES)}")


def observed_logprobs(dist: np.ndarray, data: bytes) -> np.ndarray:
    """log p(x[n]) for every byte of `data` from per-position log-distributions (n_bytes, 257)."""
    return dist[np.arange(len(data)), np.frombuffer(data, dtype=np.uint8)]
