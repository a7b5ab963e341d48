"""`transplant dynamic eval`: arguments, checked before any model loads; the work is in transplant.dynamic."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from transplant.errors import UserError

EPILOG = """\
How it works: every text is cut into chunks of at most --chunk-tokens base tokens (at line ends where
possible), and --batch-size chunks form a batch. Per batch, the most frequent adjacent pair of tokens
that may merge (see --boundary) is merged everywhere in the batch, m times. A merged token's input
row is the mean of its base pieces' rows (fvt); the LM head gets one row per new token of the batch
(the mean of the pieces' output rows, shifted by --output-bias nats), and bits-per-byte is the NLL of
the merged sequences over the UTF-8 bytes of the chunks. m = 0 is the base model, exactly.

Columns: `-len` = sequence length saved against the base tokenization, `bpb` = bits per byte,
`d bpb` = change against m = 0 on the same chunks.

example:
  transplant dynamic eval --base smollm2-135m --merges 0,10,30,100,200 --domains en,code,de --json dyn.json
"""

BOUNDARY_HELP = (
    "where merges may happen: word (never across whitespace, except inside whitespace runs; default), "
    "word-hyphen (word, and punctuation stays apart except hyphens), pretoken (inside one pre-token of the "
    "base tokenizer; for byte-level BPE vocabularies that leaves few pairs), none (anything but special tokens)"
)


def dynamic_parser() -> argparse.ArgumentParser:
    from transplant.dynamic.boundaries import MODES

    p = argparse.ArgumentParser(
        prog="transplant dynamic",
        description="Dynamic tokenization (Feher, Vulic & Minixhofer 2024): batch-level BPE on top of a model's "
        "own tokenizer, merged tokens embedded on the fly. `eval` measures what it saves and what it costs.",
    )
    commands = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    ev = commands.add_parser(
        "eval",
        help="sequence length reduction and bits-per-byte per domain for several merge counts",
        description="Sequence length reduction and bits-per-byte of a base model on texts tokenized dynamically, "
        "for each number of merges per batch.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=EPILOG,
    )
    ev.add_argument("--base", required=True, help="the causal LM (any BASE spec accepted by `transplant`)")
    ev.add_argument("--hypernet", metavar="HN_DIR", help="embed merged tokens with this hypernetwork (from `transplant hypernet train` on the same base) instead of fvt")
    ev.add_argument("--merges", default="0,10,30,100,200", help="comma-separated merges per batch (default 0,10,30,100,200)")
    ev.add_argument("--target-reduction", type=float, metavar="FRACTION",
                    help="also stop merging a batch once it is this much shorter (e.g. 0.1)")
    ev.add_argument("--domains", help="comma-separated evaluation domains (default en,code,de, or none with --text)")
    ev.add_argument("--text", nargs="+", default=[], metavar="FILE", help="text files scored as their own domain")
    ev.add_argument("--max-bytes", type=int, default=64 * 1024, help="read at most this many bytes per text (default 65536)")
    ev.add_argument("--batch-size", type=int, default=32, help="chunks merged together (default 32, the paper's)")
    ev.add_argument("--chunk-tokens", type=int, default=256, help="base tokens per chunk at most (default 256)")
    ev.add_argument("--max-batches", type=int, default=1, help="batches scored per text (default 1; 0 = all)")
    ev.add_argument("--boundary", choices=MODES, default="word", help=BOUNDARY_HELP)
    ev.add_argument("--output-bias", type=float, default=0.0, metavar="NATS",
                    help="shift the new tokens' logits by NATS (see `transplant --help`); 0 = off")
    ev.add_argument("--cache-size", type=int, default=4096, help="new-token embeddings kept across batches (default 4096)")
    ev.add_argument("--json", metavar="OUT", help="write the results here")
    ev.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


def parse_merges(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError as error:
        raise UserError(f"--merges expects comma-separated integers, got {text!r}") from error
    if not values or min(values) < 0:
        raise UserError("--merges needs at least one merge count, none negative")
    return values


def run_dynamic(argv: list[str]) -> int:
    args = dynamic_parser().parse_args(argv)
    return _eval(args)


def _eval(args: argparse.Namespace) -> int:
    from transplant.dynamic.evaluate import DynamicEvalOptions, evaluate, format_table
    from transplant.eval.domains import check_names
    from transplant.sources import resolve

    merges = parse_merges(args.merges)
    for flag in ("max_bytes", "batch_size", "cache_size"):
        if getattr(args, flag) < 1:
            raise UserError(f"--{flag.replace('_', '-')} must be at least 1")
    if args.chunk_tokens < 2:
        raise UserError("--chunk-tokens must be at least 2")
    if args.max_batches < 0:
        raise UserError("--max-batches cannot be negative")
    if args.target_reduction is not None and not 0.0 < args.target_reduction < 1.0:
        raise UserError("--target-reduction is a fraction between 0 and 1, e.g. 0.1")
    if args.hypernet is not None:
        from transplant.hypernet.model import load_hypernet

        load_hypernet(args.hypernet)  # a wrong folder fails before the model loads
    files = [Path(f) for f in args.text]
    for file in files:
        if not file.is_file():
            raise UserError(f"text file {file} not found")
    domains = args.domains if args.domains is not None else ("" if files else "en,code,de")
    names = check_names([d for d in domains.split(",") if d])
    base = resolve(args.base, need_weights=True)
    options = DynamicEvalOptions(
        merges=merges,
        batch_size=args.batch_size,
        chunk_tokens=args.chunk_tokens,
        max_batches=args.max_batches or None,
        boundary=args.boundary,
        output_bias=args.output_bias,
        cache_size=args.cache_size,
        target_reduction=args.target_reduction,
        hypernet=args.hypernet,
        progress=not args.no_progress,
    )
    result = evaluate(base.path, _texts(names, files, args.max_bytes), options)
    print(format_table(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0


def _texts(names: list[str], files: list[Path], max_bytes: int) -> dict[str, str]:
    from transplant.eval.domains import load_domains

    texts = load_domains(names, max_bytes=max_bytes) if names else {}
    for file in files:
        try:
            file.read_bytes().decode("utf-8")
        except UnicodeDecodeError as error:
            raise UserError(f"text file {file} is not UTF-8 text") from error
        # a cut inside a character drops that character only
        data = file.read_bytes()[:max_bytes].decode("utf-8", errors="ignore")
        if file.stem in texts:
            raise UserError(f"two text files are both called {file.stem!r}")
        texts[file.stem] = data
    if not any(t.strip() for t in texts.values()):
        raise UserError("nothing to score: the texts are empty")
    return texts
