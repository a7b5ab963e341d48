"""Domain texts from Hugging Face datasets: `--dataset NAME[:CONFIG]:SPLIT:COLUMN`.

NAME is a Hub dataset id, streamed so that only the rows needed are downloaded, or a folder written by
`Dataset.save_to_disk` / `DatasetDict.save_to_disk`. The non-empty rows of COLUMN are joined, each
ending with a newline, and cut at a line end to at most `max_bytes`, like the built-in domains. The
`datasets` library is optional and imported only here, when a dataset is asked for.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from transplant.errors import UserError
from transplant.eval.domains import DEFAULT_MAX_BYTES, cut_at_line

FORMAT = "NAME[:CONFIG]:SPLIT:COLUMN"
_OFFLINE_VARIABLES = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")


@dataclass(frozen=True)
class DatasetSpec:
    name: str  # Hub id or save_to_disk folder
    config: str | None
    split: str
    column: str

    @property
    def domain(self) -> str:
        """The domain the text is scored as: the dataset's last name part, then its config."""
        base = Path(self.name.rstrip("/")).name or self.name
        return f"{base}-{self.config}" if self.config else base

    @property
    def is_local(self) -> bool:
        return Path(self.name).expanduser().is_dir()


def parse_spec(spec: str) -> DatasetSpec:
    parts = spec.split(":")
    if len(parts) not in (3, 4) or not all(parts):
        raise UserError(f"--dataset expects {FORMAT}, got {spec!r}")
    name, *config, split, column = parts
    return DatasetSpec(name=name, config=config[0] if config else None, split=split, column=column)


def dataset_text(spec: DatasetSpec, max_bytes: int | None = None) -> str:
    """Rows of the spec's column joined into one text of at most `max_bytes` (default 64 KiB)."""
    limit = DEFAULT_MAX_BYTES if max_bytes is None else max_bytes
    datasets = _import_datasets()
    rows = _local_rows(datasets, spec) if spec.is_local else _hub_rows(datasets, spec)
    pieces, size = [], 0
    for row in rows:
        value = _cell(row, spec)
        if not value.strip():
            continue
        piece = value if value.endswith("\n") else value + "\n"
        pieces.append(piece)
        size += len(piece.encode("utf-8"))
        if size >= limit:
            break
    if not pieces:
        raise UserError(f"dataset {spec.name} has no text in column {spec.column!r} of split {spec.split!r}")
    return cut_at_line("".join(pieces), limit)


def _import_datasets():
    try:
        import datasets
    except ImportError as error:
        raise UserError("--dataset needs the Hugging Face `datasets` library: pip install datasets") from error
    return datasets


def _cell(row: dict, spec: DatasetSpec) -> str:
    if spec.column not in row:
        raise UserError(f"dataset {spec.name} has no column {spec.column!r}; columns: {', '.join(row)}")
    value = row[spec.column]
    if not isinstance(value, str):
        raise UserError(f"column {spec.column!r} of dataset {spec.name} holds {type(value).__name__}, not text")
    return value


def _local_rows(datasets, spec: DatasetSpec) -> Iterator[dict]:
    if spec.config is not None:
        raise UserError(f"{spec.name} is a saved dataset folder, which has no configs; use {spec.name}:SPLIT:COLUMN")
    try:
        saved = datasets.load_from_disk(str(Path(spec.name).expanduser()))
    except FileNotFoundError as error:
        raise UserError(f"{spec.name} is a folder but not one written by save_to_disk") from error
    if isinstance(saved, datasets.DatasetDict):
        if spec.split not in saved:
            raise UserError(f"dataset {spec.name} has no split {spec.split!r}; splits: {', '.join(saved)}")
        saved = saved[spec.split]
    elif saved.split is not None and str(saved.split) != spec.split:
        raise UserError(f"dataset {spec.name} holds split {saved.split}, not {spec.split!r}")
    return iter(saved)


def _hub_rows(datasets, spec: DatasetSpec) -> Iterator[dict]:
    # read at call time, like transplant.sources: the library reads these once, when first imported
    offline = [v for v in _OFFLINE_VARIABLES if os.environ.get(v, "").strip().lower() in ("1", "true", "yes", "on")]
    if offline:
        raise UserError(
            f"cannot download dataset {spec.name}: {offline[0]} is set; pass a folder written by save_to_disk instead"
        )
    try:
        # rows are fetched while iterating, so network errors can surface there too
        yield from datasets.load_dataset(spec.name, spec.config, split=spec.split, streaming=True)
    except datasets.exceptions.DatasetNotFoundError as error:
        raise UserError(f"dataset {spec.name} is not on the Hugging Face Hub, or not visible to you") from error
    except ConnectionError as error:
        raise UserError(
            f"cannot reach the Hugging Face Hub for dataset {spec.name}; pass a folder written by save_to_disk instead"
        ) from error
    except ValueError as error:  # a wrong split or a missing config
        raise UserError(f"dataset {spec.name}: {error}") from error
