"""SmolLM2-135M with dynamic tokenization on real text (slow tier).

Bounds come from measured values (8 chunks x 128 tokens of the `en` domain, word boundaries, fvt
embeddings; see docs/readme/dynamic.md), with margin."""

import numpy as np
import pytest
import torch
from pair_merge_reference import ReferenceState
from transplant.eval.domains import load_domains
from transplant.eval.score import score_text

from transplant.dynamic.cache import EmbeddingCache
from transplant.dynamic.embeddings import load_provider
from transplant.dynamic.evaluate import DynamicEvalOptions, chunk_batches, load_model
from transplant.dynamic.merging import TokenTable, merge_batch
from transplant.dynamic.scoring import score_batches
from transplant.vocab import load_vocab

pytestmark = pytest.mark.slow

# measured 2026-11-23: 8 chunks x 128 tokens of `en`, m = 30 -> 12.3% shorter, +49.0% bits-per-byte
MEASURED_REDUCTION_30 = 0.123
MEASURED_CHANGE_30 = 0.490


@pytest.fixture(scope="module")
def smollm2(smollm2_dir):
    torch.manual_seed(0)
    model, tokenizer = load_model(smollm2_dir)
    return model, tokenizer, load_vocab(smollm2_dir)


def batch_of(tokenizer, domain, n, chunk_tokens, boundary="word"):
    text = load_domains([domain], max_bytes=64 * 1024)[domain]
    options = DynamicEvalOptions(merges=[0], batch_size=n, chunk_tokens=chunk_tokens, boundary=boundary)
    return chunk_batches(tokenizer, text, options)[0]


def test_m0_is_the_base_model_exactly_and_merges_cost_little(smollm2):
    model, tokenizer, vocab = smollm2
    batch = batch_of(tokenizer, "en", 8, 128)
    table, cache = TokenTable.from_vocab(vocab), EmbeddingCache(load_provider(model))
    base = sum(score_text(model, tokenizer, text).nll_nats for text in batch.texts)
    m0 = score_batches(model, [batch], table, cache, 0)
    assert m0.nll_nats == base
    m30 = score_batches(model, [batch], table, cache, 30)
    assert m30.merges_done == 30
    change = m30.bits_per_byte / m0.bits_per_byte - 1
    assert MEASURED_REDUCTION_30 - 0.02 <= m30.reduction <= MEASURED_REDUCTION_30 + 0.02
    assert change <= MEASURED_CHANGE_30 + 0.03


@pytest.mark.parametrize("domain", ["en", "code", "de"])
def test_kernel_equals_reference_on_a_real_batch(smollm2, domain):
    _, tokenizer, vocab = smollm2
    batch = batch_of(tokenizer, domain, 32, 256)
    kernel = merge_batch(batch, TokenTable.from_vocab(vocab), 200)
    reference = merge_batch(batch, TokenTable.from_vocab(vocab), 200, state=ReferenceState(batch.ids, batch.joinable))
    assert kernel.merges == reference.merges and len(kernel.merges) == 200
    for a, b in zip(kernel.ids, reference.ids, strict=True):
        np.testing.assert_array_equal(a, b)


def test_pretoken_merges_stay_inside_pre_tokens(smollm2):
    from transplant.vocab import gpt2_byte_alphabet

    _, tokenizer, vocab = smollm2
    batch = batch_of(tokenizer, "code", 32, 256, boundary="pretoken")
    table = TokenTable.from_vocab(vocab)
    dyn = merge_batch(batch, table, 200)
    to_byte = {c: b for b, c in gpt2_byte_alphabet().items()}
    pre = tokenizer.backend_tokenizer.pre_tokenizer
    pieces = {bytes(to_byte[c] for c in piece) for text in batch.texts for piece, _ in pre.pre_tokenize_str(text)}
    new = [table.bytes_of(int(t)) for t in dyn.new_ids()]
    assert new, "pretoken boundaries left nothing to merge"
    for data in new:
        assert any(data in piece for piece in pieces), data
