"""The numba pair-merge kernel against the plain Python reference, step by step."""

import numpy as np
import pytest
from pair_merge_reference import ReferenceState

from transplant.dynamic.merging import KernelState


def random_batch(rng, n_seq, max_len, alphabet, join_rate):
    ids, joinable = [], []
    for _ in range(n_seq):
        n = int(rng.integers(1, max_len + 1))
        ids.append(rng.integers(0, alphabet, n).astype(np.int64))
        flags = (rng.random(n) < join_rate).astype(np.uint8)
        flags[-1] = 0
        joinable.append(flags)
    return ids, joinable


def assert_same(kernel, reference):
    assert kernel.length() == reference.length()
    for a, b in zip(kernel.sequences(), reference.sequences(), strict=True):
        np.testing.assert_array_equal(a, b)
    ref_joins = np.concatenate([np.array(j, np.uint8) for j in reference.joins])
    np.testing.assert_array_equal(kernel.joinable[: kernel.length()], ref_joins)


@pytest.mark.parametrize("seed", range(6))
def test_kernel_matches_reference_merge_for_merge(seed):
    rng = np.random.default_rng(seed)
    alphabet = int(rng.integers(2, 12))
    ids, joinable = random_batch(rng, n_seq=int(rng.integers(1, 40)), max_len=60, alphabet=alphabet, join_rate=0.8)
    stride = alphabet + 200
    kernel, reference = KernelState(ids, joinable, stride), ReferenceState(ids, joinable)
    for step in range(150):
        got, want = kernel.best_pair(), reference.best_pair()
        assert got == want, f"step {step}"
        if want[2] == 0:
            break
        new_id = alphabet + step
        assert kernel.apply(want[0], want[1], new_id) == reference.apply(want[0], want[1], new_id)
        assert_same(kernel, reference)
    assert kernel.best_pair()[2] == 0 or step == 149


def test_overlapping_pairs_count_twice_and_merge_left_to_right():
    ids = [np.array([5, 1, 1, 1], np.int64)]
    kernel = KernelState(ids, [np.array([0, 1, 1, 0], np.uint8)], 100)
    assert kernel.best_pair() == (1, 1, 2)
    assert kernel.apply(1, 1, 7) == 1
    np.testing.assert_array_equal(kernel.sequences()[0], [5, 7, 1])


def test_ties_go_to_the_smallest_pair():
    ids = [np.array([0, 4, 3, 2, 1], np.int64)]
    kernel = KernelState(ids, [np.array([0, 1, 1, 1, 0], np.uint8)], 10)
    assert kernel.best_pair() == (2, 1, 1)


def test_no_pair_crosses_sequences_or_a_closed_gap():
    # the flag at a sequence's last token is ignored: sequences never join
    ids = [np.array([3, 4], np.int64), np.array([3, 4], np.int64), np.array([4, 3], np.int64)]
    joinable = [np.array([0, 1], np.uint8), np.array([0, 1], np.uint8), np.array([0, 0], np.uint8)]
    kernel = KernelState(ids, joinable, 10)
    assert kernel.best_pair() == (-1, -1, 0)
    assert kernel.apply(4, 3, 9) == 0
    assert [s.tolist() for s in kernel.sequences()] == [[3, 4], [3, 4], [4, 3]]


def test_merged_token_keeps_the_right_tokens_gap():
    ids = [np.array([1, 2, 3, 1, 2, 3], np.int64)]
    joinable = [np.array([1, 1, 0, 1, 0, 0], np.uint8)]
    kernel = KernelState(ids, joinable, 10)
    assert kernel.apply(1, 2, 8) == 2
    assert kernel.sequences()[0].tolist() == [8, 3, 8, 3]
    assert kernel.joinable[:4].tolist() == [1, 0, 0, 0]
    assert kernel.best_pair() == (8, 3, 1)
