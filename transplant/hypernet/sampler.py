"""The tokenizers a hypernetwork is trained on: one sampled from each batch's own text.

ZeTT's recipe: count substrings (1 to `max_piece_chars` characters) inside the byte-level pre-tokens of
recent batches, score each by frequency times length, multiply the scores by log-normal noise, keep the
top pieces and always all 256 bytes, and build a unigram tokenizer from them. Noise makes every batch
see a different vocabulary, so the network learns tokens in general, not one vocabulary.
"""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass

import numpy as np
from tokenizers import Tokenizer, decoders, models, pre_tokenizers

from transplant.errors import UserError
from transplant.vocab import _gpt2_char_to_byte, gpt2_byte_alphabet


@dataclass(frozen=True)
class SamplerConfig:
    vocab_size: int = 8192  # pieces in each sampled tokenizer, the 256 bytes included
    max_piece_chars: int = 15
    noise_std: float = 1.0  # sigma of the log-normal noise on scores
    memory: int = 8  # batches whose counts are pooled
    min_count: int = 2  # substrings seen fewer times in the pool are not candidates (they are mostly noise)


@dataclass
class SampledTokenizer:
    tokenizer: Tokenizer
    pieces: list[bytes]  # bytes of each id

    def encode(self, texts: list[str]) -> list[list[int]]:
        return [enc.ids for enc in self.tokenizer.encode_batch(texts, add_special_tokens=False)]


def _pre_tokenizer() -> pre_tokenizers.PreTokenizer:
    return pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)


class TokenizerSampler:
    def __init__(self, config: SamplerConfig, seed: int):
        if config.vocab_size <= 256:
            raise UserError(f"sampled vocabulary size must exceed the 256 bytes, got {config.vocab_size}")
        self.config = config
        self.seed = seed
        self.recent: deque[Counter] = deque()
        self.pooled: Counter = Counter()  # sum of `recent`, kept up to date instead of re-summed each step
        self._pre = _pre_tokenizer()
        self._bytes = [gpt2_byte_alphabet()[b] for b in range(256)]

    def observe(self, texts: list[str]) -> None:
        counts: Counter = Counter()
        longest = self.config.max_piece_chars
        for text in texts:
            for word, _ in self._pre.pre_tokenize_str(text):
                n = len(word)
                for i in range(n):
                    for j in range(i + 1, min(n, i + longest) + 1):
                        counts[word[i:j]] += 1
        self._push(counts)

    def _push(self, counts: Counter) -> None:
        self.recent.append(counts)
        self.pooled.update(counts)
        if len(self.recent) > self.config.memory:
            self.pooled.subtract(self.recent.popleft())
            self.pooled = +self.pooled  # drops the entries that fell to zero

    def state(self) -> list[dict[str, int]]:
        return [dict(c) for c in self.recent]

    def load_state(self, state: list[dict[str, int]]) -> None:
        self.recent.clear()
        self.pooled = Counter()
        for counts in state:
            self._push(Counter(counts))

    def sample(self, step: int) -> SampledTokenizer:
        """The tokenizer for `step`: deterministic given the seed, the step and the observed text."""
        pooled = self.pooled
        floor = self.config.min_count
        candidates = sorted(p for p, c in pooled.items() if c >= floor and len(p) > 1)
        keep = self.config.vocab_size - 256
        if candidates:
            rng = np.random.default_rng([self.seed, step])
            freq = np.array([pooled[p] for p in candidates], dtype=np.float64)
            length = np.array([len(p) for p in candidates], dtype=np.float64)
            noisy = np.log(freq * length) + rng.normal(0.0, self.config.noise_std, len(candidates))
            order = np.argsort(-noisy, kind="stable")[:keep]
            chosen = [candidates[i] for i in sorted(order)]
        else:
            chosen = []
        pieces = self._bytes + chosen
        counts = np.array([pooled.get(p, 0) + 1 for p in pieces], dtype=np.float64)
        scores = np.log(counts / counts.sum())
        model = models.Unigram([(p, float(s)) for p, s in zip(pieces, scores)], unk_id=None, byte_fallback=False)
        tokenizer = Tokenizer(model)
        tokenizer.pre_tokenizer = _pre_tokenizer()
        tokenizer.decoder = decoders.ByteLevel()
        to_byte = _gpt2_char_to_byte()
        return SampledTokenizer(tokenizer, [bytes(to_byte[c] for c in p) for p in pieces])
