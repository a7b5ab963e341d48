"""Byte-level vs token-level bits-per-byte, their cost, and ensembles across vocabularies, in one run.

For each model and domain: token-level scoring (`transplant.eval.score`, one window over the whole
slice) and byte-level scoring (`transplant.bytes.score_bytes`) of the same bytes, timed back to back in
the same process so machine load affects both alike. Then the mixture and product ensembles of the
byte-level next-byte distributions of the first two models, and of all of them.

    python -m transplant.eval.bench_bytes --max-bytes 1024 --json docs/bytes.json
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import time

from transplant.eval.domains import DOMAINS, load_domains
from transplant.eval.score import score_text

from transplant.bytes.ensemble import combine, normalize_weights, observed_logprobs
from transplant.bytes.likelihood import score_bytes
from transplant.bytes.model import load_byte_lm

MODELS = ("smollm2-135m", "qwen2.5-coder-0.5b", "gemma3-270m")


def bench(models: list[str], domains: list[str], max_bytes: int, epsilon: float) -> dict:
    texts = load_domains(domains, max_bytes=max_bytes)
    rows, dists = [], {}
    for spec in models:
        lm = load_byte_lm(spec)
        for domain, text in texts.items():
            data = text.encode("utf-8")
            started = time.perf_counter()
            token = score_text(lm.model, lm.tokenizer, text, context=8192, stride=8192)
            token_s = time.perf_counter() - started
            byte = score_bytes(lm, data, epsilon=epsilon, keep_dists=True)
            dists[(spec, domain)] = byte.dists
            row = {
                "model": spec, "domain": domain, "bytes": len(data),
                "token_bpb": token.bits_per_byte, "byte_bpb": byte.bits_per_byte,
                "canonical_bpb": -byte.canonical_logp / (math.log(2) * len(data)),
                "tokens_per_byte": token.tokens_per_byte, "forwards_per_byte": byte.forwards_per_byte,
                "calls": byte.calls, "token_seconds": token_s, "byte_seconds": byte.seconds,
                "wall_ratio": byte.seconds / token_s, "load_1min": os.getloadavg()[0],
            }
            rows.append(row)
            print(json.dumps(row), flush=True)
        del lm
        gc.collect()
    ensembles = []
    groups = [models[:2], models] if len(models) > 2 else [models]
    for group in groups:
        weights = normalize_weights(None, len(group))
        for domain, text in texts.items():
            data = text.encode("utf-8")
            single = {m: _bpb(observed_logprobs(dists[(m, domain)], data)) for m in group}
            entry = {"models": group, "domain": domain, "single": single}
            for mode in ("mixture", "product"):
                logp = observed_logprobs(combine([dists[(m, domain)] for m in group], mode, weights), data)
                entry[mode] = _bpb(logp)
            entry["best_single"] = min(single.values())
            ensembles.append(entry)
            print(json.dumps(entry), flush=True)
    return {"max_bytes": max_bytes, "epsilon": epsilon, "cpu_threads": os.cpu_count(), "rows": rows, "ensembles": ensembles}


def _bpb(logp) -> float:
    return -float(logp.sum()) / (math.log(2) * len(logp))


def markdown(result: dict) -> str:
    out = ["| model | domain | bytes | token bpb | byte bpb | byte - token | tokens/byte | forwards/byte | wall ratio |",
           "|---|---|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        out.append(
            f"| {r['model']} | {r['domain']} | {r['bytes']} | {r['token_bpb']:.4f} | {r['byte_bpb']:.4f} | "
            f"{r['byte_bpb'] - r['token_bpb']:+.4f} | {r['tokens_per_byte']:.3f} | {r['forwards_per_byte']:.3f} | "
            f"{r['wall_ratio']:.2f}x |"
        )
    out += ["", "| models | domain | " + "single bpb | mixture | product | beats best single? |", "|---|---|---|---|---|---|"]
    for e in result["ensembles"]:
        single = ", ".join(f"{m.split('-')[0]} {v:.4f}" for m, v in e["single"].items())
        best = min(e["mixture"], e["product"])
        verdict = f"yes ({best - e['best_single']:+.4f})" if best < e["best_single"] else f"no ({best - e['best_single']:+.4f})"
        out.append(f"| {'+'.join(m.split('-')[0] for m in e['models'])} | {e['domain']} | {single} | "
                   f"{e['mixture']:.4f} | {e['product']:.4f} | {verdict} |")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=list(MODELS))
    p.add_argument("--domains", default=",".join(DOMAINS))
    p.add_argument("--max-bytes", type=int, default=1024)
    p.add_argument("--epsilon", type=float, default=1e-6)
    p.add_argument("--json", help="write the raw numbers here")
    args = p.parse_args(argv)
    result = bench(args.models, args.domains.split(","), args.max_bytes, args.epsilon)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
    print(markdown(result))


if __name__ == "__main__":
    main()
