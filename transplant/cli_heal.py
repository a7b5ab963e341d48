"""`transplant heal`: arguments only; the work is in transplant.heal."""

from __future__ import annotations

import argparse

from transplant.heal.pipeline import DEFAULT_MINUTES, OBJECTIVES, HealOptions
from transplant.heal.trainable import TRAIN_SETS

DEFAULTS = HealOptions(folder="", texts=[], output="")

EPILOG = f"""\
Trains the embedding rows the transplant made up (the donor tokens the base lacks), everything else
frozen, for --steps N or --minutes M (default {DEFAULT_MINUTES:g} minutes of training, loading excluded):

  --objective lm       next-token loss on the text with the transplanted model's tokenizer
  --objective distill  the original base model (path in transplant.json, or --teacher) teaches the
                       transplant the likelihood of every stretch of bytes both tokenizers delimit
  --train embeddings         new rows only (tied models: one matrix)
  --train embeddings+norms   plus every RMSNorm/LayerNorm weight
  --train lora               plus a LoRA on attention and MLP linears, merged into the weights on save

The training text must not share any 64-byte stretch with the evaluation domains (checked first;
`python -m transplant.eval.build_train_text` writes such text to ~/.cache/transplant/train_text/).
Checkpoints go to OUTPUT.partial/ every --checkpoint-minutes; --resume continues from the last one and
gives what an uninterrupted run gives. The output is a normal Hugging Face folder with the same tensor
names and dtypes, whose transplant.json gains a "healing" record; `transplant push` uploads it.
Several processes: `torchrun --nproc_per_node N $(which transplant) heal ...` (or `accelerate launch`):
each draws its own text, gradients are averaged, rank 0 writes.
"""


def heal_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="transplant heal",
        description="Heal a transplanted model: briefly train the new tokens' embeddings (and optionally norms "
        "or a LoRA) on text, by next-token loss or by distilling the original model at the byte level.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=EPILOG,
    )
    p.add_argument("folder", metavar="OUT_DIR", help="output folder of `transplant` (holds transplant.json)")
    p.add_argument("--text", nargs="+", required=True, metavar="FILE", help="UTF-8 training text files, drawn equally; text of the language(s) the model will run heals "
                   "those most (English text only: 1.118x the original's bpb after 30 minutes, against 1.159x with a "
                   "nine-file mix, README 'Healing')")
    p.add_argument("--output", required=True, metavar="HEALED_DIR", help="where the healed model goes")
    p.add_argument("--steps", type=int, help="optimizer steps to train")
    p.add_argument("--minutes", type=float, help=f"minutes of training (default {DEFAULT_MINUTES:g}; not with --steps)")
    p.add_argument("--objective", choices=OBJECTIVES, default=DEFAULTS.objective,
                   help=f"training loss (default {DEFAULTS.objective}: it healed more per minute, README 'Healing')")
    p.add_argument("--train", choices=TRAIN_SETS, default="embeddings", help="what trains (default embeddings)")
    p.add_argument("--lr", type=float, default=DEFAULTS.lr,
                   help=f"Adam learning rate after warm-up (default {DEFAULTS.lr:g}; LoRA matrices take a tenth)")
    p.add_argument("--warmup", type=int, default=DEFAULTS.warmup,
                   help=f"steps of linear warm-up; constant afterwards (default {DEFAULTS.warmup})")
    p.add_argument("--batch-size", type=int, default=DEFAULTS.batch_size,
                   help=f"text windows per step and process (default {DEFAULTS.batch_size})")
    p.add_argument("--seq-len", type=int, default=DEFAULTS.seq_len, help=f"tokens per window (default {DEFAULTS.seq_len})")
    p.add_argument("--seed", type=int, default=0, help="seed of the window draws and LoRA init (default 0)")
    p.add_argument("--lora-rank", type=int, default=8, help="--train lora: rank (default 8)")
    p.add_argument("--weight-decay", type=float, default=0.0, help="--train lora: AdamW weight decay of the LoRA matrices")
    p.add_argument("--teacher", metavar="PATH", help="the original base model folder, when the path in transplant.json is gone")
    p.add_argument("--device", help="cpu, cuda, cuda:1, ... (default: cuda when available)")
    p.add_argument("--checkpoint-minutes", type=float, default=5.0, help="minutes between checkpoints (default 5; 0: off)")
    p.add_argument("--checkpoint-steps", type=int, help="also checkpoint every N steps")
    p.add_argument("--resume", action="store_true", help="continue from HEALED_DIR.partial/")
    p.add_argument("--overwrite", action="store_true", help="replace HEALED_DIR (and any HEALED_DIR.partial/)")
    p.add_argument("--allow-eval-overlap", action="store_true",
                   help="skip the check that the text shares nothing with the evaluation domains (tests, own text)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


def run_heal(argv: list[str]) -> int:
    from transplant.heal.pipeline import heal

    args = heal_parser().parse_args(argv)
    out = heal(HealOptions(
        folder=args.folder, texts=args.text, output=args.output, steps=args.steps, minutes=args.minutes,
        objective=args.objective, train=args.train, lr=args.lr, warmup=args.warmup, batch_size=args.batch_size,
        seq_len=args.seq_len, seed=args.seed, weight_decay=args.weight_decay, lora_rank=args.lora_rank,
        teacher=args.teacher, device=args.device, resume=args.resume, overwrite=args.overwrite,
        allow_eval_overlap=args.allow_eval_overlap, checkpoint_steps=args.checkpoint_steps,
        checkpoint_minutes=args.checkpoint_minutes or None, progress=not args.no_progress,
    ))
    if out is not None:
        print(out)
    return 0
