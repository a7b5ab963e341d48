"""resolve(): every kind of spec becomes a folder AutoTokenizer loads unchanged, or a one-line UserError."""

import json
import time

import numpy as np
import pytest
import torch
from tokenizers import AddedToken, Tokenizer, pre_tokenizers
from tokenizers.models import WordLevel
from transformers import AutoModelForCausalLM, AutoTokenizer, GPT2Config, GPT2LMHeadModel

from transplant.errors import UserError
from transplant.offline_packs import OFFLINE_TOKENIZERS, PACKS
from transplant.sources import ALIASES, Source, list_known, resolve


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    """Folders built from the test's own files go to a throwaway cache."""
    monkeypatch.setenv("TRANSPLANT_CACHE", str(tmp_path / "cache"))


def _tiny_tokenizer() -> Tokenizer:
    words = ["<unk>", "<s>", "</s>", "hello", "world", "foo", "bar", "baz"]
    tokenizer = Tokenizer(WordLevel({word: index for index, word in enumerate(words)}, unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.add_special_tokens([AddedToken("<s>", special=True), AddedToken("</s>", special=True)])
    return tokenizer


@pytest.fixture
def tokenizer_json(tmp_path):
    path = tmp_path / "tok" / "tokenizer.json"
    path.parent.mkdir()
    _tiny_tokenizer().save(str(path))
    return path


def _tiny_model(folder, *, pickle: bool, tokenizer_class: str | None = "TokenizersBackend") -> GPT2LMHeadModel:
    """A one-layer GPT-2 with tied embeddings, saved as safetensors or as a pickle state dict."""
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=8, n_positions=16, n_embd=8, n_layer=1, n_head=2))
    if pickle:
        model.config.save_pretrained(folder)
        torch.save(model.state_dict(), folder / "pytorch_model.bin")
    else:
        model.save_pretrained(folder)
    _tiny_tokenizer().save(str(folder / "tokenizer.json"))
    if tokenizer_class is not None:
        config = {"tokenizer_class": tokenizer_class, "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"}
        (folder / "tokenizer_config.json").write_text(json.dumps(config))
    return model


def _config(folder) -> dict:
    return json.loads((folder / "tokenizer_config.json").read_text())


def test_unknown_name_suggests_close_ones():
    with pytest.raises(UserError, match="did you mean mistral-v3"):
        resolve("mistral-v4", need_weights=False)
    with pytest.raises(UserError, match="smollm2-135m"):
        resolve("smollm-135m", need_weights=True)


def test_missing_path_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="no such file or folder"):
        resolve(str(tmp_path / "nope" / "model.gguf"), need_weights=True)
    with pytest.raises(UserError, match="no such file or folder"):
        resolve("./not/here/at/all", need_weights=False)


