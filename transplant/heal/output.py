"""The healed folder: the input folder with the trained tensors replaced, same names, dtypes and
layout, written atomically; its transplant.json gains a "healing" record."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
from safetensors import safe_open

from transplant.checkpoint import OWN_FILES, WEIGHT_SUFFIXES, atomic_folder, shard_files, write_weights
from transplant.errors import UserError

# Files that describe the input model's evaluation, not the healed model's.
STALE_FILES = {"eval.json", "eval.png"}
SAFETENSORS_DTYPES = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16, "F64": torch.float64}


def stored_tensors(folder: Path) -> dict[str, torch.dtype]:
    """Key -> dtype of every tensor in the folder's safetensors shards, read from the headers only."""
    found: dict[str, torch.dtype] = {}
    for shard in shard_files(folder):
        with safe_open(shard, "pt") as f:
            for key in f.keys():
                found[key] = SAFETENSORS_DTYPES.get(f.get_slice(key).get_dtype(), torch.float32)
    return found


def stored_key(name: str, stored: dict[str, torch.dtype], folder: Path) -> str:
    """The key a model parameter is stored under; checkpoints saved by other tools may drop or add
    a wrapper prefix (model.xxx vs xxx)."""
    if name in stored:
        return name
    matches = [key for key in stored if key.endswith("." + name) or name.endswith("." + key)]
    if len(matches) != 1:
        raise UserError(f"{folder}: cannot find the trained tensor {name} among the stored tensors")
    return matches[0]


def write_healed(source: Path, output: Path, tensors: dict[str, torch.Tensor], record: dict,
                 overwrite: bool, progress: bool = True) -> Path:
    """Copy `source` to `output` with `tensors` (model parameter name -> tensor) in place of the stored
    ones, each in the dtype it was stored in; transplant.json is written last."""
    stored = stored_tensors(source)
    new = {}
    for name, tensor in tensors.items():
        key = stored_key(name, stored, source)
        new[key] = tensor.detach().to(stored[key]).contiguous()
    with atomic_folder(output, overwrite) as tmp:
        write_weights(source, tmp, new, progress=progress)
        for path in source.iterdir():
            skip = path.name.endswith(WEIGHT_SUFFIXES) or path.name in OWN_FILES | STALE_FILES
            if path.is_file() and not skip:
                shutil.copy2(path, tmp / path.name)
        (tmp / "transplant.json").write_text(json.dumps(record, indent=2, ensure_ascii=False) + "\n")
    return output
