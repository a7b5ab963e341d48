"""Dynamic tokenization, measured: the quality curve, merge throughput, and prefill time.

    python -m transplant.eval.bench_dynamic [--base smollm2-135m] [--domains en,code,de] [--merges 0,10,30,100,200]
        [--batch-size 32] [--chunk-tokens 256] [--boundary word] [--hypernet HN_DIR] [--compare OTHER.json]
        [--json docs/dynamic.json] [--plot docs/dynamic.png]

1. Curve: per domain, the first `batch-size` chunks of the domain text form one batch; for every m
   the batch is merged m times and scored (fvt embeddings, or the hypernetwork's with --hypernet;
   --compare draws another run's curve dashed in the same plot). m = 0 is checked against
   `transplant.eval.score.score_text` on the same chunks: the NLL must be equal, not close.
2. Throughput: the same batches merged max(m) times by the numba kernel and by the plain Python
   reference (tests/pair_merge_reference.py), alternating, in one run; both must give the same merges.
   Tokens per second = base tokens of the batch / seconds for the whole merge loop.
3. Prefill: per domain, end to end from the chunk texts: static = tokenize + forward; dynamic =
   tokenize + merge + embed new tokens (fresh cache) + forward, the forward either one left-padded
   batch or one per sequence (see `prefill_times`). Alternating, medians of the timed rounds after
   one untimed round each.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch
from transplant.eval.domains import load_domains
from transplant.eval.score import score_text

from transplant.dynamic.batches import tokenize_batch
from transplant.dynamic.cache import EmbeddingCache
from transplant.dynamic.embeddings import load_provider
from transplant.dynamic.evaluate import DynamicEvalOptions, chunk_batches, load_model
from transplant.dynamic.merging import TokenTable, merge_batch
from transplant.dynamic.scoring import batch_inputs, prefill, score_batches
from transplant.errors import UserError

REQUIRED_SPEEDUP = 20.0  # the bar for the kernel over the Python reference


def reference_state_class():
    """The tests' plain Python reference; it lives beside the tests, which a source checkout has."""
    path = Path(__file__).resolve().parents[1] / "tests" / "pair_merge_reference.py"
    if not path.is_file():
        raise UserError(f"{path} not found: the throughput comparison needs a source checkout with its tests")
    spec = importlib.util.spec_from_file_location("pair_merge_reference", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.ReferenceState


def curve(model, tokenizer, table, batches: dict, merges: list[int], hypernet: str | None, vocab) -> dict:
    out = {}
    for name, batch in batches.items():
        cache = EmbeddingCache(load_provider(model, hypernet, vocab=vocab))
        base = [score_text(model, tokenizer, text, context=1024, stride=512) for text in batch.texts]
        base_nll = sum(score.nll_nats for score in base)
        rows = []
        for m in merges:
            start = time.perf_counter()
            score = score_batches(model, [batch], table, cache, m, progress=f"{name} m={m}")
            rows.append({
                "merges": m, "merges_done": score.merges_done, "tokens": score.tokens,
                "base_tokens": score.base_tokens, "new_tokens": score.new_tokens, "nll_nats": score.nll_nats,
                "reduction": score.reduction, "bits_per_byte": score.bits_per_byte,
                "seconds": time.perf_counter() - start,
            })
        for row in rows:
            row["bpb_change"] = row["bits_per_byte"] / rows[0]["bits_per_byte"] - 1.0
        out[name] = {
            "n_bytes": batch.n_bytes, "n_sequences": len(batch.ids),
            "score_text_nll": base_nll, "m0_equals_score_text": rows[0]["nll_nats"] == base_nll if merges[0] == 0 else None,
            "settings": rows,
        }
        print(f"{name}: m=0 nll {rows[0]['nll_nats']!r} vs score_text {base_nll!r}", file=sys.stderr)
    return out


def throughput(vocab, batches: dict, merges: int, repeats: int) -> dict:
    from transplant.dynamic.merging import KernelState

    reference = reference_state_class()
    out = {}
    for name, batch in batches.items():
        runs = {"numba": [], "python": []}
        results = {}
        for round_ in range(repeats + 1):  # round 0 compiles the kernel and warms caches
            for kind, times in runs.items():
                # tables and states are built outside the clock: only the merge loop is timed
                table = TokenTable.from_vocab(vocab)
                if kind == "numba":
                    state = KernelState(batch.ids, batch.joinable, table.base_size + merges + 1)
                else:
                    state = reference(batch.ids, batch.joinable)
                start = time.perf_counter()
                dyn = merge_batch(batch, table, merges, state=state)
                seconds = time.perf_counter() - start
                results[kind] = dyn.merges
                if round_:
                    times.append(seconds)
        if results["numba"] != results["python"]:
            raise RuntimeError(f"{name}: the kernel and the reference merged differently")
        median = {kind: statistics.median(s) for kind, s in runs.items()}
        tokens = batch.n_text_tokens + len(batch.ids)
        out[name] = {
            "tokens": tokens, "merges": len(results["numba"]), "seconds": runs,
            "tokens_per_second": {kind: tokens / s for kind, s in median.items()},
            "speedup": median["python"] / median["numba"],
            "meets_required_speedup": median["python"] / median["numba"] >= REQUIRED_SPEEDUP,
        }
    return out


def prefill_times(model, tokenizer, vocab, texts: dict, boundary: str, merges: int, repeats: int) -> dict:
    """Static and dynamic prefill of the same chunks, end to end, in two layouts: `padded` (one
    left-padded batch forward: its cost follows the longest sequence) and `unpadded` (one forward per
    sequence: its cost follows the tokens)."""

    def run(chunks, dynamic, layout):
        batch = tokenize_batch(tokenizer, chunks, boundary)
        if dynamic:
            dyn = merge_batch(batch, TokenTable.from_vocab(vocab), merges)
            inputs = batch_inputs(dyn, EmbeddingCache(load_provider(model)))
            ids, rows = inputs.ids, inputs.rows
        else:
            ids, rows = [torch.from_numpy(seq) for seq in batch.ids], None
        if layout == "padded":
            prefill(model, ids, rows)
        else:
            for seq in ids:
                prefill(model, [seq], rows)
        return sum(len(seq) - 1 for seq in ids), max(len(seq) for seq in ids)

    out = {}
    for name, chunks in texts.items():
        out[name] = {"merges": merges}
        for layout in ("padded", "unpadded"):
            runs = {"static": [], "dynamic": []}
            shape = {}
            for round_ in range(repeats + 1):  # round 0: first forwards of each shape allocate
                for kind, times in runs.items():
                    start = time.perf_counter()
                    shape[kind] = run(chunks, kind == "dynamic", layout)
                    if round_:
                        times.append(time.perf_counter() - start)
            median = {kind: statistics.median(s) for kind, s in runs.items()}
            out[name][layout] = {
                "seconds": runs, "median_seconds": median,
                "time_saved": 1 - median["dynamic"] / median["static"],
            }
            print(f"prefill {name} {layout}: {out[name][layout]['time_saved']:.1%} less time", file=sys.stderr)
        out[name]["tokens"] = {kind: s[0] for kind, s in shape.items()}
        out[name]["padded_width"] = {kind: s[1] for kind, s in shape.items()}
        out[name]["reduction"] = 1 - shape["dynamic"][0] / shape["static"][0]
    return out


def _label(result: dict) -> str:
    return "hypernetwork" if result["settings"].get("hypernet") else "fvt"


def plot(result: dict, path: str, other: dict | None = None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    runs = [(result, "-")] + ([(other, "--")] if other else [])
    for i, name in enumerate(result["curve"]):
        for run, style in runs:
            text = run["curve"].get(name)
            if text is None:
                continue
            xs = [100 * r["reduction"] for r in text["settings"]]
            ys = [100 * r["bpb_change"] for r in text["settings"]]
            ax.plot(xs, ys, style, marker="o", color=f"C{i}", label=f"{name} ({_label(run)})")
            for r, x, y in zip(text["settings"], xs, ys, strict=True):
                ax.annotate(str(r["merges"]), (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7)
    ax.axhline(0, color="grey", linewidth=0.6)
    ax.set_xlabel("sequence length reduction (%)")
    ax.set_ylabel("bits-per-byte change vs m = 0 (%)")
    s = result["settings"]
    embeddings = " vs ".join(_label(run) for run, _ in runs)
    ax.set_title(f"{Path(s['base']).name}: dynamic BPE, {embeddings} embeddings\n"
                 f"batch {s['batch_size']} x {s['chunk_tokens']} tokens, boundary {s['boundary']}; labels: merges",
                 fontsize=9)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def markdown(result: dict) -> str:
    names = list(result["curve"])
    lines = ["| m | " + " | ".join(f"{n} -len | {n} bpb | {n} Δbpb" for n in names) + " |",
             "|---|" + "---|---|---|" * len(names)]
    for i, m in enumerate(r["merges"] for r in result["curve"][names[0]]["settings"]):
        cells = []
        for n in names:
            r = result["curve"][n]["settings"][i]
            cells.append(f"{r['reduction']:.1%} | {r['bits_per_byte']:.4f} | {r['bpb_change']:+.2%}")
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m transplant.eval.bench_dynamic", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--base", default="smollm2-135m")
    p.add_argument("--domains", default="en,code,de")
    p.add_argument("--merges", default="0,10,30,100,200")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--chunk-tokens", type=int, default=256)
    p.add_argument("--boundary", default="word")
    p.add_argument("--max-bytes", type=int, default=256 * 1024)
    p.add_argument("--prefill-merges", type=int, default=100)
    p.add_argument("--prefill-domains", default="en,code,de")
    p.add_argument("--repeats", type=int, default=3, help="timed rounds of throughput and prefill")
    p.add_argument("--prefill-repeats", type=int, help="timed rounds of prefill (default --repeats)")
    p.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    p.add_argument("--skip", default="", help="comma-separated parts to skip: curve, throughput, prefill")
    p.add_argument("--hypernet", help="embed merged tokens with this hypernetwork folder (default fvt)")
    p.add_argument("--compare", help="JSON of another run whose curve is drawn dashed in the plot")
    p.add_argument("--json")
    p.add_argument("--plot")
    args = p.parse_args(argv)
    from transplant.cli_dynamic import parse_merges
    from transplant.sources import resolve
    from transplant.vocab import load_vocab

    if args.threads:
        torch.set_num_threads(args.threads)
    merges = parse_merges(args.merges)
    skip = set(filter(None, args.skip.split(",")))
    folder = resolve(args.base, need_weights=True).path
    model, tokenizer = load_model(folder)
    vocab = load_vocab(folder)
    options = DynamicEvalOptions(merges=merges, batch_size=args.batch_size, chunk_tokens=args.chunk_tokens,
                                 boundary=args.boundary)
    texts = load_domains(args.domains.split(","), max_bytes=args.max_bytes)
    batches = {name: chunk_batches(tokenizer, text, options)[0] for name, text in texts.items()}
    for name, batch in batches.items():
        if len(batch.ids) < args.batch_size:
            raise UserError(f"{name}: only {len(batch.ids)} chunks; raise --max-bytes")
    result: dict = {
        "settings": {**vars(args), "base": str(folder), "torch_threads": torch.get_num_threads(),
                     "load_average_start": os.getloadavg(),
                     "embeddings": "fvt" if args.hypernet is None else f"hypernet {args.hypernet}"},
    }
    if "curve" not in skip:
        result["curve"] = curve(model, tokenizer, TokenTable.from_vocab(vocab), batches, merges, args.hypernet, vocab)
        print(markdown(result))
    if "throughput" not in skip:
        result["throughput"] = throughput(vocab, batches, max(merges), args.repeats)
        for name, t in result["throughput"].items():
            print(f"merge throughput {name}: numba {t['tokens_per_second']['numba']:,.0f} tokens/s, "
                  f"python {t['tokens_per_second']['python']:,.0f} tokens/s, {t['speedup']:.1f}x")
    if "prefill" not in skip:
        chosen = {name: batches[name].texts for name in args.prefill_domains.split(",") if name in batches}
        result["prefill"] = prefill_times(model, tokenizer, vocab, chosen, args.boundary, args.prefill_merges,
                                          args.prefill_repeats or args.repeats)
    result["settings"]["load_average_end"] = os.getloadavg()
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    if args.plot and "curve" in result:
        plot(result, args.plot, json.loads(Path(args.compare).read_text()) if args.compare else None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
