"""Offline tokenizers give exactly their reference implementation's ids.

References: the `sentencepiece` package for SentencePiece models, `tiktoken` for rank-file
tokenizers (with tiktoken's own, possessive, split patterns), the published tokenizer.json for
Llama 3 and BERT. Each folder is also loaded both ways a consumer might: AutoTokenizer and
`tokenizers.Tokenizer.from_file`, which must agree.
"""

import base64
import json
import subprocess
import sys
import tarfile
import unicodedata
from pathlib import Path

import pytest
import sentencepiece as spm
import tiktoken
from tokenizers import Tokenizer
from transformers import AutoTokenizer

from transplant.sources import resolve
from transplant.tokenizer_builders import read_tiktoken

TEXTS = [
    "The quick brown fox jumps over the lazy dog. It's 2024; prices rose 3.5% to $1,234.56!",
    "def f(x):\n    if x  >  10:\n        return [i**2 for i in range(x)]  # two  spaces\n\n\treturn {'a': 1}\n",
    "        deeply_indented = True\n\n\n\n    \n",
    "Größere Äpfel schmecken süß; die Straßenbahnhaltestelle liegt über der Brücke. Müller's Grüße!",
    "日本語のテキストです。東京タワーは高さ３３３メートル、ｶﾀｶﾅ半角も含む。",
    "机器学习是人工智能的一个分支。我们在2023年发布了新模型，效果显著提升！",
    "Привет, мир! Emoji 🤖🚀, “quotes”, «guillemets», e\u0301 vs é, non\u00a0breaking, ١٢٣٤٥.",
    "   leading spaces, trailing spaces   ",
    "I'M SHOUTING and we'll see what they've done; 12345678901234567890 digits.",
]

# tiktoken's published split patterns, possessive quantifiers and all: the builders use equivalent
# non-possessive forms, so agreement here checks that equivalence too
CL100K_TIKTOKEN = (
    r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+|\s++$|\s*[\r\n]|"""
    r"""\s+(?!\S)|\s"""
)
O200K_TIKTOKEN = "|".join(
    [
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""\p{N}{1,3}""",
        r""" ?[^\s\p{L}\p{N}]+[\r\n/]*""",
        r"""\s*[\r\n]+""",
        r"""\s+(?!\S)""",
        r"""\s+""",
    ]
)
R50K_TIKTOKEN = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}++| ?\p{N}++| ?[^\s\p{L}\p{N}]++|\s++$|\s+(?!\S)|\s"""
QWEN_PATTERN = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|"""
    r"""\s+(?!\S)|\s+"""
)
LLAMA3_PATTERN = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|"""
    r"""\s+(?!\S)|\s+"""
)


def _byte_decoder() -> dict[str, int]:
    """GPT-2's printable spelling of bytes, inverted (written out here, independent of the builders)."""
    printable = [*range(33, 127), *range(161, 173), *range(174, 256)]
    spelled = {byte: chr(byte) for byte in printable}
    spelled.update({byte: chr(256 + n) for n, byte in enumerate(b for b in range(256) if b not in spelled)})
    return {char: byte for byte, char in spelled.items()}


def _ranks_from_byte_level_vocab(vocab: dict[str, int], limit: int) -> dict[bytes, int]:
    decode = _byte_decoder()
    return {bytes(decode[c] for c in token): index for token, index in vocab.items() if index < limit}


def _check_folder(folder: Path, reference):
    """Compare AutoTokenizer, the raw tokenizer.json and `reference(text)` on every text; returns
    the AutoTokenizer for further checks."""
    auto = AutoTokenizer.from_pretrained(folder)
    assert type(auto).__name__ == "TokenizersBackend"
    raw = Tokenizer.from_file(str(folder / "tokenizer.json"))
    compared = 0
    for text in TEXTS:
        expected = reference(text)
        assert auto(text, add_special_tokens=False)["input_ids"] == expected, text
        assert raw.encode(text, add_special_tokens=False).ids == expected, text
        assert raw.encode(text).ids == auto(text)["input_ids"], text
        compared += len(expected)
    assert compared > 200
    return auto


