"""Read only the embedding matrices of a checkpoint; write a patched copy shard by shard, atomically."""

from __future__ import annotations

import json
import os
import shutil
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from tqdm import tqdm

from transplant.errors import UserError
from transplant.vocab import Vocab

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf", ".ckpt")
TOKENIZER_FILES = {
    "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "tokenizer.model",
    "vocab.json", "merges.txt", "added_tokens.json", "chat_template.jinja", "chat_template.json",
    "vocab.txt", "tokenizer.tiktoken",
}
OWN_FILES = {"transplant.json", "README.md", "model.safetensors.index.json"}


@dataclass
class Embeddings:
    """Embedding matrices stacked as (V, n, d): n = 1 when tied, 2 (input, output) when untied."""

    matrices: torch.Tensor
    tied: bool
    names: tuple[str, ...]  # safetensors keys, input first
    dtype: torch.dtype  # dtype stored in the checkpoint

    @property
    def vocab_size(self) -> int:
        return self.matrices.shape[0]


def shard_files(folder: Path) -> list[Path]:
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        weight_map = json.loads(index.read_text())["weight_map"]
        return [folder / name for name in dict.fromkeys(weight_map.values())]
    single = folder / "model.safetensors"
    if single.is_file():
        return [single]
    found = sorted(folder.glob("*.safetensors"))
    if not found:
        raise UserError(f"{folder} has no safetensors weights")
    return found


def load_config(folder: Path) -> dict:
    path = folder / "config.json"
    if not path.is_file():
        raise UserError(f"{folder} has no config.json: not a model folder")
    return json.loads(path.read_text())


def _text_config(config: dict) -> dict:
    return config.get("text_config", config)


def embedding_names(folder: Path) -> tuple[str, str | None, bool]:
    """(input key, output key or None, tied), found by building the model on the meta device so
    that every architecture transformers knows names its own embeddings."""
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(folder, trust_remote_code=False)
    try:
        with torch.device("meta"):
            model = AutoModelForCausalLM.from_config(config, trust_remote_code=False)
    except ValueError as err:
        raise UserError(f"{folder}: transformers has no causal LM for this config ({err})") from err
    params: dict[int, list[str]] = {}
    for name, p in model.named_parameters(remove_duplicate=False):
        params.setdefault(id(p), []).append(name)
    inp = model.get_input_embeddings()
    out = model.get_output_embeddings()
    if inp is None or id(inp.weight) not in params:
        raise UserError(f"{folder}: the model has no input embedding matrix")
    tied = out is None or out.weight is inp.weight
    keys = set()
    for shard in shard_files(folder):
        with safe_open(shard, "pt") as f:
            keys.update(f.keys())
    in_name = _stored_name(params[id(inp.weight)], keys, folder)
    out_name = None if tied else _stored_name(params[id(out.weight)], keys, folder)
    return in_name, out_name, tied


def _stored_name(names: list[str], keys: set[str], folder: Path) -> str:
    """The key a parameter is stored under (a tied matrix has several names, one of them stored)."""
    for name in names:
        if name in keys:
            return name
    # Checkpoints saved by other libraries sometimes drop or add a wrapper prefix.
    candidates = {k for k in keys for n in names if k.endswith(n.split(".", 1)[-1]) or n.endswith(k)}
    if len(candidates) == 1:
        return candidates.pop()
    raise UserError(f"{folder}: cannot find tensor {' or '.join(names)} in the safetensors files")


def read_embeddings(folder: str | Path) -> Embeddings:
    """Only the embedding tensors, in float32; nothing else is read."""
    folder = Path(folder)
    in_name, out_name, tied = embedding_names(folder)
    names = (in_name,) if tied else (in_name, out_name)
    stacked: torch.Tensor | None = None
    dtype = None
    for shard in shard_files(folder):
        with safe_open(shard, "pt") as f:
            for name in names:
                if name not in f.keys():
                    continue
                tensor = f.get_tensor(name)
                if stacked is None:
                    # One float32 buffer filled tensor by tensor: no stack of temporary copies.
                    stacked = torch.empty((tensor.shape[0], len(names), tensor.shape[1]), dtype=torch.float32)
                    dtype = tensor.dtype
                if tuple(tensor.shape) != (stacked.shape[0], stacked.shape[2]):
                    raise UserError(f"{folder}: input and output embeddings differ in shape")
                stacked[:, names.index(name)] = tensor
                del tensor
    return Embeddings(stacked, tied, names, dtype)


