"""A trained hypernetwork against fvt and tokenadapt (and omp where the donor has embeddings), on
tokenizers it never saw in training.

    python -m transplant.eval.bench_hypernet --hypernet HN_DIR [--base smollm2-135m]
        [--donors qwen2.5-coder-0.5b mistral-v3 llama3 gpt2-tokenizer] [--reuse NAME=FOLDER ...]
        [--out results/hypernet] [--max-bytes 16384] [--json docs/hypernet.json]

For each donor it writes the transplants OUT/<donor>-<method> (kept between runs: an existing folder is
reused, `--reuse` points a name at a folder made elsewhere) and scores each folder and the base on the
evaluation domains, one model at a time; scores of folders that do not change are kept in
OUT/<name>.score.json, so `--baselines-only` can run while the hypernetwork trains. Methods: fvt,
tokenadapt, hypernet (shared tokens keep the base rows), hypernet-all (every row predicted, as ZeTT), and
omp (k=64) for donors with embeddings. Prints bits-per-byte ratios to the base per domain and whether
the hypernetwork beats fvt on English prose for each donor.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from transplant.errors import UserError
from transplant.eval.domains import check_names, load_domains
from transplant.eval.report import evaluate
from transplant.pipeline import TransplantOptions, run
from transplant.sources import resolve

DONORS = ("qwen2.5-coder-0.5b", "mistral-v3", "llama3", "gpt2-tokenizer")
DOMAINS = "en,tech,code,de,fr,es,ru,ja,zh"


def method_runs(hypernet: str, donor_has_weights: bool) -> dict[str, tuple[str, dict]]:
    runs = {
        "fvt": ("fvt", {}),
        "tokenadapt": ("tokenadapt", {}),
        "hypernet": ("hypernet", {"hypernet": hypernet, "keep_shared": True}),
        "hypernet-all": ("hypernet", {"hypernet": hypernet, "keep_shared": False}),
    }
    if donor_has_weights:
        runs["omp"] = ("omp", {"k": 64})
    return runs


def build_and_score(base: str, donors: list[str], hypernet: str | None, out: Path, reuse: dict[str, str], texts: dict[str, str]) -> dict[str, dict]:
    """name -> {domain: bits per byte}, the base under "base"."""
    scores = {"base": _score(resolve(base, need_weights=True).path, out / "base.score.json", texts, cached=True)}
    for donor in donors:
        has_weights = resolve(donor, need_weights=False).has_weights
        for label, (method, params) in method_runs(hypernet, has_weights).items():
            if method == "hypernet" and hypernet is None:
                continue
            name = f"{donor}-{label}"
            folder = Path(reuse.get(name, out / name))
            cache = out / f"{name}.score.json"
            fixed = method != "hypernet"  # the network changes between runs; the other methods do not
            # a fixed method's score outlives its folder (750 MB each), which may have been deleted
            known = _cached(cache, texts) if fixed else None
            if known is not None:
                scores[name] = known
                continue
            if not fixed or not (folder / "transplant.json").is_file():
                print(f"transplant {name}", file=sys.stderr, flush=True)
                run(TransplantOptions(base=base, donor=donor, method=method, output=str(folder), overwrite=True, params=params))
            scores[name] = _score(folder, cache, texts, cached=fixed)
    return scores


def _cached(cache: Path, texts: dict[str, str]) -> dict[str, float] | None:
    if not cache.is_file():
        return None
    saved = json.loads(cache.read_text())
    return saved["bpb"] if saved["texts"] == {d: len(t) for d, t in texts.items()} else None


def _score(folder: Path, cache: Path, texts: dict[str, str], cached: bool) -> dict[str, float]:
    key = {d: len(t) for d, t in texts.items()}
    known = _cached(cache, texts) if cached else None
    if known is not None:
        return known
    result = evaluate([folder], None, texts)
    bpb = {d: m["bits_per_byte"] for d, m in result["models"][0]["domains"].items()}
    bpb["overall"] = result["models"][0]["overall"]["bits_per_byte"]
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps({"folder": str(folder), "texts": key, "bpb": bpb}) + "\n")
    return bpb


def summarize(scores: dict[str, dict], donors: list[str]) -> dict:
    base = scores["base"]
    ratios = {name: {d: v / base[d] for d, v in bpb.items()} for name, bpb in scores.items() if name != "base"}
    beats = {}
    for donor in donors:
        fvt = ratios.get(f"{donor}-fvt", {}).get("en")
        best = min(ratios.get(f"{donor}-{label}", {}).get("en", float("inf")) for label in ("hypernet", "hypernet-all"))
        beats[donor] = {"fvt_en": fvt, "hypernet_en": best, "beats_fvt": fvt is not None and best < fvt}
    return {"ratios": ratios, "english_vs_fvt": beats, "donors_beating_fvt": sum(b["beats_fvt"] for b in beats.values())}


def markdown(ratios: dict[str, dict], donors: list[str]) -> str:
    """One row per donor and method: bpb ratio to the base per domain and overall; best per donor and domain in bold."""
    domains = list(next(iter(ratios.values())))
    lines = ["| donor | method | " + " | ".join(domains) + " |", "|---|---|" + "---|" * len(domains)]
    for donor in donors:
        names = [n for n in ratios if n.startswith(f"{donor}-")]
        best = {d: min(ratios[n][d] for n in names) for d in domains}
        for name in names:
            cells = [f"**{ratios[name][d]:.3f}**" if ratios[name][d] == best[d] else f"{ratios[name][d]:.3f}" for d in domains]
            lines.append(f"| {donor} | {name.removeprefix(donor + '-')} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m transplant.eval.bench_hypernet", description=__doc__.split("\n\n")[0])
    parser.add_argument("--hypernet", help="hypernetwork folder (required unless --baselines-only)")
    parser.add_argument("--baselines-only", action="store_true", help="build and score only the methods that need no hypernetwork")
    parser.add_argument("--base", default="smollm2-135m")
    parser.add_argument("--donors", nargs="+", default=list(DONORS))
    parser.add_argument("--reuse", action="append", default=[], metavar="NAME=FOLDER")
    parser.add_argument("--out", type=Path, default=Path("results/hypernet"))
    parser.add_argument("--max-bytes", type=int, default=16384)
    parser.add_argument("--domains", default=DOMAINS)
    parser.add_argument("--json", type=Path, default=Path("docs/hypernet.json"))
    args = parser.parse_args(argv)
    reuse = dict(item.split("=", 1) for item in args.reuse)
    if not args.hypernet and not args.baselines_only:
        parser.error("--hypernet is required unless --baselines-only")
    try:
        texts = load_domains(check_names(args.domains.split(",")), max_bytes=args.max_bytes)
        scores = build_and_score(args.base, args.donors, None if args.baselines_only else args.hypernet, args.out, reuse, texts)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if args.baselines_only:
        print(json.dumps(scores, indent=1))
        return 0
    summary = summarize(scores, args.donors)
    hn_config = json.loads((Path(args.hypernet) / "config.json").read_text())
    report = {
        "hypernet": {"folder": args.hypernet, "training": hn_config.get("training")},
        "definition": "bpb_ratio = bits per byte of the transplant / bits per byte of the base, same text; "
        f"domains cut to {args.max_bytes} bytes, context 1024, stride 512",
        "bits_per_byte": scores, **summary,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2) + "\n")
    print(markdown(summary["ratios"], args.donors))
    for donor, row in summary["english_vs_fvt"].items():
        print(f"{donor:20} en: fvt {row['fvt_en']:.3f}x  hypernet {row['hypernet_en']:.3f}x  {'beats' if row['beats_fvt'] else 'does not beat'} fvt")
    print(f"hypernetwork beats fvt on English for {summary['donors_beating_fvt']} of {len(args.donors)} donors")
    return 0


if __name__ == "__main__":
    sys.exit(main())