@pytest.mark.parametrize(
    "name,member",
    [("mistral-v1", "tokenizer.model.v1"), ("mistral-v3", "mistral_instruct_tokenizer_240323.model.v3")],
    ids=["mistral-v1", "mistral-v3"],
)
def test_mistral_matches_sentencepiece(name, member):
    folder = resolve(name, need_weights=False).path
    sp = spm.SentencePieceProcessor(model_file=str(folder / "reference" / member))
    auto = _check_folder(folder, sp.encode)
    assert len(auto) == sp.get_piece_size()
    assert auto("Hello world")["input_ids"] == [sp.bos_id(), *sp.encode("Hello world")]
    assert auto.decode(sp.encode(TEXTS[3])) == TEXTS[3]
    assert (auto.bos_token, auto.eos_token, auto.unk_token) == ("<s>", "</s>", "<unk>")
    assert auto.apply_chat_template([{"role": "user", "content": "Hi"}], tokenize=False).startswith("<s>[INST]")


def test_mistral_v3_chat_template_matches_mistral_common_layout():
    """mistral-common v3 encodes a turn as [INST] + sp.encode(user) + [/INST] + sp.encode(reply) + </s>."""
    folder = resolve("mistral-v3", need_weights=False).path
    sp = spm.SentencePieceProcessor(model_file=str(folder / "reference" / "mistral_instruct_tokenizer_240323.model.v3"))
    auto = AutoTokenizer.from_pretrained(folder)
    chat = [{"role": "user", "content": "Hi there"}, {"role": "assistant", "content": "Hello!"}]
    ids = auto.apply_chat_template(chat, tokenize=True, return_dict=False)
    assert ids == [1, 3, *sp.encode("Hi there"), 4, *sp.encode("Hello!"), 2]


def test_qwen2_matches_tiktoken():
    folder = resolve("qwen2", need_weights=False).path
    ranks = read_tiktoken(folder / "reference" / "qwen.tiktoken")
    encoding = tiktoken.Encoding("qwen", pat_str=QWEN_PATTERN, mergeable_ranks=ranks, special_tokens={})

    def reference(text):
        return encoding.encode(unicodedata.normalize("NFC", text), disallowed_special=())

    auto = _check_folder(folder, reference)
    assert len(auto) == 151665
    assert auto.convert_tokens_to_ids(["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|file_sep|>"]) == [
        151643,
        151644,
        151645,
        151664,
    ]
    assert (auto.eos_token, auto.pad_token) == ("<|im_end|>", "<|endoftext|>")
    prompt = auto.apply_chat_template([{"role": "user", "content": "Hi"}], tokenize=False, add_generation_prompt=True)
    assert prompt.endswith("<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n")
    assert auto("<tool_call>", add_special_tokens=False)["input_ids"] == [151657]
    assert auto.decode([151657, 151643], skip_special_tokens=True) == "<tool_call>"


@pytest.mark.parametrize(
    "name,pattern,size",
    [("cl100k", CL100K_TIKTOKEN, 100277), ("o200k", O200K_TIKTOKEN, 200019)],
    ids=["cl100k", "o200k"],
)
def test_openai_encodings_match_tiktoken(name, pattern, size):
    folder = resolve(name, need_weights=False).path
    ranks = read_tiktoken(folder / "reference" / f"{name}_base.tiktoken")
    encoding = tiktoken.Encoding(name, pat_str=pattern, mergeable_ranks=ranks, special_tokens={})
    auto = _check_folder(folder, lambda text: encoding.encode(text, disallowed_special=()))
    assert len(auto) == size
    assert auto.convert_tokens_to_ids("<|endoftext|>") == (100257 if name == "cl100k" else 199999)


def test_tekken_matches_tiktoken():
    folder = resolve("tekken", need_weights=False).path
    data = json.loads((folder / "reference" / "tekken_240911.json").read_text())
    specials = data["config"]["default_num_special_tokens"]
    kept = data["vocab"][: data["config"]["default_vocab_size"] - specials]
    ranks = {base64.b64decode(entry["token_bytes"]): entry["rank"] for entry in kept}
    encoding = tiktoken.Encoding("tekken", pat_str=data["config"]["pattern"], mergeable_ranks=ranks, special_tokens={})
    auto = _check_folder(folder, lambda text: [i + specials for i in encoding.encode(text)])
    assert len(auto) == 131072
    assert auto("Hi")["input_ids"][0] == 1
    assert auto.convert_tokens_to_ids(["[INST]", "[/INST]", "<SPECIAL_999>"]) == [3, 4, 999]


