"""What a folder is, for pushing and for its model card: a transplant output, a healed model, or a
hypernetwork. One ordered list of rules, so a new kind is one more line."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from transplant.errors import UserError

HYPERNET_MODEL_TYPE = "transplant-hypernet"


@dataclass(frozen=True)
class FolderKind:
    kind: str  # "transplant", "healed" or "hypernetwork"
    path: Path
    record: dict  # transplant.json, or the hypernetwork's config.json


def _read(path: Path) -> dict | None:
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise UserError(f"cannot read {path}: {error}") from error
    return data if isinstance(data, dict) else None


def _transplant(folder: Path) -> dict | None:
    return _read(folder / "transplant.json")


def _healed(folder: Path) -> dict | None:
    record = _transplant(folder)
    return record if record is not None and "healing" in record else None


def _hypernetwork(folder: Path) -> dict | None:
    config = _read(folder / "config.json")
    return config if config is not None and config.get("model_type") == HYPERNET_MODEL_TYPE else None


# first match wins: a healed model is also a transplant output
RULES: list[tuple[str, Callable[[Path], dict | None]]] = [
    ("healed", _healed),
    ("transplant", _transplant),
    ("hypernetwork", _hypernetwork),
]


def folder_kind(folder: str | Path) -> FolderKind:
    """The kind of `folder`, or a UserError saying why it is none of them."""
    path = Path(folder)
    if not path.is_dir():
        raise UserError(f"{folder}: no such folder")
    for kind, rule in RULES:
        record = rule(path)
        if record is not None:
            return FolderKind(kind, path, record)
    raise UserError(
        f"{folder} is not a transplant output (no transplant.json, which `transplant` writes last) "
        f"nor a hypernetwork folder (config.json with model_type {HYPERNET_MODEL_TYPE!r}); "
        "push a folder that `transplant` finished"
    )
