"""The tokenizers a hypernetwork is trained on: one sampled from each batch's own text.

ZeTT's recipe: count substrings (1 to `max_piece_chars` characters) inside the byte-level pre-tokens of
recent batches, score each by frequency times length, multiply the scores by log-normal noise, keep the
top pieces and always all 256 bytes, and build a unigram tokenizer from them. Noise makes every batch
see a different vocabulary, so the network learns tokens in general, not one vocabulary.

The pre-token split is drawn per step too. GPT-2's split alone never yields the pieces that Llama 3,
Qwen2 and GPT-4 tokenizers make across its boundaries (".\n", ")\n", "_name"); a network that never
saw them predicted ".\n", a quarter of the new tokens in English prose under those tokenizers, badly
enough to cost more than every other new token together.

Each sampled vocabulary also holds a random part of the base vocabulary (`base_keep`), as a real
donor vocabulary does (Qwen2.5 shares 39k of SmolLM2's 49k tokens). Without it, 8,192 pieces spread
over nine languages cut English into pieces the base never reads (" ro" "se", "a" "f" "ter"), and
the network learned rows that only work in such text: its ".\n" row, fine in that regime, made
SmolLM2-135M <- Qwen2.5 worse on English than fvt's mean (0.685 against 0.668 bits per byte, and
0.640 with fvt's rows for the five punctuation+newline tokens alone).
"""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass

import numpy as np
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers

from transplant.errors import UserError
from transplant.offline_packs import CL100K_PATTERN
from transplant.vocab import _gpt2_char_to_byte, gpt2_byte_alphabet


@dataclass(frozen=True)
class SamplerConfig:
    vocab_size: int = 8192  # pieces in each sampled tokenizer, the 256 bytes included
    max_piece_chars: int = 15
    noise_std: float = 1.0  # sigma of the log-normal noise on scores
    memory: int = 8  # batches whose counts are pooled
    min_count: int = 2  # substrings seen fewer times in the pool are not candidates (they are mostly noise)
    splits: tuple[str, ...] = ("gpt2", "cl100k")  # pre-token splits, one drawn per step (see SPLITS)
    base_keep: tuple[float, float] = (0.5, 1.0)  # share of the base vocabulary added, drawn per step


@dataclass
class SampledTokenizer:
    tokenizer: Tokenizer
    pieces: list[bytes]  # bytes of each id
    split: str  # the pre-token split it was built with

    def encode(self, texts: list[str]) -> list[list[int]]:
        return [enc.ids for enc in self.tokenizer.encode_batch(texts, add_special_tokens=False)]


def _gpt2_split() -> pre_tokenizers.PreTokenizer:
    return pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)


def _cl100k_split() -> pre_tokenizers.PreTokenizer:
    """Llama 3 / GPT-4: punctuation keeps its newlines, a word takes one leading mark, digits by three."""
    return pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(CL100K_PATTERN), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])


SPLITS = {"gpt2": _gpt2_split, "cl100k": _cl100k_split}


class TokenizerSampler:
    """`base_pieces`: the base vocabulary's tokens as bytes, a random part of which joins every
    sampled vocabulary (none when not given)."""

    def __init__(self, config: SamplerConfig, seed: int, base_pieces: list[bytes] | None = None):
        if config.vocab_size <= 256:
            raise UserError(f"sampled vocabulary size must exceed the 256 bytes, got {config.vocab_size}")
        unknown = [s for s in config.splits if s not in SPLITS]
        if unknown or not config.splits:
            raise UserError(f"pre-token splits {list(config.splits)}: choose among {sorted(SPLITS)}")
        self.config = config
        self.seed = seed
        self._pre = {split: SPLITS[split]() for split in config.splits}
        # per split: counts of the recent batches, and their sum kept up to date instead of re-summed
        self.recent: dict[str, deque[Counter]] = {split: deque() for split in config.splits}
        self.pooled: dict[str, Counter] = {split: Counter() for split in config.splits}
        low, high = config.base_keep
        if not 0.0 <= low <= high <= 1.0:
            raise UserError(f"base_keep must be a range within [0, 1], got {config.base_keep}")
        alphabet = gpt2_byte_alphabet()
        self._bytes = [alphabet[b] for b in range(256)]
        self._base = sorted({"".join(alphabet[b] for b in p) for p in base_pieces or [] if len(p) > 1})

    def observe(self, texts: list[str]) -> None:
        longest = self.config.max_piece_chars
        for split, pre in self._pre.items():
            counts: Counter = Counter()
            for text in texts:
                for word, _ in pre.pre_tokenize_str(text):
                    n = len(word)
                    for i in range(n):
                        for j in range(i + 1, min(n, i + longest) + 1):
                            counts[word[i:j]] += 1
            self._push(split, counts)

    def _push(self, split: str, counts: Counter) -> None:
        recent = self.recent[split]
        recent.append(counts)
        self.pooled[split].update(counts)
        if len(recent) > self.config.memory:
            self.pooled[split].subtract(recent.popleft())
            self.pooled[split] = +self.pooled[split]  # drops the entries that fell to zero

    def state(self) -> dict[str, list[dict[str, int]]]:
        return {split: [dict(c) for c in recent] for split, recent in self.recent.items()}

    def load_state(self, state: dict[str, list[dict[str, int]]]) -> None:
        if not isinstance(state, dict) or set(state) - set(self._pre):
            raise UserError("the checkpoint's sampler memory is from other pre-token splits; start without --resume")
        for split in self._pre:
            self.recent[split].clear()
            self.pooled[split] = Counter()
            for counts in state.get(split, []):
                self._push(split, Counter(counts))

    def sample(self, step: int) -> SampledTokenizer:
        """The tokenizer for `step`: deterministic given the seed, the step and the observed text."""
        rng = np.random.default_rng([self.seed, step])
        split = self.config.splits[int(rng.integers(len(self.config.splits)))]
        pooled = self.pooled[split]
        floor = self.config.min_count
        candidates = sorted(p for p, c in pooled.items() if c >= floor and len(p) > 1)
        keep = self.config.vocab_size - 256
        if candidates:
            freq = np.array([pooled[p] for p in candidates], dtype=np.float64)
            length = np.array([len(p) for p in candidates], dtype=np.float64)
            noisy = np.log(freq * length) + rng.normal(0.0, self.config.noise_std, len(candidates))
            order = np.argsort(-noisy, kind="stable")[:keep]
            chosen = [candidates[i] for i in sorted(order)]
        else:
            chosen = []
        if self._base:
            low, high = self.config.base_keep
            kept = rng.random(len(self._base)) < rng.uniform(low, high)
            chosen = sorted(set(chosen).union(p for p, k in zip(self._base, kept) if k))
        pieces = self._bytes + chosen
        counts = np.array([pooled.get(p, 0) + 1 for p in pieces], dtype=np.float64)
        scores = np.log(counts / counts.sum())
        model = models.Unigram([(p, float(s)) for p, s in zip(pieces, scores)], unk_id=None, byte_fallback=False)
        tokenizer = Tokenizer(model)
        tokenizer.pre_tokenizer = SPLITS[split]()
        tokenizer.decoder = decoders.ByteLevel()
        to_byte = _gpt2_char_to_byte()
        return SampledTokenizer(tokenizer, [bytes(to_byte[c] for c in p) for p in pieces], split)
