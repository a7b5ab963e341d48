"""`transplant hypernet train`: parse, then delegate to transplant.hypernet.train."""

from __future__ import annotations

import argparse

from transplant.errors import UserError


def hypernet_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="transplant hypernet",
        description="ZeTT hypernetworks: train once per base model, then `transplant --method hypernet "
        "--hypernet HN_DIR --base BASE --donor-tokenizer ANY` predicts embeddings for any tokenizer.",
    )
    sub = p.add_subparsers(dest="action", required=True)
    t = sub.add_parser(
        "train",
        help="train a hypernetwork against a frozen base model",
        description="Train a hypernetwork on text: every step samples a tokenizer from the batch's text, the "
        "frozen base runs on the embeddings predicted for it, and the LM loss (plus reconstruction of base "
        "tokens from their pieces) trains the network. Runs unchanged under `torchrun --nproc_per_node N` "
        "or `accelerate launch` (data parallel). Text overlapping the evaluation domains is refused; "
        "`python -m transplant.eval.build_train_text` writes text that does not.",
    )
    t.add_argument("--base", required=True, help="the base model (folder, Hub id or offline pack name)")
    t.add_argument("--text", nargs="+", required=True, metavar="FILE", help="UTF-8 training text files")
    t.add_argument("--output", "-o", required=True, help="hypernetwork folder to write (config.json + model.safetensors)")
    budget = t.add_mutually_exclusive_group(required=True)
    budget.add_argument("--steps", type=int, help="optimizer steps")
    budget.add_argument("--minutes", type=float, help="wall-clock training minutes (setup not counted)")
    t.add_argument("--batch-size", type=int, default=8, help="text windows per step and process (default 8)")
    t.add_argument("--seq-len", type=int, default=128, help="tokens per window (default 128)")
    t.add_argument("--vocab-size", type=int, default=8192, help="pieces drawn from the text per sampled tokenizer, bytes included; the share of the base "
                   "vocabulary (--base-keep) comes on top (default 8192)")
    t.add_argument("--base-keep", type=float, nargs=2, default=(0.5, 1.0), metavar=("LOW", "HIGH"),
                   help="share of the base vocabulary in each sampled one, drawn per step between LOW and HIGH, so that "
                   "text is cut as the base and real donor vocabularies cut it (default 0.5 1.0)")
    t.add_argument("--lr", type=float, default=5e-4, help="peak learning rate (default 5e-4)")
    t.add_argument("--recon-steps", type=int, default=100, help="initial steps of reconstruction only (default 100)")
    t.add_argument("--aux-weight", type=float, default=0.5, help="weight of the reconstruction loss (default 0.5)")
    t.add_argument("--width", type=int, default=128, help="transformer width (default 128)")
    t.add_argument("--layers", type=int, default=2, help="transformer layers (default 2)")
    t.add_argument("--max-pieces", type=int, default=8, help="base pieces read per token (default 8)")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--checkpoint-minutes", type=float, default=10.0, help="minutes between checkpoints (default 10)")
    t.add_argument("--resume", action="store_true", help="continue from OUTPUT.partial/checkpoint.pt")
    t.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    t.add_argument("--allow-eval-overlap", action="store_true", help="skip the check against the evaluation domains")
    t.add_argument("--device", help="cpu, cuda, cuda:1 (default: cuda when available)")
    t.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def run_hypernet(argv: list[str]) -> int:
    from transplant.hypernet.train import TrainOptions, train

    args = hypernet_parser().parse_args(argv)
    for name in ("batch_size", "seq_len", "width", "layers", "max_pieces"):
        if getattr(args, name) <= 0:
            raise UserError(f"--{name.replace('_', '-')} must be positive")
    low, high = args.base_keep
    if not 0 <= low <= high <= 1:
        raise UserError(f"--base-keep LOW HIGH must satisfy 0 <= LOW <= HIGH <= 1, got {low:g} {high:g}")
    options = TrainOptions(
        base=args.base, texts=args.text, output=args.output, steps=args.steps, minutes=args.minutes,
        batch_size=args.batch_size, seq_len=args.seq_len, vocab_size=args.vocab_size, lr=args.lr,
        base_keep=tuple(args.base_keep),
        recon_steps=args.recon_steps, aux_weight=args.aux_weight, width=args.width, layers=args.layers,
        max_pieces=args.max_pieces, seed=args.seed, checkpoint_minutes=args.checkpoint_minutes,
        resume=args.resume, overwrite=args.overwrite, allow_eval_overlap=args.allow_eval_overlap,
        device=args.device, progress=not args.no_progress,
    )
    print(train(options).output)
    return 0
