"""Supertokens against a plain BPE of the same size, trained on the same English + code text.

    python -m transplant.eval.bench_supertokens [--vocab-size 32768] [--out results/supertokens] [--json docs/supertokens.json]

1. Training text that the evaluation domains do not contain (written to OUT/train-en.txt and
   OUT/train-code.txt, with a manifest): English from the Debian `fortunes` collections (all English
   files but the two ASCII-art ones) and the Jargon File (`jargon-text`); code from the top-level
   modules of the running CPython's standard library, in name order up to --code-bytes, without the
   seven modules of the `code` domain. Overlap with all nine domains is measured as eval lines of at
   least 20 characters that occur verbatim in the training text.
2. A plain byte-level BPE (Qwen2 pre-tokenization) and two supertoken BPEs (cuts anywhere, as the
   paper; cuts moved to word ends), all --vocab-size, written to OUT/plain-N, OUT/supertokens-N and
   OUT/supertokens-at-spaces-N (normal tokenizer folders, usable as --donor-tokenizer).
3. Tokens per byte of both, and of SmolLM2's and Qwen2's own tokenizers for scale, and the share of
   tokens that span two words, on every domain (the full 64 KiB slices, held out), with a lossless
   round-trip check on each.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import platform
import sysconfig
import time
from pathlib import Path

from tokenizers import Tokenizer
from transplant.eval.build_domains import ensure_packages
from transplant.eval.domains import (
    CODE_FILES,
    collapse_blank_lines,
    fortunes_to_text,
    load_domains,
)

from transplant.supertokens import Chunking, crosses_words, train_supertokens
from transplant.tokenizer_train import check_text_files, save_tokenizer, train_plain

FORTUNES = Path("/usr/share/games/fortunes")
JARGON = Path("/usr/share/doc/jargon-text/jargon.txt.gz")
PACKAGES = ("fortunes", "jargon-text")
ART = {"art", "ascii-art"}  # pictures drawn in characters, not prose
MIN_LINE = 20  # shorter lines (`else:`, `return x`) are common to all code and say nothing about overlap
REFERENCE_TOKENIZERS = ("smollm2-135m", "qwen2")


def english_sources() -> list[Path]:
    fortunes = [f for f in sorted(FORTUNES.iterdir()) if f.is_file() and f.suffix not in (".dat", ".u8")]
    return [f for f in fortunes if f.name not in ART] + [JARGON]


def code_sources(max_bytes: int) -> list[Path]:
    lib = Path(sysconfig.get_paths()["stdlib"])
    chosen, total = [], 0
    for path in sorted(lib.glob("*.py")):
        if path.name in CODE_FILES:
            continue
        if total + path.stat().st_size > max_bytes:
            break
        chosen.append(path)
        total += path.stat().st_size
    return chosen


def english_text(path: Path) -> str:
    if path.suffix == ".gz":
        with gzip.open(path, "rt", encoding="utf-8") as f:
            lines = f.read().splitlines()
        return collapse_blank_lines("\n".join(line.strip() for line in lines))
    return fortunes_to_text(path.read_text(encoding="utf-8"))


def build_corpus(out: Path, code_bytes: int) -> dict:
    """Write the two training files; returns the manifest (sources, sizes, sha256, package versions)."""
    out.mkdir(parents=True, exist_ok=True)
    packages = ensure_packages(PACKAGES)
    english, code = english_sources(), code_sources(code_bytes)
    parts = {
        "train-en.txt": (english, [english_text(p) for p in english]),
        "train-code.txt": (code, [p.read_text(encoding="utf-8") for p in code]),
    }
    manifest = {}
    for name, (paths, texts) in parts.items():
        data = "\n".join(texts).encode("utf-8")
        (out / name).write_bytes(data)
        digest = hashlib.sha256(data).hexdigest()
        manifest[name] = {"bytes": len(data), "sha256": digest, "sources": [str(path) for path in paths]}
    return {"files": manifest, "packages": {**packages, "python": platform.python_version()}}


def overlap(training: list[str], domains: dict[str, str]) -> dict:
    """Per domain: its lines of >= MIN_LINE characters, and those found verbatim in the training text."""
    seen = {line.strip() for text in training for line in text.splitlines() if len(line.strip()) >= MIN_LINE}
    report = {}
    for name, text in domains.items():
        lines = [line.strip() for line in text.splitlines() if len(line.strip()) >= MIN_LINE]
        shared = [line for line in lines if line in seen]
        report[name] = {"lines": len(lines), "shared": len(shared), "examples": sorted(set(shared))[:5]}
    return report


def measure(tokenizer: Tokenizer, domains: dict[str, str]) -> dict:
    """Per domain and pooled: tokens per byte and the share of tokens that span two words; a
    round-trip check; the encoding time."""
    crossing = [crosses_words(tokenizer.decode([i])) for i in range(tokenizer.get_vocab_size())]
    per_byte, spanning, lossless, seconds = {}, {}, True, 0.0
    tokens = size = crossed = 0
    for name, text in domains.items():
        start = time.perf_counter()
        ids = tokenizer.encode(text, add_special_tokens=False).ids
        seconds += time.perf_counter() - start
        n_bytes, n_crossing = len(text.encode("utf-8")), sum(crossing[i] for i in ids)
        per_byte[name], spanning[name] = len(ids) / n_bytes, n_crossing / len(ids)
        tokens, size, crossed = tokens + len(ids), size + n_bytes, crossed + n_crossing
        lossless &= tokenizer.decode(ids, skip_special_tokens=False) == text
    return {
        "tokens_per_byte": per_byte, "overall": tokens / size, "crossing_share": spanning,
        "crossing_share_overall": crossed / tokens, "lossless": lossless, "encode_seconds": seconds,
    }


def vocabulary_stats(tokenizer: Tokenizer) -> dict:
    pieces = [tokenizer.decode([i]) for i in range(tokenizer.get_vocab_size())]
    crossing = [p for p in pieces if crosses_words(p)]
    words = [p for p in pieces if len(p) > 1 and p.strip()]
    return {
        "vocab_size": tokenizer.get_vocab_size(),
        "tokens_crossing_words": len(crossing),
        "tokens_starting_with_space": sum(p[0] == " " for p in words),
        "tokens_ending_with_space": sum(p[-1] == " " for p in words),
        "mean_token_bytes": sum(len(p.encode("utf-8")) for p in pieces) / len(pieces),
        "examples_crossing": sorted(crossing, key=len, reverse=True)[:10],
    }


def markdown(results: dict) -> str:
    names = list(next(iter(results["tokenizers"].values()))["tokens_per_byte"])
    lines = ["| tokenizer | vocab | " + " | ".join(names) + " | overall |", "|---" * (len(names) + 3) + "|"]
    for label, row in results["tokenizers"].items():
        cells = " | ".join(f"{row['tokens_per_byte'][n]:.3f}" for n in names)
        lines.append(f"| {label} | {row['vocab_size']} | {cells} | {row['overall']:.3f} |")
    lines += ["", "share of tokens that span two words:", ""]
    lines += [lines[0], lines[1]]
    for label, row in results["tokenizers"].items():
        cells = " | ".join(f"{row['crossing_share'][n]:.1%}" for n in names)
        lines.append(f"| {label} | {row['vocab_size']} | {cells} | {row['crossing_share_overall']:.1%} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from transplant.sources import resolve

    p = argparse.ArgumentParser(prog="python -m transplant.eval.bench_supertokens", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--vocab-size", type=int, default=32768)
    p.add_argument("--code-bytes", type=int, default=3_000_000, help="at most this much CPython source")
    p.add_argument("--out", default="results/supertokens", help="training text and the two tokenizers")
    p.add_argument("--json", help="write the results here")
    p.add_argument("--seed", type=int, default=0, help="seed of the supertoken chunking")
    args = p.parse_args(argv)

    out = Path(args.out)
    manifest = build_corpus(out, args.code_bytes)
    files = check_text_files([out / name for name in manifest["files"]])
    domains = load_domains()
    results: dict = {
        "corpus": manifest,
        "overlap": overlap([f.path.read_text(encoding="utf-8") for f in files], domains),
        "tokenizers": {},
    }
    trained = {
        "plain": lambda: train_plain(files, vocab_size=args.vocab_size, progress=True),
        "supertokens": lambda: train_supertokens(
            files, vocab_size=args.vocab_size, chunking=Chunking(seed=args.seed), progress=True
        ),
        "supertokens-at-spaces": lambda: train_supertokens(
            files, vocab_size=args.vocab_size, chunking=Chunking(seed=args.seed, at_spaces=True), progress=True
        ),
    }
    for kind, train in trained.items():
        tokenizer, record = train()
        folder = save_tokenizer(out / f"{kind}-{args.vocab_size}", tokenizer, record, overwrite=True)
        row = {"folder": str(folder), "train_seconds": record.seconds, **vocabulary_stats(tokenizer)}
        results["tokenizers"][f"{kind}-{args.vocab_size}"] = {**row, **measure(tokenizer, domains)}
    for name in REFERENCE_TOKENIZERS:
        tokenizer = Tokenizer.from_file(str(resolve(name, need_weights=False).path / "tokenizer.json"))
        row = {"vocab_size": tokenizer.get_vocab_size()}
        results["tokenizers"][name] = {**row, **measure(tokenizer, domains)}
    print(markdown(results))
    for kind, row in results["tokenizers"].items():
        print(f"{kind}: lossless {row['lossless']}, encode {row['encode_seconds']:.2f} s"
              + (f", trained in {row['train_seconds']:.0f} s, {row['tokens_crossing_words']} tokens cross words" if "train_seconds" in row else ""))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
