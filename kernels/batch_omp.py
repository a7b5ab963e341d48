"""Batch-OMP (Rubinstein, Zibulevsky & Elad 2008): greedy OMP driven by a precomputed Gram matrix.

Plain OMP pays one (B, d) x (d, n) product per iteration. Batch-OMP pays one product c0 = Y Dᵀ per
target and the Gram matrix G = D Dᵀ once; afterwards the correlations with the residual are

    corr = c0 - G[S]ᵀ γ            (S: the t atoms chosen so far, γ: their coefficients)

so iteration t streams t rows of G instead of doing d-dimensional work for every atom: k(k+1)/2 row
passes per target, bound by memory traffic. G and c0 are therefore kept in bfloat16 where the CPU
multiplies it fast (half the bytes, and the two products run 2.5x faster): they only screen, the best
RECHECK candidates are re-scored exactly against the float64 residual, and the chosen atom is exact
OMP's except in near-ties. In float32 the same re-check absorbs rounding, so the atoms are those of
`omp`. Coefficients always come from a float64 Cholesky factor of the chosen atoms' Gram entries
computed from the float32 dictionary, never from the stored G.

G takes n² values (6.2 GB in float32, 3.1 GB in bfloat16 for n = 39k). Past `gram_budget_bytes` the
k-GEMM torch `omp` runs instead: slower, but its memory grows with batch_size * n, not n².
"""

from __future__ import annotations

import numpy as np
import torch
from numba import njit, prange, types
from numba.extending import overload
from tqdm import tqdm

from transplant.kernels.omp import bf16_is_faster, omp

CHUNK = 2048  # columns of G combined at a time: the running sums stay in L1 while t rows stream by
GRAM_BLOCK = 4096  # rows of G per product while building it
TILE = 256  # square tiles of G transposed at a time: large enough to stream, few pages per tile
SCAN = 128  # columns checked at a time for a value that can enter the candidates
# Candidates re-scored exactly per iteration. float32 screening errors are rounding-sized; bfloat16
# rounds every product to 2⁻⁹: with 8, Qwen2.5 embeddings get exact OMP's atoms 99.98-100% of the
# time at k = 8 and 98.7-99.7% at k = 64 (the rest are near-ties: the reconstruction error is the same).
RECHECK = {"fp32": 4, "bf16": 8}


