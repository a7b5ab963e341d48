"""Install or locate each domain's source, cut its slice, and write the files with a manifest.

    python -m transplant.eval.build_domains [--out DIR] [--max-bytes N] [--record] [NAME ...]

Debian packages are installed with apt-get when running as root; otherwise the error names the
`apt-get install` line to run. Each slice is checked against the sha256 committed in
`eval/domains.json`: a different text is a warning, never a failure, because a newer Debian package
legitimately changes it (the numbers measured on it are then not comparable with recorded ones).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

from transplant.cache import cache_dir
from transplant.errors import UserError
from transplant.eval.domains import DEFAULT_MAX_BYTES, SOURCES, Source, check_names, cut_at_line

RECORD = Path(__file__).with_name("domains.json")
MANIFEST = "manifest.json"


class DomainMismatchWarning(UserWarning):
    """A rebuilt domain text differs from the one recorded in eval/domains.json."""


def installed_version(package: str) -> str | None:
    """The installed version of a Debian package, or None (also on systems without dpkg)."""
    try:
        result = subprocess.run(
            ["dpkg-query", "-W", "-f=${db:Status-Status} ${Version}", package], capture_output=True, text=True
        )
    except FileNotFoundError:
        return None
    status, _, version = result.stdout.partition(" ")
    return version if result.returncode == 0 and status == "installed" else None


def ensure_packages(packages: tuple[str, ...]) -> dict[str, str]:
    """Version of each package, installing the missing ones with apt-get when we are root."""
    missing = [package for package in packages if installed_version(package) is None]
    if missing:
        _apt_install(missing)
    versions = {package: installed_version(package) for package in packages}
    still_missing = [package for package, version in versions.items() if version is None]
    if still_missing:
        raise UserError(f"Debian package(s) {' '.join(still_missing)} still not installed after apt-get install")
    return versions


def _apt_install(packages: list[str]) -> None:
    command = ["apt-get", "install", "-y", "-q", "--no-install-recommends", *packages]
    is_root = hasattr(os, "geteuid") and os.geteuid() == 0
    if not is_root or shutil.which("apt-get") is None:
        raise UserError(
            f"the evaluation domains need the Debian package(s) {' '.join(packages)}: "
            f"run `sudo apt-get install -y {' '.join(packages)}`"
        )
    print(f"installing {' '.join(packages)} with apt-get", file=sys.stderr)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    if subprocess.run(command, env=env, capture_output=True).returncode == 0:
        return
    # a fresh machine has no package lists yet
    subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True)
    result = subprocess.run(command, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ["no message"])[-1]
        raise UserError(f"`apt-get install -y {' '.join(packages)}` failed: {last}")


def slice_source(source: Source, max_bytes: int) -> tuple[int, str]:
    """(byte offset of the anchor line in the source's text, the slice of at most max_bytes from it).

    Pieces are joined with a blank line between them and read only until the slice is decided.
    """
    parts: list[str] = []
    size, start = 0, None
    for piece in source.pieces():
        if parts:
            piece = "\n" + piece
        if start is None:
            line = _anchor_line(piece, source.anchor)
            if line is not None:
                start = size + len(piece[:line].encode("utf-8"))
        parts.append(piece)
        size += len(piece.encode("utf-8"))
        # once more than max_bytes follow the anchor, later pieces cannot change the cut
        if start is not None and size - start > max_bytes:
            break
    if start is None:
        raise UserError(f"no line {source.anchor!r} in {source.origin}: the source changed shape")
    rest = "".join(parts).encode("utf-8")[start:].decode("utf-8")
    return start, cut_at_line(rest, max_bytes)


def _anchor_line(text: str, anchor: str | None) -> int | None:
    if anchor is None:
        return 0
    match = re.search(rf"^{re.escape(anchor)}$", text, flags=re.MULTILINE)
    return match.start() if match else None


def build_domains(names: list[str] | None, out: Path, max_bytes: int = DEFAULT_MAX_BYTES) -> dict:
    """Write `<name>.txt` for each domain into `out` and merge their entries into `out/manifest.json`."""
    out.mkdir(parents=True, exist_ok=True)
    manifest = _read_json(out / MANIFEST)
    recorded = _read_json(RECORD)
    for name in check_names(names):
        source = SOURCES[name]
        versions = ensure_packages(source.packages) if source.packages else {"python": platform.python_version()}
        offset, text = slice_source(source, max_bytes)
        data = text.encode("utf-8")
        _write_atomic(out / f"{name}.txt", data)
        entry = {
            "description": source.description,
            "packages": versions,
            "source": source.origin,
            "offset": offset,
            "bytes": len(data),
            "max_bytes": max_bytes,
            "sha256": hashlib.sha256(data).hexdigest(),
        }
        _compare_with_record(name, entry, recorded.get(name))
        manifest[name] = entry
    _write_json(out / MANIFEST, manifest)
    return manifest


def _compare_with_record(name: str, entry: dict, record: dict | None) -> None:
    if record is None or record["max_bytes"] != entry["max_bytes"] or record["sha256"] == entry["sha256"]:
        return
    changed = [
        f"{package} {version} here, {record['packages'].get(package)} recorded"
        for package, version in entry["packages"].items()
        if record["packages"].get(package) != version
    ]
    if changed:
        message = (
            f"domain {name!r}: the text differs from the recorded one ({'; '.join(changed)}); "
            "bits-per-byte measured here is not comparable with numbers measured on the recorded text"
        )
    else:
        message = (
            f"domain {name!r}: sha256 {entry['sha256'][:12]} differs from the recorded {record['sha256'][:12]} "
            "with the same package versions, so the extraction changed; re-record with --record if intended"
        )
    warnings.warn(message, DomainMismatchWarning, stacklevel=3)


def _read_json(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}


def _write_json(path: Path, value: dict) -> None:
    _write_atomic(path, (json.dumps(value, indent=2, ensure_ascii=False) + "\n").encode("utf-8"))


def _write_atomic(path: Path, data: bytes) -> None:
    # a reader (another test, another process) never sees a half-written domain
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    partial.write_bytes(data)
    os.replace(partial, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m transplant.eval.build_domains", description="Build the evaluation domain texts."
    )
    parser.add_argument("names", nargs="*", help=f"domains to build (default: all of {' '.join(SOURCES)})")
    parser.add_argument("--out", type=Path, help="output folder (default: the cache's domains folder)")
    parser.add_argument("--max-bytes", type=int, default=DEFAULT_MAX_BYTES, help="size of each slice")
    parser.add_argument("--record", action="store_true", help="store the sha256 found in eval/domains.json")
    args = parser.parse_args(argv)
    try:
        manifest = build_domains(args.names or None, args.out or cache_dir("domains"), args.max_bytes)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for name in check_names(args.names or None):
        entry = manifest[name]
        print(f"{name:5} {entry['bytes']:>8} bytes  sha256 {entry['sha256'][:16]}  {entry['source']}")
    if args.record:
        built = {name: manifest[name] for name in check_names(args.names or None)}
        _write_json(RECORD, {**_read_json(RECORD), **built})
    return 0


if __name__ == "__main__":
    sys.exit(main())
