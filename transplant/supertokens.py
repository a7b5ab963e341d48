"""Supertoken tokenizers: byte-level BPE whose tokens may span word boundaries (TokenAdapt, Sharthak et al. 2025).

Training (the paper's chunked pre-tokenization). Each file's text is cut into chunks of random
length, in characters, drawn from a discrete Gaussian over [chunk_min, chunk_max] (4..23, mode in the
middle, close to SuperTokenizer's published distribution). Each chunk is handed to the BPE trainer as a
sequence of its own: a merge never spans two chunks, exactly as if a separator that is never part of a
token stood between them, without reserving a character that the text might contain. Inside a chunk
nothing is split, so spaces, newlines and punctuation merge with letters: `of the `, `):\\n    `.
With `at_spaces` (our variant) cuts move back to word ends, so tokens start with their space
(` of the`) as in GPT-2-style vocabularies, and more of them exist in a base model's vocabulary.

Inference: no pre-tokenization at all, the whole text is one byte-level word and the learned merges
apply in rank order across it. The random cuts decided which merges exist; repeating them at inference
would make encoding random, and cutting at fixed positions would tokenize the same words differently
depending on where they stand. With no normalizer and all 256 bytes in the alphabet,
decode(encode(x)) == x. (SuperTokenizer itself normalizes NFC, and a variant deletes runs of repeated
characters; both lose text, neither is done here.)
"""

from __future__ import annotations

import bisect
import itertools
import re
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass

import numpy as np
from tokenizers import Tokenizer, pre_tokenizers

from transplant.errors import UserError
from transplant.tokenizer_train import (
    DEFAULT_SPECIAL_TOKENS,
    TextFile,
    TrainingRecord,
    byte_level_bpe,
    read_texts,
    train_bpe,
)

BATCH = 4096  # chunks per item handed to the trainer: per-item overhead stays small


@dataclass(frozen=True)
class Chunking:
    """Chunk lengths in characters: P(n) ∝ exp(-((n - mid) / spread)² / 2) on [min_chars, max_chars],
    mid the centre and spread a quarter of the range (4..23: mean 13.5, sd 4.3).

    `at_spaces` moves each cut back to the last word end inside the drawn length (a whitespace run
    that follows a non-space), when there is one, so chunks start with " word" and tokens keep the
    leading-space convention of GPT-2-style vocabularies; text without spaces is cut as drawn.
    """

    min_chars: int = 4
    max_chars: int = 23
    seed: int = 0
    at_spaces: bool = False

    def __post_init__(self) -> None:
        if self.min_chars < 1 or self.max_chars < self.min_chars:
            raise UserError(
                f"chunk lengths need 1 <= --chunk-min <= --chunk-max, got {self.min_chars} and {self.max_chars}"
            )

    def probabilities(self) -> np.ndarray:
        lengths = np.arange(self.min_chars, self.max_chars + 1)
        mid = (self.min_chars + self.max_chars) / 2
        spread = max((self.max_chars - self.min_chars) / 4, 0.5)
        weights = np.exp(-0.5 * ((lengths - mid) / spread) ** 2)
        return weights / weights.sum()

    def chunks(self, texts: Iterator[str]) -> Iterator[list[str]]:
        """Batches of chunks covering every text exactly, in order."""
        rng = np.random.default_rng(self.seed)
        lengths = np.arange(self.min_chars, self.max_chars + 1)
        p = self.probabilities()
        for text in texts:
            # enough draws to cover the text even if every one is the shortest
            def draw(n: int = len(text) // self.min_chars + 1) -> list[int]:
                return rng.choice(lengths, size=n, p=p).tolist()

            if self.at_spaces:
                # cuts moved back to word ends advance less than drawn: an endless stream of draws
                cuts = self._word_cuts(text, itertools.chain.from_iterable(iter(draw, None)))
            else:
                cuts = self._cuts(text, draw())
            pieces = [text[a:b] for a, b in itertools.pairwise(cuts)]
            for start in range(0, len(pieces), BATCH):
                yield pieces[start : start + BATCH]

    @staticmethod
    def _cuts(text: str, draws: list[int]) -> list[int]:
        cuts = [0, *itertools.accumulate(draws)]
        return [cut for cut in cuts if cut < len(text)] + [len(text)]

    @staticmethod
    def _word_cuts(text: str, draws: Iterator[int]) -> list[int]:
        ends = [m.start() for m in _WORD_END.finditer(text)]
        cuts, pos = [0], 0
        for draw in draws:
            target = pos + draw
            if target >= len(text):
                break
            # the last word end in (pos, target], else the drawn position
            i = bisect.bisect_right(ends, target) - 1
            pos = ends[i] if i >= 0 and ends[i] > pos else target
            cuts.append(pos)
        return cuts + [len(text)]


_WORD_END = re.compile(r"(?<=\S)\s")


def inference_pre_tokenizer() -> pre_tokenizers.PreTokenizer:
    """Bytes to the byte-level alphabet, no splitting: the whole text is one word."""
    return pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)


def train_supertokens(
    files: list[TextFile],
    *,
    vocab_size: int,
    chunking: Chunking = Chunking(),
    special_tokens: Sequence[str] = DEFAULT_SPECIAL_TOKENS,
    min_frequency: int = 2,
    progress: bool = False,
) -> tuple[Tokenizer, TrainingRecord]:
    """A supertoken BPE trained on the files, ready to save: its pipeline does not depend on the chunks."""
    start = time.perf_counter()
    tokenizer = train_bpe(
        byte_level_bpe(inference_pre_tokenizer()), chunking.chunks(read_texts(files, progress)),
        vocab_size=vocab_size, special_tokens=list(special_tokens), min_frequency=min_frequency, progress=progress,
    )
    record = TrainingRecord(
        "supertokens", vocab_size, tokenizer.get_vocab_size(), min_frequency, list(special_tokens), files,
        time.perf_counter() - start, {"chunking": asdict(chunking), "inference_pre_tokenization": "none"},
    )
    return tokenizer, record


def crosses_words(token: str) -> bool:
    """Whether a decoded token holds two words: a word character, whitespace, a word character."""
    return _TWO_WORDS.search(token) is not None


_TWO_WORDS = re.compile(r"\w\s+\w")
