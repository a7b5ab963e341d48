"""Texts into base-tokenized batches: chunks of a long text, token ids, merge flags.

A long text is cut into chunks of at most `chunk_tokens` base tokens, at a line end where one falls in
the second half of the chunk, so that each chunk is a text of its own. Every chunk is tokenized
alone, without special tokens, and starts with the tokenizer's bos (else eos): exactly what
`transplant.eval.score.score_text` scores, so the base model's numbers on the chunks are comparable
one to one.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from transplant.dynamic.boundaries import joinable_gaps
from transplant.errors import UserError
from transplant.eval.score import start_token


@dataclass
class TokenBatch:
    """Base tokenization of a batch of texts, before any merge."""

    texts: list[str]
    ids: list[np.ndarray]  # int64 per sequence, the start token first
    joinable: list[np.ndarray]  # uint8 per token: may merge with the next token
    boundary: str

    @property
    def n_bytes(self) -> int:
        return sum(len(text.encode("utf-8")) for text in self.texts)

    @property
    def n_text_tokens(self) -> int:
        """Tokens that get scored: all but each sequence's start token."""
        return sum(len(seq) - 1 for seq in self.ids)


def split_text(text: str, tokenizer, chunk_tokens: int) -> list[str]:
    """Consecutive chunks of `text` of at most `chunk_tokens` tokens each (by the whole text's
    tokenization), ending at a line end when one lies in the chunk's second half."""
    if chunk_tokens < 2:
        raise UserError("chunks need at least 2 tokens")
    spans = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True, verbose=False)["offset_mapping"]
    chunks, first = [], 0
    while first < len(spans):
        last = min(first + chunk_tokens, len(spans))
        if last < len(spans):
            for k in range(last - 1, first + chunk_tokens // 2 - 1, -1):
                if text[spans[k][0] : spans[k][1]].endswith("\n"):
                    last = k + 1
                    break
            # a cut inside a character (byte-level pieces of one character share their span) would
            # leave half a character on each side
            while last > first + 1 and spans[last][0] < spans[last - 1][1]:
                last -= 1
        begin = spans[first][0] if first else 0
        end = spans[last][0] if last < len(spans) else len(text)
        chunks.append(text[begin:end])
        first = last
    return [chunk for chunk in chunks if chunk]


def special_ids(tokenizer) -> set[int]:
    """Ids that never merge: the declared special tokens and every added token marked special
    (chat markers are often only the latter)."""
    added = getattr(tokenizer, "added_tokens_decoder", {}) or {}
    return set(tokenizer.all_special_ids) | {i for i, token in added.items() if getattr(token, "special", False)}


def tokenize_batch(tokenizer, texts: list[str], boundary: str) -> TokenBatch:
    """Base token ids of every text, a start token first, with the gaps where merges may happen."""
    if not texts:
        raise UserError("a batch needs at least one text")
    _, start = start_token(tokenizer)
    specials = special_ids(tokenizer)
    encoded = tokenizer(texts, add_special_tokens=False, return_offsets_mapping=True, verbose=False)
    ids, joinable = [], []
    for i, text in enumerate(texts):
        tokens = list(encoded["input_ids"][i])
        if not tokens:
            raise UserError(f"text {i} of the batch tokenizes to nothing")
        flags = joinable_gaps(
            text, list(encoded["offset_mapping"][i]), encoded.word_ids(i), [t in specials for t in tokens], boundary
        )
        ids.append(np.array([start, *tokens], np.int64))
        joinable.append(np.concatenate([np.zeros(1, np.uint8), flags]))
    return TokenBatch(texts=list(texts), ids=ids, joinable=joinable, boundary=boundary)
