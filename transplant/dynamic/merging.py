"""Batch-level BPE: merge the batch's most frequent joinable pair, again and again.

The merge loop is written against `PairState` (count the best pair, apply a merge) so that the numba
kernel and the plain Python reference in the tests run the same loop and can be compared merge for
merge. Token identity is by bytes: a merge whose bytes are already a base token reuses that token's
id (and its trained rows), and two merges that spell the same bytes ("a"+"bc", "ab"+"c") give one
token. New tokens get ids from the base vocabulary's size on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from transplant.dynamic.batches import TokenBatch
from transplant.errors import UserError
from transplant.kernels.pair_merge import apply_merge, best_pair


class PairState(Protocol):
    def best_pair(self) -> tuple[int, int, int]:
        """(left, right, count) of the most frequent joinable pair, ties to the smallest (left, right);
        count 0 when nothing can merge."""

    def apply(self, left: int, right: int, new_id: int) -> int:
        """Merge every joinable occurrence left to right; returns how many."""

    def length(self) -> int:
        """Tokens in the batch now."""

    def sequences(self) -> list[np.ndarray]:
        """Token ids per sequence now."""


class KernelState:
    """The batch as flat arrays, merged by `transplant.kernels.pair_merge`."""

    def __init__(self, ids: list[np.ndarray], joinable: list[np.ndarray], stride: int) -> None:
        self.ids = np.concatenate(ids).astype(np.int64)
        self.joinable = np.concatenate(joinable).astype(np.uint8)
        self.offsets = np.cumsum([0] + [len(seq) for seq in ids]).astype(np.int64)
        self.stride = stride

    def best_pair(self) -> tuple[int, int, int]:
        left, right, count = best_pair(self.ids, self.joinable, self.offsets, self.stride)
        return int(left), int(right), int(count)

    def apply(self, left: int, right: int, new_id: int) -> int:
        if new_id >= self.stride:
            raise ValueError(f"id {new_id} does not fit the pair key stride {self.stride}")
        return int(apply_merge(self.ids, self.joinable, self.offsets, left, right, new_id))

    def length(self) -> int:
        return int(self.offsets[-1])

    def sequences(self) -> list[np.ndarray]:
        return [self.ids[a:b].copy() for a, b in zip(self.offsets[:-1], self.offsets[1:], strict=True)]


@dataclass(frozen=True)
class Merge:
    left: int
    right: int
    result: int
    count: int  # pairs counted (overlapping ones included)
    merged: int  # occurrences replaced


@dataclass
class TokenTable:
    """Bytes and base pieces of every id a batch may hold: the base vocabulary, then new tokens."""

    base_bytes: list[bytes | None]  # None: special token or unused id
    base_index: dict[bytes, int]
    new_bytes: list[bytes]
    new_pieces: list[tuple[int, ...]]

    @classmethod
    def from_vocab(cls, vocab) -> TokenTable:
        return cls(list(vocab.tokens), dict(vocab.byte_index), [], [])

    @property
    def base_size(self) -> int:
        return len(self.base_bytes)

    def bytes_of(self, token: int) -> bytes:
        data = self.base_bytes[token] if token < self.base_size else self.new_bytes[token - self.base_size]
        if data is None:
            raise ValueError(f"token {token} is special and has no bytes")
        return data

    def pieces_of(self, token: int) -> tuple[int, ...]:
        return (token,) if token < self.base_size else self.new_pieces[token - self.base_size]

    def id_for(self, left: int, right: int) -> int:
        """The id of left + right: an existing token with those bytes, else a new one."""
        data = self.bytes_of(left) + self.bytes_of(right)
        found = self.base_index.get(data)
        if found is None:
            found = self.base_size + len(self.new_bytes)
            self.base_index[data] = found
            self.new_bytes.append(data)
            self.new_pieces.append(self.pieces_of(left) + self.pieces_of(right))
        return found


@dataclass
class DynamicBatch:
    """A batch after merging: the sequences, and the new tokens they use."""

    base: TokenBatch
    ids: list[np.ndarray]  # int64 per sequence, start token first; ids >= base_size are new
    merges: list[Merge]
    table: TokenTable

    @property
    def n_text_tokens(self) -> int:
        return sum(len(seq) - 1 for seq in self.ids)

    @property
    def reduction(self) -> float:
        """Fraction of the base sequence length saved: 1 - merged tokens / base tokens."""
        return 1.0 - self.n_text_tokens / self.base.n_text_tokens

    def new_ids(self) -> np.ndarray:
        """New tokens used in the sequences (merges can use up a token again), ascending."""
        used = np.unique(np.concatenate(self.ids))
        return used[used >= self.table.base_size]


def merge_batch(
    batch: TokenBatch,
    table: TokenTable,
    max_merges: int,
    *,
    target_reduction: float | None = None,
    state: PairState | None = None,
) -> DynamicBatch:
    """Merge the most frequent joinable pair of the whole batch, `max_merges` times at most, or
    until the batch is `target_reduction` (a fraction) shorter, or until nothing can merge.

    `table` collects new tokens and may be shared by many batches (ids stay stable). `state` runs
    the loop on another implementation of the same steps (the tests' reference); by default the
    numba kernel.
    """
    if max_merges < 0:
        raise UserError("the number of merges cannot be negative")
    if target_reduction is not None and not 0.0 < target_reduction < 1.0:
        raise UserError("a target reduction is a fraction between 0 and 1")
    if state is None:
        # room for every id a merge may create
        state = KernelState(batch.ids, batch.joinable, table.base_size + len(table.new_bytes) + max_merges + 1)
    goal = None if target_reduction is None else (1.0 - target_reduction) * batch.n_text_tokens + len(batch.ids)
    merges: list[Merge] = []
    while len(merges) < max_merges and (goal is None or state.length() > goal):
        left, right, count = state.best_pair()
        if count == 0:
            break
        result = table.id_for(left, right)
        merges.append(Merge(left, right, result, count, state.apply(left, right, result)))
    return DynamicBatch(base=batch, ids=state.sequences(), merges=merges, table=table)
