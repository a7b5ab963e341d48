import numpy as np
import pytest

from transplant.errors import UserError
from transplant.neighbors import available, top_k


def _unit(rows: int, dim: int, seed: int) -> np.ndarray:
    x = np.random.default_rng(seed).normal(size=(rows, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.mark.parametrize("backend", ["torch", "faiss", "sklearn"])
def test_every_backend_finds_the_exact_neighbours(backend, monkeypatch):
    if backend not in available():
        pytest.skip(f"{backend} is not installed")
    import transplant.neighbors as nb

    monkeypatch.setattr(nb, "BLOCK", 70)  # several blocks, the last one partial
    keys, queries = _unit(500, 24, 0), _unit(301, 24, 1)
    scores, ids = top_k(keys, queries, 5, backend)
    full = queries @ keys.T
    expected = np.argsort(-full, axis=1)[:, :5]
    assert np.array_equal(ids, expected)
    assert np.allclose(scores, np.take_along_axis(full, expected, axis=1), atol=1e-5)


def test_k_is_capped_at_the_number_of_keys_and_empty_queries_work():
    keys = _unit(2, 8, 0)
    scores, ids = top_k(keys, _unit(3, 8, 1), 5)
    assert scores.shape == ids.shape == (3, 2)
    assert sorted(ids[0]) == [0, 1]
    scores, ids = top_k(keys, np.zeros((0, 8), np.float32), 3)
    assert scores.shape == (0, 2)


def test_unknown_backend_is_a_user_error():
    with pytest.raises(UserError, match="not available"):
        top_k(_unit(4, 8, 0), _unit(2, 8, 1), 1, "annoy")
