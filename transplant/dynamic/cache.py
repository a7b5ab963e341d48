"""Rows of new tokens kept across batches, least recently used first out.

Batches of one text share many merges (" the", "ing"), and a hypernetwork forward costs far more than
a lookup. Keyed by bytes: the same token built from different pieces is the same token.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import torch

from transplant.dynamic.embeddings import EmbeddingProvider, NewToken


@dataclass
class CacheStats:
    hits: int = 0
    misses: int = 0
    evictions: int = 0


class EmbeddingCache:
    """At most `max_entries` tokens' (n, d) rows; misses go to the provider in one call."""

    def __init__(self, provider: EmbeddingProvider, max_entries: int = 4096) -> None:
        if max_entries < 1:
            raise ValueError("the cache needs room for at least one token")
        self.provider = provider
        self.max_entries = max_entries
        self.rows: OrderedDict[bytes, torch.Tensor] = OrderedDict()
        self.stats = CacheStats()

    def __len__(self) -> int:
        return len(self.rows)

    def embed(self, tokens: list[NewToken]) -> torch.Tensor:
        """(len(tokens), n, d) rows: cached ones refreshed, missing ones computed and stored.

        Every row is looked up before anything is stored, so a call that needs more tokens than the
        cache holds still gets them all (the cache keeps the last `max_entries`)."""
        if not tokens:
            return self.provider.embed([])
        found: dict[bytes, torch.Tensor] = {}
        missing: dict[bytes, NewToken] = {}
        for token in tokens:
            if token.data in found or token.data in missing:
                continue
            if token.data in self.rows:
                found[token.data] = self.rows[token.data]
                self.rows.move_to_end(token.data)
            else:
                missing[token.data] = token
        self.stats.hits += len(found)
        self.stats.misses += len(missing)
        if missing:
            fresh = self.provider.embed(list(missing.values()))
            for key, row in zip(missing, fresh, strict=True):
                found[key] = row
                self._store(key, row)
        return torch.stack([found[token.data] for token in tokens])

    def _store(self, key: bytes, row: torch.Tensor) -> None:
        self.rows[key] = row
        self.rows.move_to_end(key)
        while len(self.rows) > self.max_entries:
            self.rows.popitem(last=False)
            self.stats.evictions += 1
