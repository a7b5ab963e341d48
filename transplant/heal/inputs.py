"""What a heal starts from: a finished transplant folder, its record, and which of its tokens are new."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from transplant.errors import UserError


@dataclass
class HealInput:
    folder: Path
    record: dict  # its transplant.json
    base: Path  # the original base model (the teacher of distill)


def read_input(folder: str | Path, base_override: str | None = None) -> HealInput:
    """The transplant folder and its record; a UserError when it is not one, or its base is gone."""
    path = Path(folder)
    if not path.is_dir():
        raise UserError(f"{folder} not found: pass the output folder of `transplant`")
    record_path = path / "transplant.json"
    if not record_path.is_file():
        raise UserError(f"{folder} is not a transplant output (no transplant.json, which `transplant` writes last); "
                        "heal a folder that `transplant` finished")
    try:
        record = json.loads(record_path.read_text(encoding="utf-8"))
    except ValueError as error:
        raise UserError(f"cannot read {record_path}: {error}") from None
    if base_override is not None:
        base = Path(base_override)
        if not (base / "config.json").is_file():
            raise UserError(f"--teacher {base_override} is not a model folder (no config.json)")
    else:
        base = _recorded_base(record.get("base") or {}, record_path)
    return HealInput(path, record, base)


def _recorded_base(entry: dict, record_path: Path) -> Path:
    """The base folder transplant.json names; when that folder is gone (a temporary pack location),
    what its spec (a pack name, Hub id or path) resolves to now."""
    recorded = entry.get("path")
    if recorded and (Path(recorded) / "config.json").is_file():
        return Path(recorded)
    spec = entry.get("spec")
    if spec:
        from transplant.sources import resolve

        try:
            base = resolve(spec, need_weights=True).path
        except UserError:
            base = None
        if base is not None:
            print(f"note: the base folder {recorded} is gone; using {base}, which {spec!r} resolves to", file=sys.stderr)
            return base
    raise UserError(f"the base model {recorded} recorded in {record_path} is missing; pass --teacher PATH "
                    "(the original base model folder)")


def new_token_ids(source: HealInput) -> np.ndarray:
    """Donor ids that the base vocabulary lacks: the rows the transplant made up, recomputed exactly
    as `transplant` did (the donor's own folder when it is still there, else the copy in the output)."""
    from transplant.align import align
    from transplant.vocab import load_vocab

    donor_path = Path((source.record.get("donor") or {}).get("path") or source.folder)
    donor = donor_path if (donor_path / "tokenizer.json").is_file() else source.folder
    alignment = align(load_vocab(source.base), load_vocab(donor))
    expected = (source.record.get("alignment") or {}).get("new")
    new_ids = alignment.new_ids
    if expected is not None and expected != len(new_ids):
        print(f"warning: {len(new_ids)} new tokens now, {expected} when the transplant was made "
              "(another base or donor tokenizer version?); training the current ones", file=sys.stderr)
    return new_ids