def test_hub_id_offline_fails_fast(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    started = time.monotonic()
    with pytest.raises(UserError, match="cannot download transplant-tests/no-such-model: HF_HUB_OFFLINE") as error:
        resolve("transplant-tests/no-such-model", need_weights=True)
    assert "smollm2-135m" in str(error.value) and "\n" not in str(error.value)
    with pytest.raises(UserError, match="openai-community/gpt2"):
        resolve("gpt2", need_weights=False)
    assert time.monotonic() - started < 10


def test_tokenizer_json_file_becomes_tokenizer_folder(tokenizer_json):
    source = resolve(str(tokenizer_json), need_weights=False)
    assert isinstance(source, Source)
    assert (source.spec, source.name, source.has_weights) == (str(tokenizer_json), "tok", False)
    assert _config(source.path)["tokenizer_class"] == "TokenizersBackend"
    tokenizer = AutoTokenizer.from_pretrained(source.path)
    assert tokenizer("hello world <s>", add_special_tokens=False)["input_ids"] == [3, 4, 1]
    assert (tokenizer.bos_token, tokenizer.eos_token, tokenizer.unk_token) == ("<s>", "</s>", "<unk>")
    assert resolve(str(tokenizer_json), need_weights=False).path == source.path


def test_tokenizer_only_refused_when_weights_needed(tokenizer_json):
    with pytest.raises(UserError, match="tokenizer-only"):
        resolve(str(tokenizer_json), need_weights=True)
    with pytest.raises(UserError, match="tokenizer-only"):
        resolve(str(tokenizer_json.parent), need_weights=True)


def test_pickle_weights_need_opt_in(tmp_path):
    folder = tmp_path / "pickled"
    folder.mkdir()
    original = _tiny_model(folder, pickle=True)
    with pytest.raises(UserError, match="pickle"):
        resolve(str(folder), need_weights=True)
    assert not resolve(str(folder), need_weights=False).has_weights

    source = resolve(str(folder), need_weights=True, allow_pickle=True)
    assert source.has_weights and source.path != folder
    assert not list(source.path.glob("*.bin"))
    loaded = AutoModelForCausalLM.from_pretrained(source.path)
    for key, value in original.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key


def test_model_folder_with_its_own_tokenizer_class_gets_a_backend_config(tmp_path):
    folder = tmp_path / "Tiny-Model"
    folder.mkdir()
    _tiny_model(folder, pickle=False, tokenizer_class="LlamaTokenizer")
    source = resolve(str(folder), need_weights=True)
    assert source.has_weights and source.name == "tiny-model" and source.path != folder
    assert (source.path / "model.safetensors").resolve() == (folder / "model.safetensors").resolve()
    assert _config(source.path)["tokenizer_class"] == "TokenizersBackend"
    assert _config(folder)["tokenizer_class"] == "LlamaTokenizer"
    tokenizer = AutoTokenizer.from_pretrained(source.path)
    assert tokenizer("foo bar baz", add_special_tokens=False)["input_ids"] == [5, 6, 7]
    assert tokenizer.eos_token == "</s>"


def test_model_folder_that_already_loads_is_used_in_place(tmp_path):
    folder = tmp_path / "ready"
    folder.mkdir()
    _tiny_model(folder, pickle=False)
    source = resolve(str(folder), need_weights=True)
    assert source.path == folder.resolve() and source.has_weights


def _write_tiny_gguf(path) -> None:
    """A one-layer Llama GGUF with a byte-level BPE vocabulary that names SmolLM's pre-tokenizer."""
    import gguf

    vocab = ["<|endoftext|>", "<s>", *[chr(c) for c in range(33, 127)], "Ġ", "he", "ll", "hell", "hello", "Ġw"]
    size, width, hidden = len(vocab), 8, 16
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_block_count(1)
    writer.add_context_length(64)
    writer.add_embedding_length(width)
    writer.add_feed_forward_length(hidden)
    writer.add_head_count(2)
    writer.add_head_count_kv(2)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_rope_dimension_count(width // 2)
    writer.add_vocab_size(size)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("smollm")
    writer.add_token_list(vocab)
    writer.add_token_types([3, 3] + [1] * (size - 2))
    writer.add_token_merges(["h e", "l l", "he ll", "hell o", "Ġ w"])
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(0)
    rng = np.random.default_rng(0)
    shapes = {"token_embd": (size, width), "output": (size, width), "output_norm": (width,)}
    for name in ("attn_q", "attn_k", "attn_v", "attn_output"):
        shapes[f"blk.0.{name}"] = (width, width)
    shapes.update({"blk.0.ffn_gate": (hidden, width), "blk.0.ffn_up": (hidden, width)})
    shapes.update({"blk.0.ffn_down": (width, hidden), "blk.0.attn_norm": (width,), "blk.0.ffn_norm": (width,)})
    for name, shape in shapes.items():
        writer.add_tensor(f"{name}.weight", rng.standard_normal(shape).astype(np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def test_gguf_file_converts_once(tmp_path, capsys):
    gguf_file = tmp_path / "Tiny.gguf"
    _write_tiny_gguf(gguf_file)

    tokenizer_only = resolve(str(gguf_file), need_weights=False)
    assert not tokenizer_only.has_weights and tokenizer_only.name == "tiny"
    source = resolve(str(gguf_file), need_weights=True)
    assert source.has_weights and "converting Tiny.gguf" in capsys.readouterr().err
    assert resolve(str(gguf_file), need_weights=False).path == source.path
    assert resolve(str(tmp_path), need_weights=True).path == source.path
    assert not list(source.path.parent.glob(".*"))  # no temp folders left behind

    config = json.loads((source.path / "config.json").read_text())
    assert "quantization_config" not in config and config["vocab_size"] == 102
    assert _config(source.path)["tokenizer_class"] == "TokenizersBackend"
    tokenizer = AutoTokenizer.from_pretrained(source.path)
    # SmolLM's pre-tokenizer splits digits one by one, which the GGUF only names
    assert tokenizer.tokenize("hello w12") == ["hello", "Ġw", "1", "2"]
    AutoModelForCausalLM.from_pretrained(source.path)


def test_list_known_covers_every_name():
    known = list_known()
    assert set(PACKS) | set(OFFLINE_TOKENIZERS) | set(ALIASES) == set(known)
    assert not set(OFFLINE_TOKENIZERS) & set(ALIASES)
    assert all(description and "\n" not in description for description in known.values())


@pytest.mark.slow
def test_smollm2_pack(monkeypatch):
    monkeypatch.delenv("TRANSPLANT_CACHE")  # the real cache: the pack is shared with other tests
    source = resolve("smollm2-135m", need_weights=True)
    assert source.has_weights and source.name == "smollm2-135m"
    config = json.loads((source.path / "config.json").read_text())
    assert config["vocab_size"] == 49152 and config["tie_word_embeddings"] is True
    tokenizer = AutoTokenizer.from_pretrained(source.path)
    assert type(tokenizer).__name__ == "TokenizersBackend" and len(tokenizer) == 49152
    assert tokenizer.tokenize("in 2024") == ["in", "Ġ", "2", "0", "2", "4"]
    assert tokenizer.eos_token == "<|im_end|>" and tokenizer.chat_template
