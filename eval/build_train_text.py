"""Write training text that never overlaps the evaluation domains.

    python -m transplant.eval.build_train_text [--out DIR] [--max-bytes N] [NAME ...]

Each domain's source is far longer than its evaluation slice; the training text of a domain is what
follows the slice in the same source (so it is the same kind of text), at most N bytes, with every
line that shares a 64-byte window with any evaluation domain removed. Prints one line per file and
writes `manifest.json` beside them.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

from transplant.cache import cache_dir
from transplant.errors import UserError
from transplant.eval.build_domains import ensure_packages, slice_source
from transplant.eval.domains import DEFAULT_MAX_BYTES, SOURCES, check_names, cut_at_line, load_domains
from transplant.train_text import WindowIndex

DEFAULT_TRAIN_BYTES = 1024 * 1024


def training_slice(name: str, max_bytes: int) -> str:
    """Up to `max_bytes` of the text that follows domain `name`'s evaluation slice in its source."""
    source = SOURCES[name]
    if source.packages:
        ensure_packages(source.packages)
    offset, evaluation = slice_source(source, DEFAULT_MAX_BYTES)
    skip = offset + len(evaluation.encode("utf-8"))
    parts, size = [], 0
    for piece in source.pieces():
        piece = ("\n" if parts else "") + piece
        parts.append(piece)
        size += len(piece.encode("utf-8"))
        if size > skip + max_bytes + 4096:
            break
    rest = "".join(parts).encode("utf-8")[skip:].decode("utf-8", errors="ignore")
    return cut_at_line(rest.lstrip("\n"), max_bytes)


def build_train_text(names: list[str] | None, out: Path, max_bytes: int = DEFAULT_TRAIN_BYTES) -> dict:
    names = check_names(names)
    index = WindowIndex(load_domains())
    out.mkdir(parents=True, exist_ok=True)
    manifest = {}
    for name in names:
        text, dropped = index.drop_overlapping_lines(training_slice(name, max_bytes))
        if not text.strip():
            raise UserError(f"domain {name}: its source has no text after the evaluation slice")
        data = text.encode("utf-8")
        (out / f"{name}.txt").write_bytes(data)
        manifest[name] = {"bytes": len(data), "lines_dropped_for_overlap": dropped,
                          "sha256": hashlib.sha256(data).hexdigest(), "source": SOURCES[name].origin}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m transplant.eval.build_train_text",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", help="domains (default: all)")
    parser.add_argument("--out", type=Path, help="output folder (default: the cache's train_text folder)")
    parser.add_argument("--max-bytes", type=int, default=DEFAULT_TRAIN_BYTES, help="bytes per domain")
    args = parser.parse_args(argv)
    out = args.out or cache_dir("train_text")
    try:
        manifest = build_train_text(args.names or None, out, args.max_bytes)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for name, entry in manifest.items():
        print(f"{out / (name + '.txt')}  {entry['bytes']:>8} bytes  {entry['lines_dropped_for_overlap']} lines dropped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
