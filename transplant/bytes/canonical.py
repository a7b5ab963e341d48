"""Which adjacent token pairs can occur in the tokenizer's own (canonical) output.

A tokenized LM is trained on canonical tokenizations only, so a token sequence the tokenizer would
never produce gets almost no probability. Pruning such branches is what keeps the cover small: a pair
(a, b) is kept when tokenizing the bytes of a followed by b gives back exactly [a, b]. The check runs
the tokenizer's pre-tokenizer (byte-level BPE) and its model, so merge ranks, pre-token boundaries and
byte fallback are the tokenizer's own; results are cached per pair.
"""

from __future__ import annotations

from transplant.vocab import BYTE_LEVEL, Vocab, piece_bytes


class PairCheck:
    """`valid(a, b)`: whether token b may follow token a in canonical output."""

    def __init__(self, vocab: Vocab) -> None:
        self.vocab = vocab
        self._cache: dict[tuple[int, int], bool] = {}
        pre = vocab.tokenizer.pre_tokenizer
        self._pre = pre if vocab.family == BYTE_LEVEL else None

    def encode(self, data: bytes) -> list[int]:
        """Canonical ids of a byte string, also when it is not valid UTF-8 on its own."""
        if self._pre is not None:
            try:
                text = data.decode("utf-8")
            except UnicodeDecodeError:
                text = None
            if text is not None:
                pieces = [piece_bytes(p, BYTE_LEVEL)[0] for p, _ in self._pre.pre_tokenize_str(text)]
                return [i for piece in pieces for i in self.vocab.decompose(piece)]
        return self.vocab.decompose(data)

    def valid(self, a: int, b: int) -> bool:
        key = (a, b)
        hit = self._cache.get(key)
        if hit is None:
            left, right = self.vocab.tokens[a], self.vocab.tokens[b]
            hit = left is None or right is None or self.encode(left + right) == [a, b]
            self._cache[key] = hit
        return hit

    def pretoken_ends(self, data: bytes) -> list[int] | None:
        """Byte offsets where the pre-tokenizer ends a piece of `data` (None: no pre-tokenizer, or the
        bytes are not UTF-8). Canonical tokens never cross these."""
        if self._pre is None:
            return None
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            return None
        ends, end = [], 0
        for piece, _ in self._pre.pre_tokenize_str(text):
            end += len(piece_bytes(piece, BYTE_LEVEL)[0])
            ends.append(end)
        return ends if end == len(data) else None
