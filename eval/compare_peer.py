"""Side by side in one run: mergekit-tokensurgeon (the peer) vs ours, same pair, same k.

    python -m transplant.eval.compare_peer [--k 8] [--extra ours:omp:64 ours:fvt ...] [--max-bytes 16384]
        [--peer-venv DIR] [--json results/compare_peer.json] [--plot results/compare_peer.png]

Wall time of each transplant (a fresh process each, nothing cached but the converted base/donor
folders that both read), then bits-per-byte of every output on the same domain texts with the same
scorer. The peer's weights are scored with the donor's exact tokenizer.json: with transformers 5.23
the tokenizer class the peer names re-tokenizes differently, which would mix a tokenizer bug into an
embedding comparison; how many texts its own tokenizer encodes differently is reported beside.
The peer runs from its own virtual environment (created on first use: torch 2.13.0 CPU, mergekit 0.1.5).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from pathlib import Path

from transplant.cache import cache_dir

PEER = "mergekit==0.1.5"
PEER_CONSTRAINTS = "torch==2.13.0+cpu\ntransformers==5.23.0\n"


def peer_venv(path: Path | None) -> Path:
    venv = path or cache_dir("peer-venv")
    exe = venv / "bin" / "mergekit-tokensurgeon"
    if exe.is_file():
        return exe
    print(f"creating the peer's environment in {venv} (first use, a few minutes)", file=sys.stderr)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q"]
    constraints = venv / "constraints.txt"
    constraints.write_text(PEER_CONSTRAINTS)
    subprocess.run(pip + ["torch==2.13.0"], check=True)
    subprocess.run(pip + ["-c", str(constraints), PEER, "gguf", "accelerate"], check=True)
    return exe


def timed(cmd: list[str], log: Path) -> float:
    start = time.perf_counter()
    with log.open("w") as out:
        proc = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}); see {log}")
    return wall


def with_donor_tokenizer(peer_out: Path, donor: Path) -> int:
    """Give the peer's folder the donor's exact tokenizer; return how many probe texts its own
    tokenizer encoded differently."""
    from tokenizers import Tokenizer
    from transformers import AutoTokenizer

    from transplant.checkpoint import write_tokenizer
    from transplant.eval.domains import load_domains

    own = AutoTokenizer.from_pretrained(peer_out)
    exact = Tokenizer.from_file(str(donor / "tokenizer.json"))
    texts = load_domains(None, max_bytes=4096).values()
    differ = sum(own(t, add_special_tokens=False)["input_ids"] != exact.encode(t, add_special_tokens=False).ids for t in texts)
    write_tokenizer(donor, peer_out)
    return differ


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m transplant.eval.compare_peer", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--base", default="smollm2-135m")
    p.add_argument("--donor", default="qwen2.5-coder-0.5b")
    p.add_argument("--k", type=int, default=8)
    p.add_argument("--extra", nargs="*", default=[], metavar="METHOD[:K][:BIAS]",
                   help="more of our transplants to score beside, e.g. omp:64 fvt fvt::-2 mean")
    p.add_argument("--domains", default="en,tech,code,de,fr,ja,zh")
    p.add_argument("--max-bytes", type=int, default=16384)
    p.add_argument("--peer-venv", type=Path)
    p.add_argument("--workdir", type=Path, default=Path("results/compare_peer"))
    p.add_argument("--json", type=Path, default=Path("results/compare_peer.json"))
    p.add_argument("--plot", type=Path)
    args = p.parse_args(argv)

    from transplant.eval.domains import load_domains
    from transplant.eval.report import evaluate, format_table, write_json
    from transplant.sources import resolve

    base = resolve(args.base, need_weights=True).path
    donor = resolve(args.donor, need_weights=True).path
    exe = peer_venv(args.peer_venv)
    work = args.workdir
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)

    runs: dict[str, dict] = {}
    peer_out = work / f"peer-omp-k{args.k}"
    wall = timed([str(exe), str(base), str(donor), str(peer_out), "-k", str(args.k), "-a", "omp"], work / "peer.log")
    runs["peer"] = {"path": str(peer_out), "wall_s": wall, "tokenizer_mismatched_texts": with_donor_tokenizer(peer_out, donor)}
    print(f"peer (mergekit-tokensurgeon omp k={args.k}): {wall:.1f} s", file=sys.stderr)

    def ours(method: str, k: int | None, bias: float | None) -> None:
        name = f"ours-{method}" + (f"-k{k}" if k else "") + (f"-bias{bias:g}" if bias else "")
        out = work / name
        cmd = [sys.executable, "-m", "transplant.cli", "--base", str(base), "--donor-tokenizer", str(donor),
               "--method", method, "-o", str(out), "--no-progress"]
        cmd += ["--k", str(k)] if k else []
        cmd += ["--output-bias", str(bias)] if bias else []
        proc_wall = timed(cmd, work / f"{name}.log")
        runs[name] = {"path": str(out), "wall_s": proc_wall}
        print(f"{name}: {proc_wall:.1f} s", file=sys.stderr)

    ours("omp", args.k, None)
    for spec in args.extra:
        method, k, bias = (spec.split(":") + ["", ""])[:3]
        ours(method, int(k) if k else None, float(bias) if bias else None)

    texts = load_domains(args.domains.split(","), max_bytes=args.max_bytes)
    result = evaluate([r["path"] for r in runs.values()], str(base), texts)
    print(format_table(result))
    by_path = {m["path"]: m for m in result["models"]}
    peer_scores = by_path[runs["peer"]["path"]]["domains"]
    ours_scores = by_path[runs[f"ours-omp-k{args.k}"]["path"]]["domains"]
    worst = max(ours_scores[d]["bits_per_byte"] / peer_scores[d]["bits_per_byte"] - 1 for d in texts)
    speedup = runs["peer"]["wall_s"] / runs[f"ours-omp-k{args.k}"]["wall_s"]
    verdict = {"speedup": speedup, "worst_domain_bpb_excess_vs_peer": worst,
               "meets_speed": speedup >= 5, "meets_quality": worst <= 0.005}
    print(f"\nspeed: ours {speedup:.1f}x faster than the peer at k={args.k}; "
          f"quality: ours is at most {100 * worst:+.2f}% bits-per-byte vs the peer on any domain")
    result["comparison"] = {"k": args.k, "runs": runs, **verdict}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    write_json(result, args.json)
    if args.plot:
        from transplant.eval.plot import plot_results

        plot_results(result, args.plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
