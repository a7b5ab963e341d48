"""`transplant eval`: argument parsing only; the work is in transplant.eval."""

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
    p.add_argument("--batch-size", type=int, default=4, help="windows per forward")
    p.add_argument("--json", help="write results here")
    return p


def run_eval(argv: list[str]) -> int:
    from transplant.eval.domains import load_domains
    from transplant.eval.report import evaluate, format_table, write_json
    from transplant.sources import resolve

    args = eval_parser().parse_args(argv)
    names = [d for d in args.domains.split(",") if d]
    texts = load_domains(names, max_bytes=args.max_bytes) if names else {}
    for file in args.text:
        path = Path(file)
        if not path.is_file():
            raise UserError(f"text file {file} not found")
        texts[path.stem] = path.read_text(encoding="utf-8")
        if args.max_bytes:
            texts[path.stem] = texts[path.stem].encode()[: args.max_bytes].decode("utf-8", errors="ignore")
    models = [str(resolve(m, need_weights=True).path) for m in args.models]
    reference = str(resolve(args.reference, need_weights=True).path) if args.reference else None
    result = evaluate(models, reference, texts, context=args.context, stride=args.stride, batch_size=args.batch_size)
    print(format_table(result))
    if args.json:
        write_json(result, args.json)
    return 0
