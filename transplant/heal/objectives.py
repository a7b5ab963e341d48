"""Healing losses as pure functions of logits and token positions.

lm: next-token cross-entropy with the transplanted model's own tokenizer.

distill, approximate likelihood matching (after tokenkit's ALM): the base model (teacher, with its own
tokenizer) and the transplant (student, with the donor's) read the same text. Wherever both
tokenizations have a token boundary at the same byte, the bytes between two such boundaries form a
chunk that each model gives a likelihood: the sum of log-probs of its tokens in the chunk. The student
learns to give every chunk the teacher's likelihood. Bytes are the level both models share, so no
token-to-token mapping is needed.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

IGNORE = -100  # target of padding positions


def token_ends(ids: list[int], token_bytes: list[bytes | None], text: bytes) -> np.ndarray | None:
    """UTF-8 byte offset in `text` where each token ends, from the bytes every token contributes to
    decoded text (transplant.vocab); exact even where byte-level BPE splits a character.

    None when the tokens do not spell `text`: a special token inside it, or a normalizer that changed
    it. A SentencePiece word-start marker the text does not begin with (the tokenizer prepends one)
    holds no text byte: its space is dropped.
    """
    pieces = [token_bytes[i] for i in ids]
    if any(piece is None for piece in pieces):
        return None
    joined = b"".join(pieces)
    lead = len(joined) - len(text)
    if lead < 0 or joined[lead:] != text or joined[:lead].strip(b" "):
        return None
    ends = np.cumsum([len(piece) for piece in pieces], dtype=np.int64) - lead
    return np.maximum(ends, 0)


def common_boundaries(ends_a: np.ndarray, ends_b: np.ndarray) -> np.ndarray:
    """Byte offsets (> 0) where both tokenizations end a token, ascending."""
    common = np.intersect1d(ends_a, ends_b)
    return common[common > 0]


def chunk_index(ends: np.ndarray, boundaries: np.ndarray) -> np.ndarray:
    """Chunk of every token: k when the token ends in (boundaries[k-1], boundaries[k]]; tokens after
    the last boundary belong to no chunk (-1)."""
    index = np.searchsorted(boundaries, ends, side="left")
    return np.where(index < len(boundaries), index, -1)


def token_logprobs(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """log p(target) at every position, 0 where the target is IGNORE; same shape as `targets`."""
    flat = -F.cross_entropy(logits.flatten(0, -2).float(), targets.flatten(), ignore_index=IGNORE, reduction="none")
    return flat.view(targets.shape)


def chunk_logprobs(logprobs: torch.Tensor, chunks: torch.Tensor, n_chunks: int) -> torch.Tensor:
    """Sum of token log-probs per chunk; `chunks` holds each token's chunk id (-1: none)."""
    flat, ids = logprobs.flatten(), chunks.flatten()
    keep = ids >= 0
    return torch.zeros(n_chunks, dtype=flat.dtype, device=flat.device).index_add(0, ids[keep], flat[keep])


def lm_loss(logprobs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy (nats) over non-padding positions, from the targets' log-probs
    (token_logprobs, or transplant.heal.head without the whole logits)."""
    return -logprobs.sum() / (targets != IGNORE).sum().clamp_min(1)


def log1mexp(x: torch.Tensor) -> torch.Tensor:
    """log(1 - exp(x)) for x < 0, accurate at both ends (Mächler 2012)."""
    return torch.where(x > -math.log(2), torch.log(-torch.expm1(x)), torch.log1p(-torch.exp(x)))


def alm_loss(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Mean binary KL divergence between the teacher's and the student's probability of each chunk
    (nats), from chunk log-probs: the binary cross-entropy of tokenkit's ALM less its constant part.

    Chosen over the mean |log p_student - log p_teacher| by a measurement (SmolLM2-135M <- Qwen2.5,
    omp k=8, 10 steps of 4 x 256 tokens, lr 1e-2, same windows): bits-per-byte ratio after, binary KL
    vs absolute difference, en 1.188 vs 1.191, ja 2.707 vs 2.729, code 1.910 vs 1.958 (1.283, 3.146
    and 2.269 before).
    """
    # a chunk log-prob of exactly 0 would make log(1 - p) infinite
    s, t = student.clamp(max=-1e-6), teacher.clamp(max=-1e-6)
    p = t.exp()
    return (p * (t - s) + (1 - p) * (log1mexp(t) - log1mexp(s))).mean()