def sparse_codes(
    targets: torch.Tensor,
    dictionary: torch.Tensor,
    k: int,
    *,
    precision: str = "auto",
    batch_size: int = 4096,
    gram_budget_bytes: int = 8 << 30,
    progress: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """OMP codes of every row of `targets` (B, d) over the rows of `dictionary` (n, d).

    Returns (indices (B, k) int64, coefficients (B, k) float32), k clipped to n, the same contract as
    `transplant.kernels.omp.omp`. precision: "fp32" keeps G and c0 in float32 (the atoms of float32
    OMP), "bf16" keeps them in bfloat16 (screen + exact re-check), "auto" picks bf16 where this CPU
    multiplies it faster. When G would need more than `gram_budget_bytes`, the k-GEMM torch path runs
    instead: its memory is O(batch_size * n) whatever n is.
    """
    if precision not in ("auto", "fp32", "bf16"):
        raise ValueError(f"precision must be auto, fp32 or bf16, not {precision!r}")
    batch, n = targets.shape[0], dictionary.shape[0]
    k = min(k, n)
    idx = torch.zeros(batch, k, dtype=torch.long)
    coef = torch.zeros(batch, k, dtype=torch.float32)
    if batch == 0 or k == 0:
        return idx, coef
    if precision == "auto":
        precision = "bf16" if bf16_is_faster(dictionary.shape[1]) else "fp32"
    low = torch.bfloat16 if precision == "bf16" else torch.float32
    atoms = dictionary.float().contiguous()
    bar = tqdm(total=batch, desc="batch-omp", unit="target", disable=not progress)
    if n * n * low.itemsize > gram_budget_bytes:
        screen = atoms.to(low) if low != torch.float32 else None
        for start in range(0, batch, batch_size):
            stop = min(start + batch_size, batch)
            idx[start:stop], coef[start:stop] = omp(targets[start:stop], atoms, k, screen)
            bar.update(stop - start)
        bar.close()
        return idx, coef
    atoms_low = atoms.to(low)
    if low == torch.bfloat16 and n % 2:
        # bfloat16 columns travel in pairs (32-bit words): pad with a zero atom the kernel never picks.
        atoms_low = torch.cat([atoms_low, atoms_low.new_zeros(1, atoms_low.shape[1])])
    gram = _words(_gram(atoms_low))
    # Keeps the factorisation defined when an atom duplicates a chosen one; like `omp`'s, 1e-10 of a
    # mean squared norm (of all atoms here, so it stays fixed while the factor grows).
    ridge = 1e-10 * max(float(atoms.square().sum(dim=1).mean()), 1e-30)
    atoms_np = atoms.numpy()
    for start in range(0, batch, batch_size):
        stop = min(start + batch_size, batch)
        y = targets[start:stop].float().contiguous()
        c0 = _words(y.to(low) @ atoms_low.T)
        _batch_omp(c0, gram, atoms_np, y.numpy(), RECHECK[precision], ridge, idx[start:stop].numpy(), coef[start:stop].numpy())
        bar.update(stop - start)
    bar.close()
    return idx, coef


def _gram(atoms: torch.Tensor) -> torch.Tensor:
    """atoms atomsᵀ from the products below the diagonal only (half the flops); mirrored after."""
    n = atoms.shape[0]
    gram = torch.empty(n, n, dtype=atoms.dtype)
    for start in range(0, n, GRAM_BLOCK):
        stop = min(start + GRAM_BLOCK, n)
        gram[start:stop, :stop] = atoms[start:stop] @ atoms[:stop].T
    _mirror_lower(gram.view(torch.int16).numpy() if gram.dtype == torch.bfloat16 else gram.numpy())
    return gram


@njit(parallel=True, fastmath=False, cache=True)
def _mirror_lower(square):
    """Copy the lower triangle of `square` onto its upper one, tile by tile."""
    tiles = (square.shape[0] + TILE - 1) // TILE
    for q in prange((tiles + 1) // 2):
        # Tile row q is short and row tiles-1-q long: paired, every iteration does the same work.
        buf = np.empty((TILE, TILE), square.dtype)
        _mirror_tile_row(square, q, buf)
        if tiles - 1 - q != q:
            _mirror_tile_row(square, tiles - 1 - q, buf)


@njit(fastmath=False, cache=True)
def _mirror_tile_row(square, row, buf):
    """Transpose the tiles left of the diagonal in tile row `row` onto the tiles above it."""
    top = row * TILE
    height = min(TILE, square.shape[0] - top)
    for left in range(0, top, TILE):
        for a in range(height):
            src = square[top + a, left : left + TILE]
            dst = buf[a]
            for b in range(TILE):
                dst[b] = src[b]
        for b in range(TILE):
            dst = square[left + b, top : top + height]
            for a in range(height):
                dst[a] = buf[a, b]


def _words(x: torch.Tensor) -> np.ndarray:
    """numpy has no bfloat16: pairs of them go over as uint32 words, which the kernel splits."""
    if x.dtype == torch.bfloat16:
        return x.view(torch.int32).numpy().view(np.uint32)
    return x.numpy()


def _lanes(words):
    raise NotImplementedError  # only called from compiled code


@overload(_lanes)
def _lanes_impl(words):
    lanes = 2 if words.dtype == types.uint32 else 1
    return lambda words: lanes


def _lane(word, lane):
    raise NotImplementedError  # only called from compiled code


@overload(_lane)
def _lane_impl(word, lane):
    if word == types.uint32:
        # Two bfloat16 values per word: a bfloat16 is the top half of the float32 it rounds.
        def impl(word, lane):
            if lane == 0:
                return np.uint32(word << np.uint32(16)).view(np.float32)
            return np.uint32(word & np.uint32(0xFFFF0000)).view(np.float32)

        return impl
    return lambda word, lane: np.float32(word)


@njit(parallel=True, fastmath=False, cache=True)
def _batch_omp(c0, gram, atoms, targets, recheck, ridge, idx, coef):
    for b in prange(c0.shape[0]):
        _one_target(c0[b], gram, atoms, targets[b], recheck, ridge, idx[b], coef[b])


@njit(fastmath=False, cache=True)
def _one_target(c0, gram, atoms, y, recheck, ridge, chosen, coef_out):
    k = chosen.shape[0]
    chol = np.zeros((k, k))  # lower Cholesky factor of the chosen atoms' Gram matrix (+ ridge)
    z = np.zeros(k)  # chol⁻¹ (chosen atoms · y): each entry is final once written
    gamma = np.zeros(k)
    gamma32 = np.zeros(k, np.float32)
    residual = y.astype(np.float64)
    taken = np.zeros(gram.shape[0], np.bool_)
    taken[atoms.shape[0] :] = True  # the zero atom that pads bfloat16 columns to pairs
    lanes = _lanes(gram)
    split = np.empty((lanes, CHUNK // lanes), np.float32)
    cand = np.empty(recheck, np.int64)
    cand_val = np.empty(recheck, np.float32)
    for t in range(k):
        _screen(c0, gram, chosen, gamma32, t, taken, split, cand, cand_val)
        chosen[t] = _recheck(residual, atoms, cand)
        taken[chosen[t]] = True
        _extend(chol, z, atoms, chosen, y, t, ridge)
        _back_substitute(chol, z, gamma, t)
        if t + 1 < k:
            _residual(residual, y, atoms, chosen, gamma, t + 1)
            for i in range(t + 1):
                gamma32[i] = gamma[i]
    for i in range(k):
        coef_out[i] = gamma[i]


@njit(fastmath=False, cache=True)
def _recheck(residual, atoms, cand):
    """The candidate with the largest exact |residual · atom|; ties go to the lower index."""
    best, best_val = cand[0], -1.0
    for c in range(cand.shape[0]):
        j = cand[c]
        if j < 0:
            continue
        v = abs(_dot(residual, atoms[j]))
        if v > best_val or (v == best_val and j < best):
            best, best_val = j, v
    return best


@njit(fastmath=False, cache=True)
def _extend(chol, z, atoms, chosen, y, t, ridge):
    """Append row t to the Cholesky factor and to z for the atom just chosen."""
    atom = atoms[chosen[t]]
    for i in range(t):
        v = _dot(atoms[chosen[i]], atom)
        for j in range(i):
            v -= chol[i, j] * chol[t, j]
        chol[t, i] = v / chol[i, i]
    pivot = _dot(atom, atom) + ridge
    for j in range(t):
        pivot -= chol[t, j] * chol[t, j]
    # An atom equal to a chosen one leaves only the ridge on the pivot (or less, after rounding).
    chol[t, t] = np.sqrt(max(pivot, ridge))
    v = _dot(atom, y)
    for j in range(t):
        v -= chol[t, j] * z[j]
    z[t] = v / chol[t, t]


@njit(fastmath=False, cache=True)
def _back_substitute(chol, z, gamma, t):
    for i in range(t, -1, -1):
        v = z[i]
        for j in range(i + 1, t + 1):
            v -= chol[j, i] * gamma[j]
        gamma[i] = v / chol[i, i]


@njit(fastmath=False, cache=True)
def _residual(residual, y, atoms, chosen, gamma, count):
    for q in range(y.shape[0]):
        residual[q] = y[q]
    for i in range(count):
        g = gamma[i]
        atom = atoms[chosen[i]]
        for q in range(y.shape[0]):
            residual[q] -= g * atom[q]


# FMA contraction is the only relaxation: this pass only ranks candidates for the exact re-check.
@njit(fastmath={"contract"}, cache=True)
def _screen(c0, gram, chosen, gamma32, t, taken, split, cand, cand_val):
    """The top len(cand) atoms not yet taken by |c0 - G[chosen[:t]]ᵀ γ|, in one pass over the t rows.

    c0 and the rows of G are words of `lanes` columns each; split[lane, j] holds column
    (word j of the chunk) * lanes + lane, so every loop runs over contiguous words.
    """
    lanes = _lanes(gram)
    chunk = split.shape[1]
    words = c0.shape[0]
    cand[:] = -1
    cand_val[:] = -1.0
    floor = np.float32(-1.0)  # the smallest value in cand_val: only larger values can enter
    for start in range(0, words, chunk):
        m = min(chunk, words - start)
        seg = c0[start : start + m]
        for j in range(m):
            for lane in range(lanes):
                split[lane, j] = _lane(seg[j], lane)
        i = 0
        while i + 4 <= t:
            r0 = gram[chosen[i], start : start + m]
            r1 = gram[chosen[i + 1], start : start + m]
            r2 = gram[chosen[i + 2], start : start + m]
            r3 = gram[chosen[i + 3], start : start + m]
            g0, g1, g2, g3 = gamma32[i], gamma32[i + 1], gamma32[i + 2], gamma32[i + 3]
            for j in range(m):
                w0, w1, w2, w3 = r0[j], r1[j], r2[j], r3[j]
                for lane in range(lanes):
                    split[lane, j] -= (g0 * _lane(w0, lane) + g1 * _lane(w1, lane)) + (g2 * _lane(w2, lane) + g3 * _lane(w3, lane))
            i += 4
        while i < t:
            r0 = gram[chosen[i], start : start + m]
            g0 = gamma32[i]
            for j in range(m):
                w0 = r0[j]
                for lane in range(lanes):
                    split[lane, j] -= g0 * _lane(w0, lane)
            i += 1
        for lane in range(lanes):
            for offset in range(0, m, SCAN):
                block = split[lane, offset : min(offset + SCAN, m)]
                # Few blocks hold a value above the floor; a fixed-length count vectorises, the
                # scalar insertion loop does not.
                if block.shape[0] == SCAN:
                    hits = 0
                    for j in range(SCAN):
                        if abs(block[j]) > floor:
                            hits += 1
                    if hits == 0:
                        continue
                floor = _insert(block, (start + offset) * lanes + lane, lanes, floor, taken, cand, cand_val)


@njit(fastmath=False, cache=True)
def _insert(block, first, step, floor, taken, cand, cand_val):
    for j in range(block.shape[0]):
        v = abs(block[j])
        atom = first + j * step
        if v <= floor or taken[atom]:
            continue
        low = 0
        for c in range(1, cand.shape[0]):
            if cand_val[c] < cand_val[low]:
                low = c
        cand[low] = atom
        cand_val[low] = v
        floor = cand_val[0]
        for c in range(1, cand.shape[0]):
            floor = min(floor, cand_val[c])
    return floor


# Reassociation and contraction only (no NaN/inf assumptions): the reduction vectorises, 4x faster
# than the strict left-to-right sum, and its order is still fixed at compile time.
@njit(fastmath={"reassoc", "contract"}, cache=True)
def _dot(a, b):
    total = 0.0
    for q in range(a.shape[0]):
        total += np.float64(a[q]) * np.float64(b[q])
    return total
