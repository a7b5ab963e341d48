"""Batch-OMP against the plain batched OMP it replaces, on small synthetic dictionaries."""

import pytest
import torch

from transplant.kernels.batch_omp import sparse_codes
from transplant.kernels.omp import omp


def _problem(n=2000, d=64, batch=300, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(batch, d, generator=gen), torch.randn(n, d, generator=gen)


def _relative_error(targets, dictionary, idx, coef):
    approx = torch.einsum("bk,bkd->bd", coef, dictionary[idx])
    return (targets - approx).norm(dim=1) / targets.norm(dim=1)


def _assert_distinct(idx):
    ordered = idx.sort(dim=1).values
    assert (ordered[:, 1:] != ordered[:, :-1]).all()


def test_fp32_matches_reference_omp():
    targets, dictionary = _problem()
    ref_idx, ref_coef = omp(targets, dictionary, 8)
    idx, coef = sparse_codes(targets, dictionary, 8, precision="fp32", batch_size=128)
    assert torch.equal(idx, ref_idx)
    torch.testing.assert_close(coef, ref_coef, rtol=1e-4, atol=1e-6)


def test_fp32_matches_reference_with_duplicate_atoms():
    targets, dictionary = _problem(n=500, seed=1)
    dictionary[250:300] = dictionary[:50]  # identical rows: the lower index must win the tie
    ref_idx, ref_coef = omp(targets, dictionary, 8)
    idx, coef = sparse_codes(targets, dictionary, 8, precision="fp32")
    # Whichever copy of an atom is chosen, the same vectors and coefficients must come out.
    torch.testing.assert_close(dictionary[idx], dictionary[ref_idx], rtol=0, atol=0)
    torch.testing.assert_close(coef, ref_coef, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_exact_sparse_targets_with_duplicates(precision):
    gen = torch.Generator().manual_seed(2)
    dictionary = torch.randn(400, 128, generator=gen)
    dictionary[200:] = dictionary[:200]
    support = torch.stack([torch.randperm(200, generator=gen)[:3] for _ in range(64)])
    weights = torch.rand(64, 3, generator=gen) + 0.5
    targets = torch.einsum("bk,bkd->bd", weights, dictionary[support])
    idx, coef = sparse_codes(targets, dictionary, 8, precision=precision)
    assert torch.isfinite(coef).all()
    _assert_distinct(idx)
    assert _relative_error(targets, dictionary, idx, coef).max() < 1e-4


def test_bf16_screen_close_to_fp32():
    targets, dictionary = _problem(n=2001, seed=3)  # odd: bfloat16 columns are padded to pairs
    exact_idx, exact_coef = sparse_codes(targets, dictionary, 8, precision="fp32")
    idx, coef = sparse_codes(targets, dictionary, 8, precision="bf16")
    _assert_distinct(idx)
    agreement = (idx == exact_idx).float().mean()
    assert agreement >= 0.95
    exact_err = _relative_error(targets, dictionary, exact_idx, exact_coef).mean()
    err = _relative_error(targets, dictionary, idx, coef).mean()
    assert err <= 1.01 * exact_err


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_k_larger_than_dictionary_is_clipped(precision):
    targets, dictionary = _problem(n=5, d=16, batch=10)
    ref_idx, ref_coef = omp(targets, dictionary, 8)
    idx, coef = sparse_codes(targets, dictionary, 8, precision=precision)
    assert idx.shape == coef.shape == (10, 5)
    _assert_distinct(idx)
    assert torch.equal(idx, ref_idx)
    torch.testing.assert_close(coef, ref_coef, rtol=1e-4, atol=1e-6)


def test_empty_batch():
    _, dictionary = _problem(n=50, d=16)
    idx, coef = sparse_codes(torch.zeros(0, 16), dictionary, 8)
    assert idx.shape == (0, 8) and idx.dtype == torch.int64
    assert coef.shape == (0, 8) and coef.dtype == torch.float32


def test_gram_over_budget_falls_back_to_direct_omp():
    targets, dictionary = _problem(n=300, batch=50, seed=4)
    ref_idx, ref_coef = omp(targets, dictionary, 8)
    idx, coef = sparse_codes(targets, dictionary, 8, precision="fp32", gram_budget_bytes=0, batch_size=16)
    assert torch.equal(idx, ref_idx)
    torch.testing.assert_close(coef, ref_coef)


def test_unknown_precision_is_rejected():
    targets, dictionary = _problem(n=50, d=16, batch=4)
    with pytest.raises(ValueError):
        sparse_codes(targets, dictionary, 4, precision="fp16")


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_gram_from_lower_blocks_is_the_full_product(dtype):
    from transplant.kernels.batch_omp import GRAM_BLOCK, _gram

    atoms = torch.randn(GRAM_BLOCK + 3, 8, generator=torch.Generator().manual_seed(5)).to(dtype)
    torch.testing.assert_close(_gram(atoms).float(), (atoms @ atoms.T).float(), rtol=1e-2, atol=1e-2)
