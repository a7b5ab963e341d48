"""Throughput of `score_text` against a plain `model(input_ids)` loop over the same windows.

    python -m transplant.eval.bench_scorer [--model smollm2-135m] [--domain tech] [--max-bytes 16384] [--json OUT]

Both score one domain text with the same windows (those of `plan_windows`) in one process, on the CPU
with torch's default threads. The plain loop is what one would write by hand: one window per forward,
full logits, cross-entropy on the window's new targets. After one untimed round of each, runs
alternate (scorer, plain, scorer, ...) so that a change in machine load hits both; the medians of
`--repeats` runs are compared, and the requirement is scorer time / plain time <= 1.1. Both must
also agree on the text's NLL, which shows that they did the same work.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from transplant.errors import UserError
from transplant.eval.score import plan_windows, score_text, start_token

REQUIRED_RATIO = 1.1
NLL_TOLERANCE = 1e-4  # relative: batching windows changes float32 sums in the last digits


def plain_nll(model, tokenizer, text: str, *, context: int, stride: int) -> float:
    """NLL in nats of the text, one `model(input_ids)` per window, the windows `score_text` uses."""
    targets = torch.tensor(tokenizer(text, add_special_tokens=False)["input_ids"])
    inputs = torch.cat([torch.tensor([start_token(tokenizer)[1]]), targets[:-1]])
    width = min(context, len(targets))
    nll = 0.0
    with torch.inference_mode():
        for window in plan_windows(len(targets), context, stride):
            end = window.begin + width
            logits = model(input_ids=inputs[None, window.begin : end]).logits[0]
            new = logits[window.first - window.begin :].float()
            nll += F.cross_entropy(new, targets[window.first : end], reduction="sum").item()
    return nll


def benchmark(model, tokenizer, text: str, *, context: int, stride: int, batch_size: int, repeats: int) -> dict:
    """Seconds of each run of both, alternating, with tokens/s of the medians and their ratio."""
    model.eval()
    n_tokens = len(tokenizer(text, add_special_tokens=False)["input_ids"])
    scorers = {
        "score_text": lambda: score_text(
            model, tokenizer, text, context=context, stride=stride, batch_size=batch_size
        ).nll_nats,
        "plain": lambda: plain_nll(model, tokenizer, text, context=context, stride=stride),
    }
    runs: dict[str, list[float]] = {name: [] for name in scorers}
    nll = {}
    # round 0 is not timed: first forwards of each shape allocate memory and pick kernels
    for round_ in range(repeats + 1):
        for name, scorer in scorers.items():
            start = time.perf_counter()
            nll[name] = scorer()
            if round_:
                runs[name].append(time.perf_counter() - start)
    median = {name: statistics.median(seconds) for name, seconds in runs.items()}
    ratio = median["score_text"] / median["plain"]
    nll_difference = abs(nll["score_text"] - nll["plain"]) / abs(nll["plain"])
    return {
        "n_bytes": len(text.encode("utf-8")),
        "n_tokens": n_tokens,
        "n_windows": len(plan_windows(n_tokens, context, stride)),
        "context": context,
        "stride": stride,
        "batch_size": batch_size,
        "threads": torch.get_num_threads(),
        "seconds": runs,
        "median_seconds": median,
        "tokens_per_second": {name: n_tokens / seconds for name, seconds in median.items()},
        "time_ratio": ratio,
        "required_ratio": REQUIRED_RATIO,
        "meets_requirement": ratio <= REQUIRED_RATIO,
        "nll_relative_difference": nll_difference,
        "nll_agrees": nll_difference <= NLL_TOLERANCE,
    }


def format_report(report: dict) -> str:
    speed, median = report["tokens_per_second"], report["median_seconds"]
    verdict = "meets" if report["meets_requirement"] else "FAILS"
    agreement = "agree" if report["nll_agrees"] else "DISAGREE"
    return "\n".join([
        f"{report['model']} on {report['domain']}: {report['n_bytes']} bytes, {report['n_tokens']} tokens, "
        f"{report['n_windows']} windows (context {report['context']}, stride {report['stride']}), "
        f"{report['threads']} torch threads",
        f"{'score_text, batch ' + str(report['batch_size']):<22}{speed['score_text']:9.1f} tokens/s  "
        f"(median of {len(report['seconds']['score_text'])}: {median['score_text']:.2f} s)",
        f"{'plain loop, batch 1':<22}{speed['plain']:9.1f} tokens/s  "
        f"(median of {len(report['seconds']['plain'])}: {median['plain']:.2f} s)",
        f"time ratio score_text / plain = {report['time_ratio']:.3f}: {verdict} the <= {REQUIRED_RATIO} requirement",
        f"NLL {agreement} (relative difference {report['nll_relative_difference']:.1e})",
    ])


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m transplant.eval.bench_scorer", description=__doc__.split("\n")[0])
    p.add_argument("--model", default="smollm2-135m", help="model folder or any spec transplant.sources resolves")
    p.add_argument("--domain", default="tech", help="evaluation domain whose text is scored")
    p.add_argument("--max-bytes", type=int, default=16384, help="bytes of the domain text")
    p.add_argument("--context", type=int, default=1024)
    p.add_argument("--stride", type=int, default=512)
    p.add_argument("--batch-size", type=int, default=4, help="windows per forward in score_text")
    p.add_argument("--repeats", type=int, default=3, help="timed runs of each")
    p.add_argument("--json", help="write the report here")
    return p


def main(argv: list[str] | None = None) -> int:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from transplant.eval.domains import load_domains
    from transplant.sources import resolve

    args = parser().parse_args(argv)
    try:
        if args.repeats < 1:
            raise UserError("--repeats must be at least 1")
        text = load_domains([args.domain], max_bytes=args.max_bytes)[args.domain]
        folder = resolve(args.model, need_weights=True).path
        tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32, local_files_only=True)
        timings = benchmark(
            model,
            tokenizer,
            text,
            context=args.context,
            stride=args.stride,
            batch_size=args.batch_size,
            repeats=args.repeats,
        )
    except UserError as error:
        print(f"bench_scorer: error: {error}", file=sys.stderr)
        return 2
    report = {"model": args.model, "domain": args.domain} | timings
    print(format_report(report))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
