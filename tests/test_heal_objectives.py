"""Healing losses: byte offsets of tokens, chunks both tokenizations delimit, chunk likelihoods."""

import numpy as np
import pytest
import torch

from transplant.heal.objectives import (
    IGNORE,
    alm_loss,
    chunk_index,
    chunk_logprobs,
    common_boundaries,
    lm_loss,
    token_ends,
    token_logprobs,
)


def test_token_ends_split_character_and_word_start_marker():
    # byte-level BPE may split "é" (2 bytes) over two tokens: ends fall inside the character
    assert token_ends([0, 1, 2], [b"caf", b"\xc3", b"\xa9"], "café".encode()).tolist() == [3, 4, 5]
    # a SentencePiece tokenizer prepends a word-start marker the text does not hold
    assert token_ends([0, 1], [b" ab", b"c"], b"abc").tolist() == [2, 3]
    assert token_ends([0, 1, 2], [b" ", b"ab", b"c"], b"abc").tolist() == [0, 2, 3]


def test_token_ends_refuses_tokens_that_do_not_spell_the_text():
    assert token_ends([0, 1], [b"ab", None], b"ab") is None  # a special token inside the text
    assert token_ends([0], [b"e\xcc\x81"], "é".encode()) is None  # a normalizer changed the text
    assert token_ends([0], [b"xab"], b"ab") is None  # extra bytes that are not a word-start space


def test_chunks_on_hand_made_offsets():
    # text of 11 bytes; A ends tokens at 2 5 6 9 11, B at 3 5 9 10
    a, b = np.array([2, 5, 6, 9, 11]), np.array([3, 5, 9, 10])
    bounds = common_boundaries(a, b)
    assert bounds.tolist() == [5, 9]
    assert chunk_index(a, bounds).tolist() == [0, 0, 1, 1, -1]  # the token ending at 11 is past the last boundary
    assert chunk_index(b, bounds).tolist() == [0, 0, 1, -1]
    # a zero-length word-start token joins the first chunk; offset 0 is never a boundary
    assert common_boundaries(np.array([0, 2, 4]), np.array([0, 4])).tolist() == [4]
    assert chunk_index(np.array([0, 2, 4]), np.array([4])).tolist() == [0, 0, 0]


def test_chunk_logprobs_sum_per_chunk_and_skip_unassigned():
    logprobs = torch.tensor([[-1.0, -2.0, -0.5, -4.0]])
    chunks = torch.tensor([[0, 0, 1, -1]])
    assert chunk_logprobs(logprobs, chunks, 2).tolist() == [-3.0, -0.5]


def test_token_logprobs_and_lm_loss_ignore_padding():
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 7)
    targets = torch.tensor([[1, 2, IGNORE], [3, IGNORE, IGNORE]])
    lp = token_logprobs(logits, targets)
    expected = torch.log_softmax(logits, -1)
    assert lp[0, 0] == pytest.approx(expected[0, 0, 1].item(), abs=1e-6)
    assert lp[1, 0] == pytest.approx(expected[1, 0, 3].item(), abs=1e-6)
    assert lp[0, 2] == 0 and lp[1, 1] == 0
    ce = torch.nn.functional.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=IGNORE)
    assert lm_loss(lp, targets).item() == pytest.approx(ce.item(), abs=1e-6)


def test_alm_loss_is_a_binary_kl_zero_only_at_the_teacher():
    teacher = torch.tensor([-0.1, -2.0, -12.0])
    assert alm_loss(teacher.clone(), teacher).item() == pytest.approx(0, abs=1e-7)
    student = torch.tensor([-0.5, -1.0, -11.0], requires_grad=True)
    loss = alm_loss(student, teacher)
    loss.backward()
    p, q = teacher.exp(), student.detach().exp()
    by_hand = (p * (p / q).log() + (1 - p) * ((1 - p) / (1 - q)).log()).mean()
    assert loss.item() == pytest.approx(by_hand.item(), rel=1e-5)
    # the gradient pulls every chunk toward the teacher: up where the student is too low, down where too high
    assert student.grad[0] < 0 and student.grad[1] > 0 and student.grad[2] > 0
    # a chunk of log-prob 0 (certain) stays finite
    assert torch.isfinite(alm_loss(torch.tensor([0.0]), torch.tensor([-0.5])))


def test_distill_windows_give_both_models_the_same_bytes_per_chunk(tiny):
    """On real tokenizers of different families: each chunk spells the same bytes on both sides."""
    from conftest import TRAINING_TEXT

    from transplant.heal.tasks import DistillTask, Reader

    student, teacher = Reader.from_folder(tiny["tok_sp"]), Reader.from_folder(tiny["tok_bl"])
    task = DistillTask(student, teacher, None, batch_size=1, seq_len=64)
    windows = [TRAINING_TEXT[i : i + 300] for i in (0, 37, 151, 290)]
    checked = 0
    for text in windows:
        s_ids, s_chunks, t_ids, t_chunks, n_chunks, n_bytes = task._cut(text)
        assert len(s_ids) <= 64 and len(t_ids) <= 64 and n_chunks >= 1
        for k in range(n_chunks):
            s = b"".join(student.token_bytes[i] for i, c in zip(s_ids, s_chunks) if c == k)
            t = b"".join(teacher.token_bytes[i] for i, c in zip(t_ids, t_chunks) if c == k)
            if k == 0 and not text.startswith(" "):
                s = s.removeprefix(b" ")  # the word-start marker the SentencePiece side prepends
            assert s == t
            checked += 1
        spelled = b"".join(teacher.token_bytes[i] for i in t_ids)
        assert spelled == text.encode()[:n_bytes]
    assert checked >= 4
