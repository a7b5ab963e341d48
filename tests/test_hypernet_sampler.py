"""The per-batch tokenizer sampler: bytes always present, sizes as asked, deterministic under a seed."""

import pytest

from tests.conftest import TRAINING_TEXT
from transplant.errors import UserError
from transplant.hypernet.sampler import SamplerConfig, TokenizerSampler

TEXTS = [TRAINING_TEXT[i : i + 300] for i in range(0, 1500, 300)]


def sampled(seed=0, step=0, size=300, texts=TEXTS):
    sampler = TokenizerSampler(SamplerConfig(vocab_size=size), seed=seed)
    sampler.observe(texts)
    return sampler.sample(step)


def test_all_bytes_are_always_pieces():
    tok = sampled()
    assert set(bytes([b]) for b in range(256)) <= set(tok.pieces)


@pytest.mark.parametrize("size", [257, 300, 600])
def test_vocabulary_has_the_asked_size(size):
    tok = sampled(size=size)
    assert len(tok.pieces) == size == tok.tokenizer.get_vocab_size()
    assert len(set(tok.pieces)) == size


def test_small_text_gives_every_candidate_seen_twice_and_no_more():
    tok = sampled(size=5000, texts=["ab ab ab cd"])
    # multi-character substrings of the pre-tokens ab, Ġab, Ġab, Ġcd seen at least twice
    assert sorted(p for p in tok.pieces if len(p) > 1) == [b" a", b" ab", b"ab"]


def test_deterministic_under_a_seed_and_varies_across_seeds_and_steps():
    assert sampled(seed=3).pieces == sampled(seed=3).pieces
    assert sampled(seed=3).pieces != sampled(seed=4).pieces
    assert sampled(step=0).pieces != sampled(step=1).pieces


def test_tokenizes_losslessly_into_its_own_pieces():
    tok = sampled(size=400)
    text = "Über 東京 def f(x):\n\treturn x  # ünïcode 🙂"
    ids = tok.encode([text])[0]
    assert b"".join(tok.pieces[i] for i in ids) == text.encode("utf-8")


def test_frequent_long_substrings_win():
    tok = sampled(size=300, texts=[" transplant" * 40 + " x y z"])
    assert b" transplant" in tok.pieces


def test_state_round_trip_samples_the_same_tokenizer():
    a = TokenizerSampler(SamplerConfig(vocab_size=300), seed=1)
    a.observe(TEXTS)
    b = TokenizerSampler(SamplerConfig(vocab_size=300), seed=1)
    b.load_state(a.state())
    assert a.sample(5).pieces == b.sample(5).pieces


def test_vocabulary_must_exceed_the_bytes():
    with pytest.raises(UserError, match="256"):
        TokenizerSampler(SamplerConfig(vocab_size=256), seed=0)
