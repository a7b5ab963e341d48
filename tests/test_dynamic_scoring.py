"""Scoring through inputs_embeds with an extended vocabulary: m = 0 is the base model exactly, and
m > 0 equals a model whose embedding matrices were resized by hand."""

import math

import pytest
import torch
import torch.nn.functional as F
from transformers import AutoModelForCausalLM, AutoTokenizer
from transplant.eval.score import score_text

from transplant.dynamic.batches import split_text, tokenize_batch
from transplant.dynamic.cache import EmbeddingCache
from transplant.dynamic.embeddings import FvtProvider, load_provider
from transplant.dynamic.merging import TokenTable, merge_batch
from transplant.dynamic.scoring import (
    batch_inputs,
    extended_vocabulary,
    prefill,
    score_batches,
)
from transplant.vocab import load_vocab

TEXT = (
    "The quick brown fox jumps over the lazy dog. Tokenizers split text into pieces;\n"
    "def transplant(base, donor):\n    return base + donor\n"
    "Über den Wolken muss die Freiheit wohl grenzenlos sein. The lazy dog sleeps.\n"
) * 5


def load(folder):
    return AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval(), AutoTokenizer.from_pretrained(folder)


def batches_of(tok, boundary="word", size=6):
    chunks = split_text(TEXT, tok, 40)
    return [tokenize_batch(tok, chunks[i : i + size], boundary) for i in range(0, len(chunks), size)]


@pytest.mark.parametrize("name", ["bl_tied", "bl_untied", "sp_untied"])
def test_no_merge_reproduces_score_text_exactly(tiny, name):
    model, tok = load(tiny[name])
    batches = batches_of(tok)
    table = TokenTable.from_vocab(load_vocab(tiny[name]))
    score = score_batches(model, batches, table, EmbeddingCache(load_provider(model)), 0)
    chunks = [text for batch in batches for text in batch.texts]
    base = [score_text(model, tok, text, context=256, stride=256) for text in chunks]
    assert score.nll_nats == sum(s.nll_nats for s in base)
    assert score.n_bytes == sum(s.n_bytes for s in base) == len(TEXT.encode())
    assert score.tokens == score.base_tokens == sum(s.n_tokens for s in base)
    assert score.merges_done == 0 and score.new_tokens == 0


def resized_nll(model, dynamic, rows):
    """The same NLL from a deep copy of the model with the new rows written into resized matrices."""
    import copy

    base = dynamic.table.base_size
    clone = copy.deepcopy(model)
    clone.resize_token_embeddings(base + len(rows))
    with torch.no_grad():
        clone.get_input_embeddings().weight[base:] = rows[:, 0]
        clone.get_output_embeddings().weight[base:] = rows[:, -1]
    total = 0.0
    with torch.inference_mode():
        for seq in batch_inputs(dynamic, EmbeddingCache(FvtProvider(model.get_input_embeddings().weight,
                                                                     model.get_output_embeddings().weight))).ids:
            logits = clone(input_ids=seq[None, :-1]).logits[0]
            total += F.cross_entropy(logits.double(), seq[1:], reduction="sum").item()
    return total


@pytest.mark.parametrize("name", ["bl_tied", "bl_untied"])
def test_merged_batches_score_like_a_resized_model(tiny, name):
    model, tok = load(tiny[name])
    batches = batches_of(tok)[:1]
    table = TokenTable.from_vocab(load_vocab(tiny[name]))
    cache = EmbeddingCache(load_provider(model))
    score = score_batches(model, batches, table, cache, 15)
    assert score.merges_done == 15 and score.reduction > 0.15 and score.new_tokens > 5
    dynamic = merge_batch(batches[0], table, 15)
    rows = batch_inputs(dynamic, cache).rows
    assert rows.shape[1] == (1 if name == "bl_tied" else 2)
    expected = resized_nll(model, dynamic, rows)
    assert math.isclose(score.nll_nats, expected, rel_tol=1e-5)


def test_extended_vocabulary_restores_the_model(tiny):
    model, _ = load(tiny["bl_tied"])
    emb, head = model.get_input_embeddings(), model.get_output_embeddings()
    before = (emb.weight, head.weight, emb.weight.shape)
    rows = torch.zeros(3, 1, emb.weight.shape[1])
    with extended_vocabulary(model, rows):
        assert emb.weight.shape[0] == before[2][0] + 3 and head.weight.shape[0] == before[2][0] + 3
    assert emb.weight is before[0] and head.weight is before[1] and head.weight is emb.weight


def test_prefill_matches_one_sequence_at_a_time(tiny):
    model, tok = load(tiny["bl_untied"])
    batch = batches_of(tok)[0]
    table = TokenTable.from_vocab(load_vocab(tiny["bl_untied"]))
    cache = EmbeddingCache(load_provider(model))
    static = prefill(model, [torch.from_numpy(seq) for seq in batch.ids])
    inputs = batch_inputs(merge_batch(batch, table, 20), cache)
    dynamic = prefill(model, inputs.ids, inputs.rows)
    assert dynamic.shape == (len(batch.ids), table.base_size + len(inputs.rows))
    with torch.inference_mode():
        for row, seq in enumerate(batch.ids):
            alone = model(input_ids=torch.from_numpy(seq)[None]).logits[0, -1]
            torch.testing.assert_close(static[row], alone, atol=2e-5, rtol=1e-4)
        with extended_vocabulary(model, inputs.rows):
            for row, seq in enumerate(inputs.ids):
                embeds = model.get_input_embeddings()(seq[None])
                alone = model(inputs_embeds=embeds).logits[0, -1]
                torch.testing.assert_close(dynamic[row], alone, atol=2e-5, rtol=1e-4)


@pytest.fixture(scope="module")
def tiny_gpt2(tiny, tmp_path_factory):
    """Another architecture (learned positions, Conv1D blocks, `transformer.wte`) on the same tokenizer."""
    import shutil

    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(3)
    folder = tmp_path_factory.mktemp("gpt2")
    vocab = AutoTokenizer.from_pretrained(tiny["tok_bl"])
    config = GPT2Config(vocab_size=len(vocab), n_embd=32, n_layer=2, n_head=4, n_positions=256,
                        bos_token_id=vocab.bos_token_id, eos_token_id=vocab.eos_token_id)
    GPT2LMHeadModel(config).save_pretrained(folder)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(tiny["tok_bl"] / name, folder / name)
    return folder


def test_another_architecture_scores_exactly_at_m0_and_like_a_resized_model(tiny_gpt2):
    model, tok = load(tiny_gpt2)
    batches = batches_of(tok)[:1]
    table = TokenTable.from_vocab(load_vocab(tiny_gpt2))
    cache = EmbeddingCache(load_provider(model))
    m0 = score_batches(model, batches, table, cache, 0)
    assert m0.nll_nats == sum(score_text(model, tok, t, context=256, stride=256).nll_nats for t in batches[0].texts)
    merged = score_batches(model, batches, table, cache, 10)
    dynamic = merge_batch(batches[0], table, 10)
    expected = resized_nll(model, dynamic, batch_inputs(dynamic, cache).rows)
    assert merged.reduction > 0.1 and math.isclose(merged.nll_nats, expected, rel_tol=1e-5)
