"""Batched Orthogonal Matching Pursuit over a shared dictionary.

Cost is dominated by one (B, d) x (d, n) correlation product per iteration. Where the CPU multiplies
bfloat16 faster than float32, that product screens candidates in bfloat16 and the best few are
re-scored exactly in float32, so the chosen atoms are those of float32 OMP except in near-ties
closer than the re-check width can separate; coefficients always come from an exact float64 solve.
"""

from __future__ import annotations

import time
from functools import lru_cache

import torch

RECHECK = 8  # candidates re-scored exactly after a bfloat16 screen


@lru_cache(maxsize=4)
def bf16_is_faster(d: int = 896, n: int = 8192, batch: int = 512) -> bool:
    """Time the correlation product both ways once per process; some CPUs emulate bfloat16 slowly."""
    a, b = torch.randn(batch, d), torch.randn(n, d)

    def timed(dtype):
        x, y = a.to(dtype), b.to(dtype)
        x @ y.T
        start = time.perf_counter()
        for _ in range(3):
            x @ y.T
        return time.perf_counter() - start

    return timed(torch.bfloat16) < 0.67 * timed(torch.float32)


def omp(targets: torch.Tensor, dictionary: torch.Tensor, k: int, screen: torch.Tensor | None = None):
    """Sparse codes of each row of `targets` (B, d) over the rows of `dictionary` (n, d).

    Returns (indices (B, k) int64, coefficients (B, k) float32) with
    targets ≈ Σ_j coefficients[:, j, None] * dictionary[indices[:, j]].
    `screen` is an optional low-precision copy of `dictionary` used to pre-select candidates.
    No atom normalisation, intercept or sum-to-one constraint: the plain greedy algorithm.
    """
    batch, n = targets.shape[0], dictionary.shape[0]
    k = min(k, n)
    y = targets.float()
    idx = torch.zeros(batch, k, dtype=torch.long)
    gram = torch.zeros(batch, k, k, dtype=torch.float64)
    rhs = torch.zeros(batch, k, dtype=torch.float64)
    coef = torch.zeros(batch, 0, dtype=torch.float64)
    residual = y.clone()
    for t in range(k):
        chosen = _select(residual, dictionary, screen, idx[:, :t])
        idx[:, t] = chosen
        atoms = dictionary[idx[:, : t + 1]]  # (B, t+1, d)
        newest = atoms[:, t]
        g = torch.einsum("bd,bjd->bj", newest, atoms).double()
        gram[:, t, : t + 1] = g
        gram[:, : t + 1, t] = g
        rhs[:, t] = (newest * y).sum(dim=1).double()
        system = gram[:, : t + 1, : t + 1]
        # A tiny ridge keeps the solve defined when two anchors have identical embeddings.
        ridge = 1e-10 * system.diagonal(dim1=1, dim2=2).mean(dim=1).clamp_min(1e-30)
        system = system + ridge[:, None, None] * torch.eye(t + 1, dtype=torch.float64)
        coef = torch.linalg.solve(system, rhs[:, : t + 1])
        residual = y - torch.einsum("bj,bjd->bd", coef.float(), atoms)
    return idx, coef.float()


def _select(residual, dictionary, screen, taken):
    if screen is None:
        corr = (residual @ dictionary.T).abs_()
        corr.scatter_(1, taken, -1.0)
        return corr.argmax(dim=1)
    corr = (residual.to(screen.dtype) @ screen.T).float().abs_()
    corr.scatter_(1, taken, -1.0)
    cand = corr.topk(min(RECHECK, corr.shape[1]), dim=1).indices  # (B, R)
    exact = torch.einsum("bd,brd->br", residual, dictionary[cand]).abs_()
    exact.masked_fill_((cand[:, :, None] == taken[:, None, :]).any(dim=2), -1.0)
    return cand.gather(1, exact.argmax(dim=1, keepdim=True)).squeeze(1)
