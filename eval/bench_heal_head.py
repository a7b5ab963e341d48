"""Seconds per healing step with the chunked head (transplant.heal.head) against the whole logits,
measured in one process on the same batches, alternating, so that machine noise hits both alike.

    python -m transplant.eval.bench_heal_head [--folder results/compare_peer2/ours-omp-k8] [--steps 6] [--json docs/heal-head.json]

A step is what the healing loop times: the loss (lm objective, 4 windows x 256 tokens by default)
and its backward. The first step of each path is a warm-up and is not counted. Both paths must give
the same loss and the same row gradient; the benchmark stops with an error where they do not.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m transplant.eval.bench_heal_head", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--folder", default="results/compare_peer2/ours-omp-k8", help="a transplant folder")
    parser.add_argument("--steps", type=int, default=6, help="timed steps per path, after one warm-up each")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--seq-len", type=int, default=256)
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args(argv)

    from transplant.eval.bench_heal import training_texts
    from transplant.heal.objectives import lm_loss, token_logprobs
    from transplant.heal.pipeline import HealOptions, prepare
    from transplant.train_text import sample_windows

    torch.manual_seed(0)
    session = prepare(HealOptions(folder=args.folder, texts=training_texts(None), steps=1, output=tempfile.mkdtemp() + "/out",
                                  batch_size=args.batch_size, seq_len=args.seq_len, progress=False))
    trainable, task = session.trainable, session.task
    if not trainable.chunked_head:
        print("this model's head is not a plain product: healing uses the whole logits, nothing to compare", file=sys.stderr)
        return 1

    def whole(batch):
        targets = batch.student.targets
        return lm_loss(token_logprobs(trainable.logits(batch.student.inputs), targets), targets)

    def chunked(batch):
        return task.loss(trainable, batch, session.device)

    rows = trainable.row_params()[0]
    seconds: dict[str, list[float]] = {"whole logits": [], "chunked head": []}
    rng = np.random.default_rng(0)
    for step in range(args.steps + 1):
        batch = task.batch(lambda: sample_windows(session.texts, 1, session.config.window_bytes, rng)[0])
        results = {}
        for name, path in (("whole logits", whole), ("chunked head", chunked))[:: 1 if step % 2 else -1]:
            rows.grad = None
            start = time.perf_counter()
            loss = path(batch)
            loss.backward()
            elapsed = time.perf_counter() - start
            active = trainable.active_rows(batch.tokens())
            results[name] = (loss.item(), rows.grad[active].clone())
            if step:
                seconds[name].append(elapsed)
        (loss_a, grad_a), (loss_b, grad_b) = results.values()
        # float32 sums in another order: compare the gradients as a whole, not element by element
        grad_error = float((grad_a - grad_b).norm() / grad_a.norm())
        if abs(loss_a - loss_b) > 1e-4 * abs(loss_a) or grad_error > 1e-3:
            raise SystemExit(f"the two heads disagree at step {step}: loss {loss_a:.6f} vs {loss_b:.6f}, "
                             f"row gradients differ by {grad_error:.2e} of their norm")
        print(f"step {step}: loss {loss_a:.4f}" + "".join(f"  {n} {s[-1]:.2f} s" for n, s in seconds.items() if step and s))

    report = {name: {"median_s": round(statistics.median(s), 3), "steps": [round(x, 3) for x in s]} for name, s in seconds.items()}
    ratio = report["whole logits"]["median_s"] / report["chunked head"]["median_s"]
    print(f"median s/step: whole logits {report['whole logits']['median_s']:.2f}, chunked head "
          f"{report['chunked head']['median_s']:.2f} ({ratio:.2f}x faster); {args.batch_size} x {args.seq_len} tokens, "
          f"{torch.get_num_threads()} threads")
    if args.json:
        Path(args.json).write_text(json.dumps({"folder": args.folder, "batch_size": args.batch_size, "seq_len": args.seq_len,
                                               "threads": torch.get_num_threads(), "speedup": round(ratio, 3),
                                               **report}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
