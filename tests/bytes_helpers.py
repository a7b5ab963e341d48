"""Tiny float64 models and a brute-force enumeration of all tokenizations, for the byte-level tests."""

from __future__ import annotations

import math

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from transplant.bytes.model import wrap


def tiny_byte_lm(folder):
    """A tiny random Llama from the `tiny` fixture, in float64 so sums can be compared to 1e-6."""
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float64)
    return wrap(folder.name, model, AutoTokenizer.from_pretrained(folder), folder)


def cover_sequences(lm, data: bytes) -> list[list[int]]:
    """Every token sequence whose last token reaches past the end of `data` and whose other tokens
    spell a proper prefix of it: the cover of the Byte-Token Representation Lemma, by enumeration."""
    pieces = [(i, tok) for i, tok in enumerate(lm.vocab.tokens) if tok]
    found: list[list[int]] = []

    def extend(seq: list[int], start: int) -> None:
        rest = data[start:]
        for token, piece in pieces:
            if piece.startswith(rest):
                found.append(seq + [token])
            elif rest.startswith(piece):
                extend(seq + [token], start + len(piece))

    extend([], 0)
    return found


def sequence_logp(lm, context: list[int], sequences: list[list[int]]) -> list[float]:
    """log P(sequence | context) for each sequence, one plain forward each (no cache, no tree mask)."""
    out = [0.0] * len(sequences)
    by_length: dict[int, list[int]] = {}
    for i, seq in enumerate(sequences):
        by_length.setdefault(len(seq), []).append(i)
    with torch.inference_mode():
        for rows in by_length.values():
            ids = torch.tensor([context + sequences[i] for i in rows])
            logprobs = torch.log_softmax(lm.model(ids).logits.double(), dim=-1)
            targets = ids[:, len(context):]
            picked = logprobs[:, len(context) - 1 : -1].gather(-1, targets[..., None])[..., 0]
            for row, value in zip(rows, picked.sum(dim=1).tolist(), strict=True):
                out[row] = value
    return out


def brute_force_logp(lm, data: bytes, context: list[int] | None = None) -> float:
    """log P(the text starts with `data`), summed over all tokenizations."""
    if not data:
        return 0.0
    context = context or [lm.start_id]
    logps = sequence_logp(lm, context, cover_sequences(lm, data))
    top = max(logps)
    return top + math.log(sum(math.exp(v - top) for v in logps))


FIM_SPECIALS = ["<|endoftext|>", "<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>"]
CODE = "def add(a, b):\n    return a + b\n\nclass Point:\n    def __init__(self, x, y):\n        self.x = x\n" * 30


def tiny_fim_lm(folder):
    """A tiny byte-level BPE with FIM special tokens and a random float64 Llama over it."""
    import json

    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=330, special_tokens=FIM_SPECIALS, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator([CODE], trainer)
    folder.mkdir(parents=True, exist_ok=True)
    tok.save(str(folder / "tokenizer.json"))
    (folder / "tokenizer_config.json").write_text(json.dumps(
        {"tokenizer_class": "PreTrainedTokenizerFast", "eos_token": "<|endoftext|>"}))
    torch.manual_seed(3)
    config = LlamaConfig(vocab_size=tok.get_vocab_size(), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512)
    LlamaForCausalLM(config).save_pretrained(folder)
    return tiny_byte_lm(folder)