def test_gpt2_tokenizer_matches_tiktoken():
    folder = resolve("gpt2-tokenizer", need_weights=False).path
    vocab = json.loads((folder / "reference" / "encoder.json").read_text())
    ranks = _ranks_from_byte_level_vocab(vocab, 50256)
    encoding = tiktoken.Encoding("r50k", pat_str=R50K_TIKTOKEN, mergeable_ranks=ranks, special_tokens={})
    auto = _check_folder(folder, lambda text: encoding.encode(text, disallowed_special=()))
    assert len(auto) == 50257
    assert auto("a<|endoftext|>")["input_ids"] == [64, 50256]


def test_llama3_matches_published_tokenizer_and_tiktoken():
    folder = resolve("llama3", need_weights=False).path
    published = Tokenizer.from_file(str(folder / "reference" / "tokenizer.json"))
    vocab = published.get_vocab(with_added_tokens=False)
    encoding = tiktoken.Encoding(
        "llama3", pat_str=LLAMA3_PATTERN, mergeable_ranks=_ranks_from_byte_level_vocab(vocab, 128000), special_tokens={}
    )
    for text in TEXTS:
        assert published.encode(text, add_special_tokens=False).ids == encoding.encode(text, disallowed_special=())
    auto = _check_folder(folder, lambda text: published.encode(text, add_special_tokens=False).ids)
    assert len(auto) == 128256
    assert auto("Hi")["input_ids"] == [128000, 13347]
    assert (auto.bos_token, auto.eos_token) == ("<|begin_of_text|>", "<|eot_id|>")
    assert auto.chat_template


def test_bert_matches_published_tokenizer():
    folder = resolve("bert", need_weights=False).path
    published = Tokenizer.from_file(str(folder / "reference" / "tokenizer.json"))
    published.no_truncation()
    published.no_padding()
    auto = _check_folder(folder, lambda text: published.encode(text, add_special_tokens=False).ids)
    assert auto("Hello World")["input_ids"] == [101, 7592, 2088, 102]
    assert (auto.cls_token, auto.sep_token, auto.pad_token) == ("[CLS]", "[SEP]", "[PAD]")


@pytest.fixture(scope="module")
def sentencepiece_test_models(tmp_path_factory) -> Path:
    """The small BPE and unigram models in the sentencepiece source package's test folder."""
    where = tmp_path_factory.mktemp("spm")
    download = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", "-q", "-d", str(where)]
    subprocess.run([*download, "sentencepiece==0.2.3"], check=True)
    with tarfile.open(next(where.glob("sentencepiece-*.tar.gz"))) as archive:
        for name in ("botchan_en_bpe_1000.model", "botchan_en_unigram_1000.model", "kyoto_ja_unigram_8000.model"):
            (where / name).write_bytes(archive.extractfile(f"sentencepiece-0.2.3/test/{name}").read())
    return where


@pytest.mark.parametrize("model", ["botchan_en_bpe_1000", "botchan_en_unigram_1000", "kyoto_ja_unigram_8000"])
def test_sentencepiece_folder_matches_sentencepiece(sentencepiece_test_models, tmp_path, model):
    """A folder holding only tokenizer.model (BPE or unigram, NFKC, whitespace clean-up) gets a
    tokenizer.json built for it."""
    folder = tmp_path / model
    folder.mkdir()
    (folder / "tokenizer.model").write_bytes((sentencepiece_test_models / f"{model}.model").read_bytes())
    source = resolve(str(folder), need_weights=False)
    assert source.path != folder and not source.has_weights
    sp = spm.SentencePieceProcessor(model_file=str(folder / "tokenizer.model"))
    _check_folder(source.path, sp.encode)
