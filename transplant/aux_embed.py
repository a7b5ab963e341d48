"""Sentence embeddings of token texts from any sentence-embedding model folder, cached on disk.

Pooling follows the folder's sentence-transformers config (`1_Pooling/config.json`: mean or CLS;
mean when absent), then L2 normalisation, so inner products are cosines. Embeddings of a whole
vocabulary are cached under the cache folder, keyed by the model's files and the exact list of
texts (which is a function of the vocabulary), and written atomically.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch
from tqdm.auto import tqdm

from transplant.cache import cache_dir
from transplant.errors import UserError

BATCH = 256  # measured on 2 cores: 64 and 1024 were slower for token-length texts
_MODEL_FILES = ("config.json", "tokenizer.json", "tokenizer_config.json", "1_Pooling/config.json")


@dataclass
class AuxEmbedder:
    folder: Path
    model: torch.nn.Module
    tokenizer: object  # a transformers fast tokenizer
    pooling: str  # "mean" or "cls"
    max_length: int
    key: str  # hash of the model's files: part of every cache key

    @property
    def dim(self) -> int:
        return int(self.model.config.hidden_size)


def load_embedder(folder: str | Path) -> AuxEmbedder:
    from transformers import AutoModel, AutoTokenizer

    folder = Path(folder)
    if not (folder / "config.json").is_file() or not list(folder.glob("*.safetensors")):
        raise UserError(f"auxiliary model {folder} is not a model folder with config.json and safetensors weights")
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(folder))
        model = AutoModel.from_pretrained(str(folder), dtype=torch.float32).eval()
    except (OSError, ValueError, KeyError) as error:
        raise UserError(f"cannot load auxiliary model {folder}: {error}") from error
    return AuxEmbedder(folder, model, tokenizer, _pooling(folder), _max_length(folder), _model_key(folder))


def _pooling(folder: Path) -> str:
    config_file = folder / "1_Pooling" / "config.json"
    if not config_file.is_file():
        return "mean"
    config = json.loads(config_file.read_text())
    if config.get("pooling_mode_mean_tokens"):
        return "mean"
    if config.get("pooling_mode_cls_token"):
        return "cls"
    raise UserError(f"{config_file}: only mean or CLS pooling is supported")


def _max_length(folder: Path) -> int:
    config_file = folder / "sentence_bert_config.json"
    if config_file.is_file():
        return int(json.loads(config_file.read_text()).get("max_seq_length", 128))
    return 128


def _model_key(folder: Path) -> str:
    digest = hashlib.sha256()
    names = [n for n in _MODEL_FILES if (folder / n).is_file()] + sorted(p.name for p in folder.glob("*.safetensors"))
    for name in names:
        digest.update(name.encode() + b"\0")
        with (folder / name).open("rb") as stream:
            while block := stream.read(1 << 22):
                digest.update(block)
    return digest.hexdigest()


@torch.inference_mode()
def embed(embedder: AuxEmbedder, texts: list[str], progress: bool = False) -> np.ndarray:
    """(len(texts), dim) float32, unit rows. Batches hold texts of similar token length, so little
    compute goes to padding."""
    out = np.zeros((len(texts), embedder.dim), dtype=np.float32)
    if not texts:
        return out
    lengths = [len(ids) for ids in embedder.tokenizer(texts, add_special_tokens=True)["input_ids"]]
    order = np.argsort(lengths, kind="stable")
    bar = tqdm(total=len(texts), desc="auxiliary embeddings", unit="text", disable=not progress)
    for lo in range(0, len(texts), BATCH):
        rows = order[lo : lo + BATCH]
        batch = embedder.tokenizer(
            [texts[i] for i in rows], padding=True, truncation=True, max_length=embedder.max_length, return_tensors="pt"
        )
        hidden = embedder.model(**batch).last_hidden_state
        if embedder.pooling == "cls":
            pooled = hidden[:, 0]
        else:
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        out[rows] = torch.nn.functional.normalize(pooled, dim=-1).numpy()
        bar.update(len(rows))
    bar.close()
    return out


def cached_embed(embedder: AuxEmbedder, texts: list[str], label: str, progress: bool = False) -> np.ndarray:
    """`embed`, read from the cache when this model has embedded exactly these texts before."""
    digest = hashlib.sha256(embedder.key.encode())
    for text in texts:
        digest.update(text.encode("utf-8", errors="surrogatepass") + b"\0")
    path = cache_dir("aux_embeddings") / f"{label}-{digest.hexdigest()[:20]}.npy"
    if path.is_file():
        cached = np.load(path)
        if cached.shape == (len(texts), embedder.dim):
            return cached
    vectors = embed(embedder, texts, progress)
    write_atomically(path, lambda stream: np.save(stream, vectors))
    return vectors


def write_atomically(path: Path, write: Callable[[BinaryIO], None]) -> None:
    """`write(stream)` into a hidden temp file beside `path`, then renamed: a killed run leaves no
    truncated cache entry behind."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as stream:
            write(stream)
        os.chmod(tmp, 0o644)  # mkstemp makes it private; the cache is shared like any other
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
