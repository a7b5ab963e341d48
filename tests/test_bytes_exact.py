"""Exactness of byte-level probabilities on tiny vocabularies, against brute-force enumeration."""

import math

import numpy as np
import pytest
from bytes_helpers import brute_force_logp, sequence_logp, tiny_byte_lm

from transplant.bytes.likelihood import END, score_bytes
from transplant.bytes.next_byte import ByteStream

TEXTS = [b"The quick", b"def f(x", "Über 東".encode()]


@pytest.fixture(scope="module")
def bl(tiny):
    return tiny_byte_lm(tiny["bl_tied"])


@pytest.fixture(scope="module")
def sp(tiny):
    return tiny_byte_lm(tiny["sp_untied"])


@pytest.mark.parametrize("data", [b"The qu", b"def f("])
def test_stream_matches_brute_force_at_every_step(bl, data):
    stream = ByteStream(bl, exact=True)
    for n, byte in enumerate(data):
        raw = stream.raw()
        assert math.isclose(np.logaddexp.reduce(raw), brute_force_logp(bl, data[:n]), abs_tol=1e-6)
        assert math.isclose(raw[byte], brute_force_logp(bl, data[: n + 1]), abs_tol=1e-6)
        assert abs(np.exp(stream.distribution()).sum() - 1.0) < 1e-5
        stream.push(byte)


@pytest.mark.parametrize("data", TEXTS)
def test_score_equals_brute_force_and_beats_canonical(bl, data):
    exact = score_bytes(bl, data, exact=True, keep_dists=True)
    assert math.isclose(exact.logprobs.sum(), brute_force_logp(bl, data), abs_tol=1e-6)
    assert np.allclose(np.exp(exact.dists).sum(axis=1), 1.0, atol=1e-5)
    assert np.allclose(exact.dists[np.arange(len(data)), list(data)], exact.logprobs, atol=1e-9)
    canonical = bl.encode(data.decode())
    (token_level,) = sequence_logp(bl, [bl.start_id], [canonical])
    assert exact.logprobs.sum() >= token_level
    assert math.isclose(exact.canonical_logp, token_level, abs_tol=1e-6)
    pruned = score_bytes(bl, data)
    assert token_level - 1e-9 <= pruned.logprobs.sum() <= exact.logprobs.sum() + 1e-9


def test_sentencepiece_byte_fallback_counts_every_spelling(sp):
    # "東" has no piece of its own: only byte-fallback pieces spell it, next to ordinary pieces
    data = "a 東".encode()
    exact = score_bytes(sp, data, exact=True)
    assert math.isclose(exact.logprobs.sum(), brute_force_logp(sp, data), abs_tol=1e-6)
    stream = ByteStream(sp, exact=True)
    stream.extend(data[:3])
    assert math.isclose(np.logaddexp.reduce(stream.raw()), brute_force_logp(sp, data[:3]), abs_tol=1e-6)


def test_context_tokens_condition_every_byte(bl):
    data = b"fox"
    context = [bl.start_id, *bl.encode("The quick brown")]
    exact = score_bytes(bl, data, context=context, exact=True)
    assert math.isclose(exact.logprobs.sum(), brute_force_logp(bl, data, context), abs_tol=1e-6)
    assert not math.isclose(exact.logprobs.sum(), brute_force_logp(bl, data), abs_tol=1e-3)


def test_end_outcome_is_special_token_mass(bl):
    stream = ByteStream(bl, exact=True)
    stream.extend(b"The")
    # after a completed token, a special token may come next; mid-token it may not
    assert stream.distribution()[END] > -np.inf
    stream.push(ord(" "))
    assert np.isfinite(stream.distribution()[END])


def test_empty_text_is_a_user_error(bl):
    from transplant.errors import UserError

    with pytest.raises(UserError, match="empty"):
        score_bytes(bl, b"")


def test_mass_pruning_never_leaves_a_byte_unspellable(sp):
    # this vocabulary has pieces across spaces ("The quick br"): with the threshold, the only paths
    # reaching the final newline were cut once; the scorer must then rescore without it
    score = score_bytes(sp, b"The quick brown fox\n")
    assert np.all(np.isfinite(score.logprobs)) and score.logprobs.sum() < 0
