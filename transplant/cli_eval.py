"""`transplant eval`: arguments, checked before any model loads; the work is in transplant.eval."""

from __future__ import annotations

import argparse
from pathlib import Path

from transplant.errors import UserError


def eval_parser() -> argparse.ArgumentParser:
    from transplant.eval.domains import DOMAINS

    p = argparse.ArgumentParser(
        prog="transplant eval",
        description="Bits-per-byte, token perplexity and compression of one or more model folders on the same texts, "
        "each with its own tokenizer, with ratios against a reference model.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="domains:\n" + "\n".join(f"  {k:<6} {v}" for k, v in DOMAINS.items())
        + "\n\nbpb ratio = bpb(model) / bpb(reference) on the same bytes (comparable across tokenizers);\n"
        "ppl ratio = token perplexity(model) / token perplexity(reference), each with its own tokenizer (TokenAdapt's).",
    )
    p.add_argument("models", nargs="+", help="model folders (or any BASE spec accepted by `transplant`)")
    p.add_argument("--reference", help="model the ratios are taken against (evaluated too)")
    p.add_argument("--domains", default="en,tech,code,de,fr,ja,zh", help="comma-separated domain names")
    p.add_argument("--text", action="append", default=[], help="extra text file scored as its own domain")
    p.add_argument("--max-bytes", type=int, help="truncate every domain text to this many bytes")
    p.add_argument("--context", type=int, default=1024, help="tokens per scoring window")
    p.add_argument("--stride", type=int, default=512, help="new tokens scored per window")
    p.add_argument(
        "--dataset",
        action="append",
        default=[],
        metavar="NAME[:CONFIG]:SPLIT:COLUMN",
        help="Hugging Face dataset (Hub id, or a folder written by save_to_disk) scored as its own domain: rows of "
        "COLUMN up to --max-bytes (default 64 KiB); needs `pip install datasets`",
    )
    p.add_argument("--batch-size", type=int, default=4, help="windows per forward (with --lm-eval: requests too)")
    p.add_argument("--json", help="write results here")
    p.add_argument("--plot", metavar="PNG", help="bar chart of bpb ratios and bpb per domain, one colour per model")
    p.add_argument(
        "--lm-eval",
        metavar="TASKS",
        help="comma-separated lm-evaluation-harness tasks (names or task YAML files) run on every model, "
        "metrics added to the table and JSON; needs `pip install lm-eval`",
    )
    p.add_argument("--lm-eval-limit", type=int, metavar="N", help="at most N examples per lm-eval task")
    return p


def run_eval(argv: list[str]) -> int:
    from transplant.eval.datasets import parse_spec
    from transplant.eval.domains import check_names
    from transplant.eval.lm_eval_bridge import add_task_metrics, format_tasks, prepare_tasks
    from transplant.eval.plot import plot_results
    from transplant.eval.report import evaluate, format_table, write_json
    from transplant.sources import resolve

    args = eval_parser().parse_args(argv)
    for flag in ("max_bytes", "lm_eval_limit"):
        if getattr(args, flag) is not None and getattr(args, flag) < 1:
            raise UserError(f"--{flag.replace('_', '-')} must be at least 1")
    # every input is checked before anything is built, downloaded or scored: a typo should not cost a run
    names = check_names([d for d in args.domains.split(",") if d])
    files = [Path(file) for file in args.text]
    missing = [str(file) for file in files if not file.is_file()]
    if missing:
        raise UserError(f"text file {missing[0]} not found")
    specs = [parse_spec(spec) for spec in args.dataset]
    _check_domains(names + [file.stem for file in files] + [spec.domain for spec in specs])
    tasks = prepare_tasks(args.lm_eval) if args.lm_eval else None
    models = [str(resolve(m, need_weights=True).path) for m in args.models]
    reference = str(resolve(args.reference, need_weights=True).path) if args.reference else None

    texts = _load_texts(names, files, specs, args.max_bytes)
    result = evaluate(models, reference, texts, context=args.context, stride=args.stride, batch_size=args.batch_size)
    # shown before the downstream tasks run, which take long and can fail on their own
    print(format_table(result), flush=True)
    if tasks is not None:
        add_task_metrics(result, tasks, batch_size=args.batch_size, limit=args.lm_eval_limit)
        print("\n" + format_tasks(result))
    if args.json:
        write_json(result, args.json)
    if args.plot:
        plot_results(result, args.plot)
    return 0


def _check_domains(domains: list[str]) -> None:
    if not domains:
        raise UserError("nothing to score: pass --domains, --text or --dataset")
    twice = sorted({d for d in domains if domains.count(d) > 1})
    if twice:
        raise UserError(
            f"two texts would both be domain {twice[0]!r} (a domain, a --text file stem or a --dataset name)"
        )


def _load_texts(names: list[str], files: list[Path], specs: list, max_bytes: int | None) -> dict[str, str]:
    from transplant.eval.datasets import dataset_text
    from transplant.eval.domains import load_domains

    texts = load_domains(names, max_bytes=max_bytes) if names else {}
    for file in files:
        try:
            text = file.read_text(encoding="utf-8")
        except UnicodeDecodeError as error:
            raise UserError(f"text file {file} is not UTF-8 text") from error
        texts[file.stem] = text.encode()[:max_bytes].decode("utf-8", errors="ignore") if max_bytes else text
    for spec in specs:
        texts[spec.domain] = dataset_text(spec, max_bytes)
    return texts
