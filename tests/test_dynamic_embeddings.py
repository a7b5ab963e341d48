"""FVT rows for merged tokens, the provider interface, and the bounded cache."""

import pytest
import torch

from transplant.dynamic.cache import EmbeddingCache
from transplant.dynamic.embeddings import (
    EmbeddingProvider,
    FvtProvider,
    NewToken,
    load_provider,
)
from transplant.errors import UserError

TOKENS = [NewToken(b"ab", (1, 2)), NewToken(b"abc", (1, 2, 3)), NewToken(b"ca", (3, 1))]


def matrices():
    gen = torch.Generator().manual_seed(0)
    return torch.randn(6, 4, generator=gen), torch.randn(6, 4, generator=gen)


def test_fvt_tied_is_the_mean_of_the_pieces():
    inputs, _ = matrices()
    provider = FvtProvider(inputs)
    assert isinstance(provider, EmbeddingProvider) and provider.n_heads == 1
    rows = provider.embed(TOKENS)
    assert rows.shape == (3, 1, 4)
    for row, token in zip(rows, TOKENS, strict=True):
        torch.testing.assert_close(row[0], inputs[list(token.pieces)].mean(0))


def test_fvt_untied_averages_each_side_and_the_shift_moves_only_outputs():
    inputs, outputs = matrices()
    shift = torch.arange(4.0)
    rows = FvtProvider(inputs, outputs, shift).embed(TOKENS)
    assert rows.shape == (3, 2, 4)
    torch.testing.assert_close(rows[1, 0], inputs[[1, 2, 3]].mean(0))
    torch.testing.assert_close(rows[1, 1], outputs[[1, 2, 3]].mean(0) + shift)
    tied_shifted = FvtProvider(inputs, None, shift).embed(TOKENS)
    assert tied_shifted.shape == (3, 2, 4)
    torch.testing.assert_close(tied_shifted[0, 0], inputs[[1, 2]].mean(0))
    torch.testing.assert_close(tied_shifted[0, 1], inputs[[1, 2]].mean(0) + shift)
    assert FvtProvider(inputs).embed([]).shape == (0, 1, 4)


class CountingProvider:
    n_heads = 1

    def __init__(self):
        self.inner = FvtProvider(matrices()[0])
        self.calls = []

    def embed(self, tokens):
        self.calls.append([t.data for t in tokens])
        return self.inner.embed(tokens)


def test_cache_computes_only_misses_and_evicts_the_least_recent():
    provider = CountingProvider()
    cache = EmbeddingCache(provider, max_entries=2)
    first = cache.embed(TOKENS[:2] + TOKENS[:1])
    assert provider.calls == [[b"ab", b"abc"]]
    torch.testing.assert_close(first[2], first[0])
    cache.embed([TOKENS[0]])  # "ab" is now the most recent
    cache.embed([TOKENS[2]])  # evicts "abc"
    assert list(cache.rows) == [b"ab", b"ca"]
    cache.embed([TOKENS[1], TOKENS[0]])
    assert provider.calls[-1] == [b"abc"]
    assert (cache.stats.hits, cache.stats.misses, cache.stats.evictions) == (2, 4, 2)


def test_cache_serves_more_tokens_than_it_holds():
    provider = CountingProvider()
    cache = EmbeddingCache(provider, max_entries=1)
    cache.embed([TOKENS[0]])
    rows = cache.embed(TOKENS)
    torch.testing.assert_close(rows, provider.inner.embed(TOKENS))
    assert len(cache) == 1
    with pytest.raises(ValueError):
        EmbeddingCache(provider, max_entries=0)


def test_hypernetwork_provider_needs_its_folder_and_the_base_vocabulary(tiny, tmp_path):
    from transformers import AutoModelForCausalLM

    from transplant.vocab import load_vocab

    model = AutoModelForCausalLM.from_pretrained(tiny["bl_tied"])
    with pytest.raises(UserError, match="needs the base vocabulary"):
        load_provider(model, hypernet=tmp_path)
    with pytest.raises(UserError, match="not a hypernetwork folder"):
        load_provider(model, hypernet=tmp_path, vocab=load_vocab(tiny["bl_tied"]))
