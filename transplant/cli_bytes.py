"""`transplant bytes score|generate`: exact byte-level probabilities from tokenized LMs (parsing only)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from transplant.errors import UserError

DESCRIPTION = """\
A tokenized LM defines an exact distribution over the next byte: the sum over all token sequences
that cover the byte prefix (Phan et al. 2024). That lets models with different vocabularies be
scored on, and ensembled over, one alphabet, and lets a prompt end in the middle of a token.
Subcommands: score (bits-per-byte per file, per model and for the ensembles), generate (byte by byte).
"""


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--models", nargs="+", required=True, metavar="MODEL",
                   help="one or more models (folder, alias or offline pack such as smollm2-135m, "
                   "qwen2.5-coder-0.5b, gemma3-270m); their tokenizers may differ")
    p.add_argument("--mode", choices=["mixture", "product", "both"], default="both",
                   help="ensemble of next-byte distributions: mixture sum_i w_i p_i, product prod_i p_i^w_i "
                   "(renormalized); default both (score) / mixture (generate)")
    p.add_argument("--weights", nargs="+", type=float, metavar="W", help="one weight per model (default equal)")
    p.add_argument("--exact", action="store_true",
                   help="keep every tokenization, canonical or not (exponential: tiny vocabularies and short texts only)")
    p.add_argument("--epsilon", type=float, default=1e-6,
                   help="drop cover branches lighter than this fraction of the prefix mass (default 1e-6)")
    p.add_argument("--allow-pickle", action="store_true", help="allow .bin (pickle) weights")


def bytes_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="transplant bytes", description=DESCRIPTION,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    score = sub.add_parser("score", help="byte-level bits-per-byte of text files",
                           description="Byte-level bits-per-byte of each file under each model and, with two or more "
                           "models, under their mixture and product ensembles.")
    _common(score)
    score.add_argument("--text", nargs="+", required=True, metavar="FILE", help="UTF-8 text files to score")
    score.add_argument("--max-bytes", type=int, help="score only the first N bytes of each file (cut at a line end)")
    score.add_argument("--json", metavar="OUT", help="also write the numbers to this JSON file")
    gen = sub.add_parser("generate", help="decode bytes after a prompt that may end mid-token",
                         description="Greedy or sampled byte-by-byte continuation of a prompt; output is valid UTF-8.")
    _common(gen)
    source = gen.add_mutually_exclusive_group(required=True)
    source.add_argument("--prompt", help="the prompt text")
    source.add_argument("--prompt-file", help="read the prompt from this file")
    gen.add_argument("--max-bytes", type=int, default=64, help="bytes to generate at most (default 64)")
    gen.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (default)")
    gen.add_argument("--top-p", type=float, default=1.0, help="nucleus sampling mass (default 1)")
    gen.add_argument("--seed", type=int, help="random seed for sampling")
    gen.add_argument("--stop", help="stop after this string (e.g. a newline: $'\\n')")
    return p


def run_bytes(argv: list[str]) -> int:
    args = bytes_parser().parse_args(argv)
    if args.epsilon < 0 or args.epsilon >= 1:
        raise UserError("--epsilon must be in [0, 1)")
    if args.weights is not None and len(args.weights) != len(args.models):
        raise UserError(f"--weights needs one value per model ({len(args.models)}), got {len(args.weights)}")
    if args.command == "score":
        return _score(args)
    return _generate(args)


def _load(args):
    from transplant.bytes.model import load_byte_lm

    return [load_byte_lm(spec, allow_pickle=args.allow_pickle) for spec in args.models]


def _score(args) -> int:
    from transplant.bytes.report import score_files

    texts = {}
    for name in args.text:
        path = Path(name)
        if not path.is_file():
            raise UserError(f"text file {name} not found")
        try:
            texts[name] = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as err:
            raise UserError(f"{name} is not UTF-8 text ({err})") from None
    modes = ["mixture", "product"] if args.mode == "both" else [args.mode]
    result = score_files(_load(args), texts, modes=modes, weights=args.weights, exact=args.exact,
                         epsilon=args.epsilon, max_bytes=args.max_bytes)
    print(result.table())
    if args.json:
        Path(args.json).write_text(json.dumps(result.to_json(), indent=2) + "\n")
    return 0


def _generate(args) -> int:
    from transplant.bytes.ensemble import normalize_weights
    from transplant.bytes.generate import generate
    from transplant.bytes.next_byte import open_stream

    if args.prompt_file:
        path = Path(args.prompt_file)
        if not path.is_file():
            raise UserError(f"prompt file {args.prompt_file} not found")
        prompt = path.read_bytes()
    else:
        prompt = args.prompt.encode("utf-8")
    if args.max_bytes < 1:
        raise UserError("--max-bytes must be at least 1")
    lms = _load(args)
    streams = [open_stream(lm, prompt, exact=args.exact, epsilon=args.epsilon) for lm in lms]
    out = generate(
        streams, max_bytes=args.max_bytes, mode="mixture" if args.mode == "both" else args.mode,
        weights=normalize_weights(args.weights, len(lms)), temperature=args.temperature, top_p=args.top_p,
        stop=args.stop.encode("utf-8") if args.stop else None, seed=args.seed,
    )
    sys.stdout.write(out.text + "\n")
    print(f"[{len(out.data)} bytes, stopped: {out.stopped}, {out.positions} token positions]", file=sys.stderr)
    return 0
