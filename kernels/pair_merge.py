"""Batch-level BPE steps over a flat batch: count adjacent pairs, merge the most frequent one.

A batch is three arrays: `ids` (every sequence's token ids, back to back), `joinable` (1 where the
token may merge with the token after it: same boundary group, no special token) and `offsets`
(sequence s is ids[offsets[s]:offsets[s + 1]]). Pairs never cross sequences, whatever `joinable`
says at a sequence's last token.

Counting hashes every joinable pair into an open-addressing table: one pass, O(batch) per merge.
Overlapping occurrences (a a a) count twice, as in a plain Counter over zip(seq, seq[1:]); merging
then goes left to right, so `a a a` becomes `aa a`. Ties go to the smallest (left, right): the result
never depends on hash order.
"""

from __future__ import annotations

import numpy as np
from numba import njit

_EMPTY = -1
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)  # Fibonacci hashing: spreads consecutive keys over the table


@njit(cache=True)
def _table_bits(n_pairs):
    bits = 4
    while (1 << bits) < 2 * n_pairs:
        bits += 1
    return bits


@njit(cache=True)
def best_pair(ids, joinable, offsets, stride):
    """(left, right, count) of the most frequent joinable pair; count 0 when there is none.

    `stride` exceeds every id: a pair's key is left * stride + right.
    """
    n_seq = offsets.shape[0] - 1
    bits = _table_bits(max(offsets[n_seq] - offsets[0], 1))
    size = 1 << bits
    mask = size - 1
    shift = np.uint64(64 - bits)
    keys = np.full(size, _EMPTY, np.int64)
    counts = np.zeros(size, np.int64)
    best_key = _EMPTY
    best_count = 0
    for s in range(n_seq):
        for i in range(offsets[s], offsets[s + 1] - 1):
            if not joinable[i]:
                continue
            key = ids[i] * stride + ids[i + 1]
            slot = np.int64((np.uint64(key) * _GOLDEN) >> shift)
            while keys[slot] != key and keys[slot] != _EMPTY:
                slot = (slot + 1) & mask
            keys[slot] = key
            counts[slot] += 1
            c = counts[slot]
            if c > best_count or (c == best_count and key < best_key):
                best_count = c
                best_key = key
    if best_count == 0:
        return -1, -1, 0
    return best_key // stride, best_key % stride, best_count


@njit(cache=True)
def apply_merge(ids, joinable, offsets, left, right, new_id):
    """Replace every joinable (left, right), left to right, by new_id, compacting in place.

    The merged token may merge with its right neighbour exactly when `right` could: boundary groups
    are contiguous, so the gap after the pair is the one that matters. `offsets` is updated; returns
    how many pairs were merged.
    """
    n_seq = offsets.shape[0] - 1
    write = offsets[0]
    merged = 0
    for s in range(n_seq):
        read = offsets[s]
        end = offsets[s + 1]
        offsets[s] = write
        while read < end:
            if read + 1 < end and joinable[read] and ids[read] == left and ids[read + 1] == right:
                ids[write] = new_id
                joinable[write] = joinable[read + 1]
                read += 2
                merged += 1
            else:
                ids[write] = ids[read]
                joinable[write] = joinable[read]
                read += 1
            write += 1
    offsets[n_seq] = write
    return merged
