"""Training text for hypernetworks and healing: reading it, cutting it into windows, and proving
it shares no stretch with the evaluation text.

Overlap is checked on bytes: every window of `OVERLAP_WINDOW` consecutive bytes of the evaluation
texts is hashed, and a training text that contains any of those windows overlaps. 64 bytes is longer
than any repeated boilerplate line we met in the sources and short enough to catch a copied sentence.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from transplant.errors import UserError

OVERLAP_WINDOW = 64


def read_texts(paths: list[str | Path]) -> dict[str, str]:
    """path -> text of each file; a UserError for a missing, empty or non-UTF-8 file."""
    if not paths:
        raise UserError("no training text given: pass one or more --text FILE")
    texts: dict[str, str] = {}
    for path in map(Path, paths):
        if not path.is_file():
            raise UserError(f"training text {path} not found")
        try:
            text = path.read_bytes().decode("utf-8")
        except UnicodeDecodeError as error:
            raise UserError(f"training text {path} is not UTF-8 (byte {error.start})") from None
        if not text.strip():
            raise UserError(f"training text {path} is empty")
        texts[str(path)] = text
    return texts


def _window_keys(data: bytes, window: int) -> np.ndarray:
    """A 64-bit key per byte window, computed with numpy so megabytes take well under a second."""
    if len(data) < window:
        return np.zeros(0, dtype=np.uint64)
    arr = np.frombuffer(data, dtype=np.uint8).astype(np.uint64)
    # polynomial rolling hash over the window (mod 2^64 by wrap-around)
    base = np.uint64(1099511628211)
    powers = np.ones(window, dtype=np.uint64)
    views = np.lib.stride_tricks.sliding_window_view(arr, window)
    keys = np.zeros(len(views), dtype=np.uint64)
    with np.errstate(over="ignore"):
        for i in range(window - 2, -1, -1):
            powers[i] = powers[i + 1] * base
        for i in range(window):
            keys += views[:, i] * powers[i]
    return keys


@dataclass(frozen=True)
class Overlap:
    train_name: str
    byte_offset: int
    snippet: str


class WindowIndex:
    """The hashed byte windows of some texts (the evaluation side)."""

    def __init__(self, texts: dict[str, str] | list[str], window: int = OVERLAP_WINDOW):
        self.window = window
        values = texts.values() if isinstance(texts, dict) else texts
        keys = [_window_keys(text.encode("utf-8"), window) for text in values]
        self.keys = np.unique(np.concatenate(keys)) if keys else np.zeros(0, dtype=np.uint64)

    def hits(self, text: str) -> np.ndarray:
        """Byte offsets in `text` where a window of the index starts."""
        keys = _window_keys(text.encode("utf-8"), self.window)
        return np.flatnonzero(np.isin(keys, self.keys))

    def first_overlap(self, texts: dict[str, str]) -> Overlap | None:
        for name, text in texts.items():
            hits = self.hits(text)
            if len(hits):
                data = text.encode("utf-8")
                snippet = data[hits[0] : hits[0] + self.window].decode("utf-8", errors="replace")
                return Overlap(name, int(hits[0]), snippet)
        return None

    def drop_overlapping_lines(self, text: str) -> tuple[str, int]:
        """`text` without every line that a shared window touches, and how many lines went."""
        hits = self.hits(text)
        if not len(hits):
            return text, 0
        data = text.encode("utf-8")
        covered = np.zeros(len(data) + 1, dtype=np.int32)
        np.add.at(covered, hits, 1)
        np.add.at(covered, hits + self.window, -1)
        touched = np.cumsum(covered)[:-1] > 0
        kept, dropped, start = [], 0, 0
        for line in data.splitlines(keepends=True):
            end = start + len(line)
            if touched[start:end].any():
                dropped += 1
            else:
                kept.append(line)
            start = end
        return b"".join(kept).decode("utf-8"), dropped


def check_no_overlap(train: dict[str, str], evaluation: dict[str, str], window: int = OVERLAP_WINDOW) -> None:
    """A UserError naming the first shared stretch of `window` bytes between training and evaluation text."""
    overlap = WindowIndex(evaluation, window).first_overlap(train)
    if overlap is not None:
        raise UserError(
            f"training text {overlap.train_name} shares {window} bytes with the evaluation text at byte "
            f"{overlap.byte_offset}: {overlap.snippet!r}; remove it (python -m transplant.eval.build_train_text "
            "writes text that never overlaps the evaluation domains)"
        )


def text_fingerprint(texts: dict[str, str]) -> str:
    """sha256 over the texts in name order, recorded with what was trained on them."""
    digest = hashlib.sha256()
    for name in sorted(texts):
        digest.update(texts[name].encode("utf-8"))
    return digest.hexdigest()


def sample_windows(texts: dict[str, str], n: int, size: int, rng: np.random.Generator) -> list[str]:
    """`n` random windows of about `size` bytes, each file equally likely, cut at character boundaries."""
    names = sorted(texts)
    out = []
    for _ in range(n):
        data = texts[names[int(rng.integers(len(names)))]].encode("utf-8")
        start = int(rng.integers(max(1, len(data) - size)))
        out.append(data[start : start + size].decode("utf-8", errors="ignore"))
    return out
