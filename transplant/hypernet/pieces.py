"""A token's bytes as pieces of the base vocabulary: the hypernetwork's input.

Pieces come from the base tokenizer's model alone (`Vocab.decompose`, as ZeTT does). A byte the base
cannot spell (SmolLM2 has no piece for 0xC0) becomes a fallback id `V + byte`, for which the
hypernetwork learns its own vector, so no input byte is silently lost.
"""

from __future__ import annotations

from functools import cached_property

import numpy as np
import torch

from transplant.vocab import Vocab

PAD = -1


class PieceEncoder:
    """Turns token bytes into padded (N, max_pieces) id arrays, with a cache: the same pieces recur
    in every sampled tokenizer."""

    def __init__(self, vocab: Vocab, max_pieces: int):
        self.vocab = vocab
        self.max_pieces = max_pieces
        self.n_base = vocab.size
        self._cache: dict[bytes, tuple[int, ...]] = {}

    @cached_property
    def _spellable(self) -> np.ndarray:
        ok = np.zeros(256, dtype=bool)
        for b in range(256):
            ok[b] = bytes([b]) in self.vocab.byte_index or self.vocab.tokenizer.token_to_id(f"<0x{b:02X}>") is not None
        return ok

    def pieces(self, data: bytes) -> tuple[int, ...]:
        cached = self._cache.get(data)
        if cached is not None:
            return cached
        ids: list[int] = []
        run = bytearray()
        for b in data:
            if self._spellable[b]:
                run.append(b)
                continue
            if run:
                ids.extend(self.vocab.decompose(bytes(run)))
                run.clear()
            ids.append(self.n_base + b)
        if run:
            ids.extend(self.vocab.decompose(bytes(run)))
        result = tuple(ids[: self.max_pieces])
        self._cache[data] = result
        return result

    def held_out(self, data: bytes) -> tuple[int, ...]:
        """Pieces of a base token that do not use the token itself: the base tokenizer's own split when
        it does not produce the token in one piece, else the two-part split with the fewest pieces.
        Predicting a base token from these is the same task as predicting a new token from its pieces,
        with a known answer."""
        whole = self.pieces(data)
        if len(whole) > 1 or len(data) < 2:
            return whole
        best: tuple[int, ...] | None = None
        for cut in range(1, len(data)):
            split = (self.pieces(data[:cut]) + self.pieces(data[cut:]))[: self.max_pieces]
            if best is None or len(split) < len(best):
                best = split
        return best

    def batch(self, tokens: list[bytes], held_out: bool = False) -> torch.Tensor:
        """(N, max_pieces) int64, PAD after each token's pieces; a token with no bytes gets one fallback
        piece for byte 0 so every row has a first position to read out."""
        out = np.full((len(tokens), self.max_pieces), PAD, dtype=np.int64)
        fn = self.held_out if held_out else self.pieces
        for row, data in enumerate(tokens):
            ids = fn(data) or (self.n_base,)
            out[row, : len(ids)] = ids
        return torch.from_numpy(out)
