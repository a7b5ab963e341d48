import torch

from transplant.kernels.omp import omp


def _sparse_problem(n=600, d=48, batch=64, true_k=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    dictionary = torch.randn(n, d, generator=g)
    support = torch.stack([torch.randperm(n, generator=g)[:true_k] for _ in range(batch)])
    coef = torch.randn(batch, true_k, generator=g)
    return dictionary, torch.einsum("bk,bkd->bd", coef, dictionary[support]), support


def test_omp_recovers_exact_sparse_codes():
    dictionary, targets, support = _sparse_problem()
    idx, coef = omp(targets, dictionary, k=4)
    assert (idx.sort(dim=1).values == support.sort(dim=1).values).float().mean() > 0.95
    recon = torch.einsum("bk,bkd->bd", coef, dictionary[idx])
    assert (recon - targets).norm() / targets.norm() < 0.05


def test_omp_never_repeats_an_atom_and_survives_duplicates():
    dictionary, targets, _ = _sparse_problem(n=200)
    dictionary = torch.cat([dictionary, dictionary[:50]])  # identical rows
    idx, coef = omp(targets, dictionary, k=12)
    assert all(len(set(row.tolist())) == 12 for row in idx)
    assert torch.isfinite(coef).all()


def test_bf16_screen_matches_fp32_choices():
    dictionary, targets, _ = _sparse_problem(n=2000, d=64, batch=128, true_k=8, seed=3)
    exact_idx, exact_coef = omp(targets, dictionary, k=8)
    fast_idx, fast_coef = omp(targets, dictionary, k=8, screen=dictionary.bfloat16())
    assert (exact_idx == fast_idx).float().mean() > 0.97
    err = lambda i, c: (torch.einsum("bk,bkd->bd", c, dictionary[i]) - targets).norm()  # noqa: E731
    assert err(fast_idx, fast_coef) <= 1.01 * err(exact_idx, exact_coef) + 1e-4
