"""Tiny random models and tokenizers shared by the evaluation tests."""

from pathlib import Path

import torch
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast


def tiny_llama(vocab_size: int, seed: int = 0) -> LlamaForCausalLM:
    # a wide init makes predictions depend on the context, so misplaced windows would show
    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        tie_word_embeddings=True,
        initializer_range=0.3,
    )
    torch.manual_seed(seed)
    return LlamaForCausalLM(config).eval()


def lossy_tokenizer() -> PreTrainedTokenizerFast:
    """Characters a-z and a little punctuation, nothing else: any other character becomes [UNK]."""
    alphabet = ["[UNK]", "[EOS]", *"abcdefghijklmnopqrstuvwxyz .,\n"]
    tokenizer = Tokenizer(models.WordLevel({t: i for i, t in enumerate(alphabet)}, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    tokenizer.decoder = decoders.Fuse()
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, unk_token="[UNK]", eos_token="[EOS]")


def save_tiny_llama(folder: Path, tokenizer, seed: int) -> Path:
    tiny_llama(len(tokenizer), seed).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
