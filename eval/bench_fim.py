"""FIM with prompts cut mid-token: plain prompting vs token healing vs the byte-level method.

Prompts come from CPython standard library modules that the `code` evaluation domain does not use.
For each prompt a code line is picked, and the cut falls strictly inside one of its tokens (under the
model's tokenizer). Reported per method: exact match of the rest of the line and the mean
log-likelihood of the true rest of the line (nats per prompt; healing is -inf where its constraint
excludes the true first token, counted separately).

    python -m transplant.eval.bench_fim --model qwen2.5-coder-0.5b --prompts 200 --json docs/bytes_fim.json \
        [--log results/fim.jsonl]   # with --log, a stopped run continues where it stopped
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sysconfig
from pathlib import Path

from tqdm import tqdm
from transplant.eval.domains import CODE_FILES

from transplant.bytes.fim import METHODS, FimPrompt, run_fim
from transplant.bytes.model import ByteLM, load_byte_lm


def held_out_files() -> list[Path]:
    lib = Path(sysconfig.get_paths()["stdlib"])
    return sorted(p for p in lib.glob("*.py") if p.name not in CODE_FILES and not p.name.startswith("_"))


def make_prompts(lm: ByteLM, n: int, seed: int = 0, head_chars: int = 512, suffix_chars: int = 128) -> list[FimPrompt]:
    rng = random.Random(seed)
    files = held_out_files()
    prompts: list[FimPrompt] = []
    while len(prompts) < n:
        text = rng.choice(files).read_text(encoding="utf-8", errors="replace")
        lines = text.splitlines(keepends=True)
        candidates = [i for i, line in enumerate(lines) if 16 <= len(line.strip()) <= 80 and not line.lstrip().startswith("#")]
        if not candidates:
            continue
        i = rng.choice(candidates)
        line = lines[i]
        indent = len(line) - len(line.lstrip())
        ids = lm.encode(line.rstrip("\n"))
        # cut points strictly inside a token of at least two bytes, after the indentation
        cuts, offset = [], 0
        for token in ids:
            piece = lm.vocab.tokens[token] or b""
            cuts += [offset + k for k in range(1, len(piece)) if offset + k > indent]
            offset += len(piece)
        line_bytes = line.encode("utf-8")
        cuts = [c for c in cuts if _char_boundary(line_bytes, c)]
        if not cuts:
            continue
        cut = rng.choice(cuts)
        head = "".join(lines[:i])[-head_chars:]
        suffix = "".join(lines[i + 1 :])[:suffix_chars]
        prompts.append(FimPrompt(head, line_bytes[:cut].decode(), line_bytes[cut:].decode(), suffix))
    return prompts


def _char_boundary(data: bytes, cut: int) -> bool:
    return cut < len(data) and (data[cut] & 0xC0) != 0x80


def read_log(path: Path | None) -> list[dict]:
    """The per-prompt records a run appended to `path` (none when it does not exist yet)."""
    if path is None or not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.startswith("{")]


def bench(model: str, n: int, seed: int, log: Path | None = None) -> dict:
    """Every prompt through run_fim; with `log`, each record is appended there as it finishes, and the
    records already there (the same prompts: same model and seed) are kept, not recomputed."""
    lm = load_byte_lm(model)
    prompts = make_prompts(lm, n, seed)
    records = read_log(log)[:n]
    for prompt, record in zip(prompts, records):
        if (record["tail"], record["middle"]) != (prompt.tail, prompt.middle):
            raise SystemExit(f"{log} holds other prompts (another model or seed?); pass another --log")
    for prompt in tqdm(prompts[len(records):], desc="fim prompts", initial=len(records), total=len(prompts)):
        out = run_fim(lm, prompt, max_bytes=len(prompt.middle.encode()) + 16)
        records.append({"tail": prompt.tail, "middle": prompt.middle, "prediction": out.prediction,
                        "logp": out.logp, "exact": out.exact})
        line = json.dumps(records[-1], ensure_ascii=False)
        if log is not None:
            with log.open("a", encoding="utf-8") as f:
                f.write(line + "\n")
        else:
            print(line, flush=True)  # partial results survive an interruption
    return {"model": model, "prompts": len(records), "seed": seed, "summary": summarize(records), "records": records}


def summarize(records: list[dict]) -> dict:
    """Per method: exact-match rate, mean log P(true middle) in nats, the same in bits per middle byte,
    and how many prompts it gives probability zero (healing whose constraint excludes the truth)."""
    summary = {}
    for m in METHODS:
        finite = [(r["logp"][m], len(r["middle"].encode())) for r in records if math.isfinite(r["logp"][m])]
        summary[m] = {
            "exact_match": sum(r["exact"][m] for r in records) / len(records),
            "mean_logp": sum(v for v, _ in finite) / len(finite) if finite else None,
            "middle_bpb": -sum(v for v, _ in finite) / (math.log(2) * sum(b for _, b in finite)) if finite else None,
            "impossible": len(records) - len(finite),
        }
    return summary


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="qwen2.5-coder-0.5b")
    p.add_argument("--prompts", type=int, default=200)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json")
    p.add_argument("--from-log", metavar="LOG",
                   help="summarize the per-prompt JSON lines an earlier (possibly interrupted) run printed")
    p.add_argument("--log", type=Path, metavar="FILE",
                   help="append each prompt's record here; a rerun keeps those already there and goes on (runs in parts)")
    args = p.parse_args(argv)
    if args.from_log:
        records = read_log(Path(args.from_log))
        result = {"model": args.model, "prompts": len(records), "seed": args.seed, "summary": summarize(records),
                  "records": records}
    else:
        result = bench(args.model, args.prompts, args.seed, args.log)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1, ensure_ascii=False) + "\n")
    print(f"{result['prompts']} prompts")
    print("| method | exact match (rest of line) | mean log P(true middle), nats | bits per middle byte | P = 0 |")
    print("|---|---|---|---|---|")
    for m, s in result["summary"].items():
        lp = "n/a" if s["mean_logp"] is None else f"{s['mean_logp']:.3f} | {s['middle_bpb']:.3f}"
        print(f"| {m} | {s['exact_match']:.3f} | {lp} | {s['impossible']} |")


if __name__ == "__main__":
    main()
