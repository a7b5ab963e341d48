"""Bits-per-byte scoring: windows cover every token once and agree with plain forwards."""

import math
import textwrap
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from tiny_models import lossy_tokenizer, tiny_llama

from transplant.errors import UserError
from transplant.eval.score import TextScore, count_words, plan_windows, score_text, start_token, token_logprobs

TEXT = Path(textwrap.__file__).read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def smol_tokenizer(smollm2_dir):
    return AutoTokenizer.from_pretrained(smollm2_dir)


@pytest.fixture(scope="module")
def tiny(smol_tokenizer):
    return tiny_llama(len(smol_tokenizer))


def shifted(tokenizer, text):
    """(inputs, targets) as score_text builds them: the start token, then the text shifted by one."""
    targets = torch.tensor(tokenizer(text, add_special_tokens=False)["input_ids"])
    return torch.cat([torch.tensor([start_token(tokenizer)[1]]), targets[:-1]]), targets


def manual_logprobs(model, inputs, targets):
    """One plain forward over `inputs`: log p(targets[i] | inputs[..i]) in float64."""
    with torch.no_grad():
        logits = model(inputs[None]).logits[0].double()
    return logits.log_softmax(-1).gather(-1, targets[:, None]).squeeze(-1)


@pytest.mark.parametrize("n", [1, 2, 5, 63, 64, 65, 97, 200, 1000])
@pytest.mark.parametrize("context", [1, 2, 7, 64])
def test_windows_score_every_target_once(n, context):
    for stride in {s for s in (1, 2, context // 2, context - 1, context) if 1 <= s <= context}:
        windows = plan_windows(n, context, stride)
        width = min(context, n)
        scored = torch.zeros(n, dtype=torch.long)
        for w in windows:
            assert 0 <= w.begin <= w.first < w.begin + width <= n
            scored[w.first : w.begin + width] += 1
        assert scored.tolist() == [1] * n
        # every window but the first keeps at least context - stride tokens of context
        assert all(w.first - w.begin >= width - stride for w in windows[1:])


def test_bad_windows_are_user_errors():
    with pytest.raises(UserError):
        plan_windows(10, context=8, stride=9)
    with pytest.raises(UserError):
        plan_windows(10, context=8, stride=0)


def test_text_in_one_window_scores_like_one_forward_for_any_stride(tiny, smol_tokenizer):
    text = TEXT[:600]
    inputs, targets = shifted(smol_tokenizer, text)
    assert len(targets) < 256
    single = -float(manual_logprobs(tiny, inputs, targets).sum())
    for stride in (1, 7, 64, 256):
        score = score_text(tiny, smol_tokenizer, text, context=256, stride=stride)
        assert score.n_tokens == len(targets)
        assert score.nll_nats == pytest.approx(single, rel=1e-5)
        assert score.bits_per_byte == pytest.approx(single / (math.log(2) * len(text.encode())), rel=1e-5)


@pytest.mark.parametrize("stride", [32, 48, 64])
def test_windowed_logprobs_equal_plain_forwards_on_the_same_windows(tiny, smol_tokenizer, stride):
    inputs, targets = shifted(smol_tokenizer, TEXT[:1200])
    got = token_logprobs(tiny, inputs, targets, context=64, stride=stride, batch_size=3)
    expected = torch.full_like(got, math.nan)
    for w in plan_windows(len(targets), 64, stride):
        end = w.begin + 64
        window = manual_logprobs(tiny, inputs[w.begin : end], targets[w.begin : end])
        expected[w.first : end] = window[w.first - w.begin :]
    assert not got.isnan().any() and not expected.isnan().any()
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_windows_change_only_what_the_context_implies(tiny, smol_tokenizer):
    text = TEXT[:1200]
    inputs, targets = shifted(smol_tokenizer, text)
    single = manual_logprobs(tiny, inputs, targets)
    for stride in (32, 64):
        score = score_text(tiny, smol_tokenizer, text, context=64, stride=stride)
        windowed = token_logprobs(tiny, inputs, targets, context=64, stride=stride)
        assert score.n_tokens == len(targets)
        assert score.nll_nats == pytest.approx(-float(windowed.sum()), rel=1e-5)
        # the first window sees what one pass sees; later tokens see less context, and it shows
        torch.testing.assert_close(windowed[:64], single[:64], rtol=1e-5, atol=1e-5)
        assert score.nll_nats != pytest.approx(-float(single.sum()), rel=1e-5)


def test_round_trip_loss_is_flagged():
    tokenizer = lossy_tokenizer()
    model = tiny_llama(len(tokenizer))
    fine = score_text(model, tokenizer, "hello world, again.\n", context=8, stride=4)
    lossy = score_text(model, tokenizer, "héllo world, again.\n", context=8, stride=4)
    assert fine.roundtrip_ok and not lossy.roundtrip_ok
    assert fine.start_token == "eos"  # this tokenizer has no bos


def test_start_token_is_bos_when_there_is_one(tiny, smol_tokenizer):
    score = score_text(tiny, smol_tokenizer, "Hello world.", context=16, stride=8)
    assert score.start_token == "bos" and score.roundtrip_ok


def test_context_beyond_the_model_is_refused(tiny, smol_tokenizer):
    with pytest.raises(UserError, match="context"):
        score_text(tiny, smol_tokenizer, TEXT, context=2048, stride=8)


def test_derived_numbers_follow_their_definitions():
    score = TextScore(
        n_bytes=100, n_tokens=40, n_words=20, nll_nats=70.0, roundtrip_ok=True, context=8, stride=4, start_token="bos"
    )
    assert score.bits_per_byte == pytest.approx(70 / (math.log(2) * 100))
    assert score.token_ppl == pytest.approx(math.exp(70 / 40))
    assert score.tokens_per_byte == pytest.approx(0.4)
    assert score.tokens_per_word == pytest.approx(2.0)


def test_words_are_split_on_spaces_and_cjk_characters():
    assert count_words("Hello,  world\nfoo-bar") == 3
    assert count_words("日本語です abc") == 6
    assert count_words("我认为 Unix 很好") == 6


@pytest.mark.slow
def test_smollm2_bits_per_byte_on_english(smollm2_dir):
    # Measured 0.5304 bits/byte (1977 tokens, 8172 bytes) with context 1024, stride 512, fp32, 2 cores, ~11 s:
    # python -c "...score_text(AutoModelForCausalLM.from_pretrained(d), AutoTokenizer.from_pretrained(d),
    #            load_domains(['en'], max_bytes=8192)['en'])" with d the converted SmolLM2-135M-Instruct folder
    from transplant.eval.domains import load_domains

    model = AutoModelForCausalLM.from_pretrained(smollm2_dir, dtype=torch.float32).eval()
    tokenizer = AutoTokenizer.from_pretrained(smollm2_dir)
    score = score_text(model, tokenizer, load_domains(["en"], max_bytes=8192)["en"])
    assert score.roundtrip_ok and score.n_bytes == 8172
    assert score.bits_per_byte == pytest.approx(0.5304, rel=0.05)
