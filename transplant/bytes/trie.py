"""Token byte strings sorted so that every byte prefix owns one contiguous range of tokens.

Sorting the vocabulary's canonical byte strings puts all tokens that start with a prefix s next to
each other, with the token equal to s (if any) first. A cumulative sum of next-token probabilities in
this order then gives the mass of "tokens starting with s" in O(1), and the mass of every next byte
after s with one `searchsorted` over a column of the byte matrix.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from transplant.vocab import Vocab

NO_BYTE = -1  # column value for a token shorter than the column index


@dataclass
class TokenTrie:
    """Sorted byte strings of every non-special, non-empty token of one vocabulary."""

    order: np.ndarray  # sorted position -> token id
    data: list[bytes]  # sorted byte strings
    columns: np.ndarray  # (tokens, max_len) int16: byte d of each sorted token, NO_BYTE past its end
    vocab_size: int  # ids the model scores (may exceed the tokenizer's)

    @classmethod
    def from_vocab(cls, vocab: Vocab, model_vocab_size: int | None = None) -> TokenTrie:
        pairs = sorted((tok, i) for i, tok in enumerate(vocab.tokens) if tok)
        data = [tok for tok, _ in pairs]
        width = max(len(tok) for tok in data)
        columns = np.full((len(data), width), NO_BYTE, dtype=np.int16)
        for row, tok in enumerate(data):
            columns[row, : len(tok)] = np.frombuffer(tok, dtype=np.uint8)
        order = np.array([i for _, i in pairs], dtype=np.int64)
        return cls(order, data, columns, max(model_vocab_size or 0, vocab.size))

    @property
    def size(self) -> int:
        return len(self.data)

    @property
    def max_len(self) -> int:
        return self.columns.shape[1]

    def cumulative(self, logprobs: np.ndarray) -> np.ndarray:
        """Prefix sums (float64, length size + 1) of next-token probabilities in sorted order."""
        out = np.zeros(self.size + 1)
        np.cumsum(np.exp(logprobs[self.order]), out=out[1:])
        return out

    def narrow(self, lo: int, hi: int, depth: int, byte: int) -> tuple[int, int]:
        """The range of tokens that extend the range [lo, hi) (prefix of length `depth`) by `byte`."""
        if depth >= self.max_len or lo >= hi:
            return lo, lo
        column = self.columns[lo:hi, depth]
        return lo + int(np.searchsorted(column, byte, "left")), lo + int(np.searchsorted(column, byte, "right"))

    def ending(self, lo: int, hi: int, depth: int) -> range:
        """Sorted positions in [lo, hi) of the tokens exactly `depth` bytes long (they come first)."""
        if depth >= self.max_len:
            return range(lo, hi)
        return range(lo, lo + int(np.searchsorted(self.columns[lo:hi, depth], NO_BYTE, "right")))

    def byte_edges(self, lo: int, hi: int, depth: int) -> np.ndarray:
        """257 edges e: tokens in [lo, hi) whose byte at `depth` is c lie in [e[c], e[c+1])."""
        if depth >= self.max_len:
            return np.full(257, hi)
        column = self.columns[lo:hi, depth]
        return lo + np.searchsorted(column, np.arange(257), "left")
