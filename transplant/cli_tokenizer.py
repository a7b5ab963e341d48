"""`transplant tokenizer train`: arguments only; training is in transplant.tokenizer_train and transplant.supertokens."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from transplant.errors import UserError

EPILOG = """\
examples:
  transplant tokenizer train --vocab-size 32768 --text corpus/*.txt --output my-bpe
  transplant tokenizer train --supertokens --vocab-size 32768 --text corpus/*.txt --output my-super
  transplant --base smollm2-135m --donor-tokenizer my-super --method fvt

The output folder holds tokenizer.json, tokenizer_config.json (special tokens; the first is eos) and
tokenizer_training.json (files with their sha256, settings, time). AutoTokenizer.from_pretrained(DIR)
and `transplant --donor-tokenizer DIR` load it. Both kinds are lossless: decode(encode(text)) == text.
"""


def tokenizer_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="transplant tokenizer",
        description="Tokenizer tools. `train` learns a byte-level BPE from text files.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    train = commands.add_parser(
        "train",
        help="train a byte-level BPE (plain, or with --supertokens) from text files",
        description="Train a byte-level BPE tokenizer. Plain: Qwen2-style pre-tokenization, tokens stay inside "
        "words. --supertokens: the training text is cut into random character chunks (--chunk-min..--chunk-max, "
        "a discrete Gaussian), merges never cross a cut, and at inference nothing is split, so tokens may span "
        "words (TokenAdapt's supertokens).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=EPILOG,
    )
    train.add_argument("--supertokens", action="store_true", help="tokens may cross word boundaries")
    train.add_argument("--vocab-size", type=int, required=True, help="final vocabulary size, bytes and special tokens included")
    train.add_argument("--text", nargs="+", required=True, metavar="FILE", help="UTF-8 text files to train on")
    train.add_argument("--output", "-o", required=True, metavar="DIR", help="folder to write")
    train.add_argument("--chunk-min", type=int, help="--supertokens: shortest training chunk in characters (default 4)")
    train.add_argument("--chunk-max", type=int, help="--supertokens: longest training chunk in characters (default 23)")
    train.add_argument("--seed", type=int, help="--supertokens: seed of the chunk lengths (default 0)")
    train.add_argument(
        "--chunk-at-spaces", action="store_true", default=None,
        help="--supertokens: move each cut back to the last word end within the drawn length, so tokens start "
        "with a space like GPT-2-style vocabularies (' of the') instead of ending with one ('of the ')",
    )
    train.add_argument("--min-frequency", type=int, default=2, help="pairs seen fewer times are never merged (default 2)")
    train.add_argument(
        "--special-tokens", nargs="+", metavar="TOKEN", default=None,
        help="special tokens, ids 0.. in this order; the first is eos (default <|endoftext|> <|im_start|> <|im_end|>)",
    )
    train.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    train.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


def run_tokenizer(argv: list[str]) -> int:
    args = tokenizer_parser().parse_args(argv)
    return _train(args)


def _train(args: argparse.Namespace) -> int:
    from transplant.supertokens import Chunking, train_supertokens
    from transplant.tokenizer_train import (
        DEFAULT_SPECIAL_TOKENS,
        check_text_files,
        save_tokenizer,
        train_plain,
    )

    if args.min_frequency < 1:
        raise UserError(f"--min-frequency must be at least 1, got {args.min_frequency}")
    if Path(args.output).exists() and not args.overwrite:
        # said before training, not after minutes of it
        raise UserError(f"output folder {args.output} exists; pass --overwrite to replace it")
    chunk_settings = {
        "min_chars": args.chunk_min, "max_chars": args.chunk_max, "seed": args.seed, "at_spaces": args.chunk_at_spaces
    }
    flags = ("--chunk-min", "--chunk-max", "--seed", "--chunk-at-spaces")
    chunk_flags = [flag for flag, value in zip(flags, chunk_settings.values(), strict=True) if value is not None]
    if chunk_flags and not args.supertokens:
        raise UserError(f"{', '.join(chunk_flags)} only applies with --supertokens")
    files = check_text_files(args.text)
    options = {
        "vocab_size": args.vocab_size,
        "special_tokens": args.special_tokens or DEFAULT_SPECIAL_TOKENS,
        "min_frequency": args.min_frequency,
        "progress": not args.no_progress,
    }
    if args.supertokens:
        chunking = Chunking(**{key: value for key, value in chunk_settings.items() if value is not None})
        tokenizer, record = train_supertokens(files, chunking=chunking, **options)
    else:
        tokenizer, record = train_plain(files, **options)
    out = save_tokenizer(args.output, tokenizer, record, overwrite=args.overwrite)
    if record.vocab_size < record.vocab_size_requested:
        print(
            f"transplant: note: the text allowed only {record.vocab_size} tokens of the {record.vocab_size_requested} "
            f"asked for (no pair left with frequency >= {record.min_frequency}); give more text for a larger vocabulary",
            file=sys.stderr,
        )
    print(out)
    return 0