@contextmanager
def atomic_folder(out: Path, overwrite: bool):
    """Yield a temp folder beside `out`; on success it replaces `out`. Interrupted or failed runs leave
    at most a hidden `.name.tmp-*` folder, never something that looks like a finished checkpoint."""
    out = Path(out)
    if out.exists() and not overwrite:
        raise UserError(f"output folder {out} exists; pass --overwrite to replace it")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        yield tmp
        if out.exists():
            old = out.parent / f".{out.name}.old-{uuid.uuid4().hex[:8]}"
            os.replace(out, old)
            os.replace(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def write_weights(base: Path, dest: Path, new: dict[str, torch.Tensor], progress: bool = True) -> dict:
    """Copy every shard of `base` to `dest`, replacing the tensors named in `new`; one shard in
    memory at a time. Returns the new index's weight map."""
    shards = shard_files(base)
    weight_map: dict[str, str] = {}
    total = 0
    for shard in tqdm(shards, desc="writing shards", unit="shard", disable=not progress):
        tensors: dict[str, torch.Tensor] = {}
        with safe_open(shard, "pt") as f:
            metadata = f.metadata() or {}
            for name in f.keys():
                tensors[name] = new[name] if name in new else f.get_tensor(name)
        save_file(tensors, dest / shard.name, metadata={**metadata, "format": "pt"})
        total += sum(t.numel() * t.element_size() for t in tensors.values())
        weight_map.update({name: shard.name for name in tensors})
        del tensors
    # Any layout other than one model.safetensors needs the index to be found by transformers.
    if len(shards) > 1 or shards[0].name != "model.safetensors":
        index = {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}
        (dest / "model.safetensors.index.json").write_text(json.dumps(index, indent=2) + "\n")
    return weight_map


def copy_model_files(base: Path, dest: Path) -> None:
    """Everything that describes the model but is neither weights nor tokenizer nor ours."""
    for path in base.iterdir():
        if path.is_file() and not path.name.endswith(WEIGHT_SUFFIXES) and path.name not in TOKENIZER_FILES | OWN_FILES:
            shutil.copy2(path, dest / path.name)


def write_tokenizer(donor: Path, dest: Path) -> None:
    """The donor's tokenizer.json verbatim, with a tokenizer_config.json that makes AutoTokenizer load
    exactly that file (a slow class name would rebuild the tokenizer and change ids)."""
    shutil.copy2(donor / "tokenizer.json", dest / "tokenizer.json")
    cfg_path = donor / "tokenizer_config.json"
    cfg = json.loads(cfg_path.read_text()) if cfg_path.is_file() else {}
    for key in ("auto_map", "is_local", "local_files_only", "name_or_path", "vocab_file", "merges_file"):
        cfg.pop(key, None)
    cfg["tokenizer_class"] = "PreTrainedTokenizerFast"
    (dest / "tokenizer_config.json").write_text(json.dumps(cfg, indent=2, ensure_ascii=False) + "\n")
    for name in ("chat_template.jinja", "chat_template.json", "special_tokens_map.json"):
        if (donor / name).is_file():
            shutil.copy2(donor / name, dest / name)


def update_configs(dest: Path, donor_vocab: Vocab, token_ids: dict[str, int | list[int] | None]) -> None:
    """vocab_size and special ids in config.json and generation_config.json, in donor id space; the
    tokenizer_config's bos token follows, so the tokenizer and the model start texts alike."""
    config = json.loads((dest / "config.json").read_text())
    targets = [config] + ([config["text_config"]] if "text_config" in config else [])
    for cfg in targets:
        cfg["vocab_size"] = donor_vocab.size
        for key, value in token_ids.items():
            cfg[key] = value
    (dest / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    gen_path = dest / "generation_config.json"
    gen = json.loads(gen_path.read_text()) if gen_path.is_file() else {}
    gen.update(token_ids)
    gen_path.write_text(json.dumps(gen, indent=2) + "\n")
    tok_path = dest / "tokenizer_config.json"
    tok_cfg = json.loads(tok_path.read_text())
    bos = token_ids.get("bos_token_id")
    if isinstance(bos, int) and bos in donor_vocab.specials:
        tok_cfg["bos_token"] = donor_vocab.specials[bos].content
    tok_path.write_text(json.dumps(tok_cfg, indent=2, ensure_ascii=False) + "\n")
