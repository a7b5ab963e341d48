"""Wall time of a TokenAdapt transplant with a cold and then a warm auxiliary-embedding cache, and
build + query time of each neighbour-index backend on the same auxiliary embeddings.

    python -m transplant.eval.bench_tokenadapt [--base smollm2-135m] [--donor qwen2.5-coder-0.5b]
        [--output DIR] [--json OUT] [--index-only]

Each transplant runs as its own `transplant` process, the way a user runs it. The cache root is a
temporary folder that links to the real cache's model packs, tokenizers and auxiliary model but
holds no auxiliary embeddings, so the first run computes them (cold) and the second reads them
(warm). The requirement (issue 4): cold < 600 s, warm < 180 s on 2 cores. The load average is
recorded before and after, and the CPU seconds of each run, since the machine is shared.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from transplant.cache import cache_dir
from transplant.neighbors import available, top_k
from transplant.sources import resolve

COLD_LIMIT_S, WARM_LIMIT_S = 600.0, 180.0
LINKED = ("packs", "tokenizers", "aux_models")


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def timed_transplant(base: str, donor: str, output: Path, cache_root: Path) -> dict:
    command = [sys.executable, "-m", "transplant.cli", "--base", base, "--donor-tokenizer", donor,
               "--method", "tokenadapt", "--output", str(output), "--overwrite", "--no-progress"]
    load_before = _load()
    cpu_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    result = subprocess.run(command, env={**os.environ, "TRANSPLANT_CACHE": str(cache_root)}, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    cpu_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = cpu_after.ru_utime - cpu_before.ru_utime + cpu_after.ru_stime - cpu_before.ru_stime
    if result.returncode != 0:
        raise SystemExit(f"transplant failed:\n{result.stderr}")
    record = json.loads((output / "transplant.json").read_text())
    # CPU seconds tell what the run costs apart from the load: on an idle 2-core machine wall >= cpu / 2
    return {"wall_s": round(wall, 1), "cpu_s": round(cpu, 1), "timings": record["timings"], "load_before": load_before, "load_after": _load(),
            "log": result.stderr.strip().splitlines()[-3:]}


@contextmanager
def fresh_embedding_cache():
    """A cache root sharing the real one's models but no auxiliary embeddings; set for this process too."""
    from transplant.aux_model import default_aux_model

    default_aux_model()
    real_root = cache_dir().resolve()
    previous = os.environ.get("TRANSPLANT_CACHE")
    with tempfile.TemporaryDirectory(prefix="bench-tokenadapt-") as tmp:
        root = Path(tmp)
        for name in LINKED:
            (root / name).symlink_to(real_root / name)
        os.environ["TRANSPLANT_CACHE"] = str(root)
        try:
            yield root
        finally:
            if previous is None:
                del os.environ["TRANSPLANT_CACHE"]
            else:
                os.environ["TRANSPLANT_CACHE"] = previous


def cold_and_warm(base: str, donor: str, output: Path, root: Path) -> dict:
    cold = timed_transplant(base, donor, output, root)
    warm = timed_transplant(base, donor, output, root)
    return {"cold": cold, "warm": warm, "cold_ok": cold["wall_s"] < COLD_LIMIT_S, "warm_ok": warm["wall_s"] < WARM_LIMIT_S}


def index_backends(base: str, donor: str, k: int = 3) -> dict:
    """Each backend on the real auxiliary embeddings: base tokens as keys, new tokens as queries."""
    from transplant.align import align
    from transplant.aux_embed import cached_embed, load_embedder
    from transplant.aux_model import default_aux_model
    from transplant.methods.tokenadapt import phi_text
    from transplant.vocab import load_vocab

    base_vocab = load_vocab(resolve(base, need_weights=False).path)
    donor_vocab = load_vocab(resolve(donor, need_weights=False).path)
    alignment = align(base_vocab, donor_vocab)
    base_texts = [phi_text(t) for t in base_vocab.tokens]
    new_texts = [phi_text(donor_vocab.tokens[d]) for d in alignment.new_ids]
    embedder = load_embedder(default_aux_model())
    base_unique = sorted({t for t in base_texts if t})
    new_unique = sorted({t for t in new_texts if t} - set(base_unique))
    label = embedder.folder.name
    vectors = np.concatenate([cached_embed(embedder, base_unique, f"{label}-base", True),
                              cached_embed(embedder, new_unique, f"{label}-new", True)])
    row = {t: i for i, t in enumerate(base_unique + new_unique)}
    keys = vectors[[row[t] for t in base_texts if t]]
    queries = vectors[[row[t] for t in new_texts if t]]
    results: dict = {"keys": len(keys), "queries": len(queries), "dim": int(keys.shape[1]), "k": k, "backends": {}}
    reference = None
    for backend in available():
        load_before = _load()
        start = time.perf_counter()
        scores, _ = top_k(keys, queries, k, backend)
        seconds = time.perf_counter() - start
        if reference is None:
            reference = scores
        results["backends"][backend] = {
            "build_and_query_s": round(seconds, 2), "load_before": load_before, "load_after": _load(),
            # scores, not ids: equal-text keys tie exactly and backends break ties differently
            "max_score_difference_to_first": float(np.abs(scores - reference).max()),
        }
        print(backend, results["backends"][backend], file=sys.stderr, flush=True)
    return results


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m transplant.eval.bench_tokenadapt", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--base", default="smollm2-135m")
    p.add_argument("--donor", default="qwen2.5-coder-0.5b")
    p.add_argument("--output", type=Path, default=Path("results/tokenadapt/bench-out"), help="transplanted folder")
    p.add_argument("--json", type=Path, help="write the results here")
    p.add_argument("--index-only", action="store_true", help="only time the neighbour-index backends")
    args = p.parse_args(argv)
    result: dict = {"base": args.base, "donor": args.donor, "cpus": os.cpu_count()}
    # fetched before any timing: the runs time the method, not downloads or GGUF conversion
    resolve(args.base, need_weights=True)
    resolve(args.donor, need_weights=False)
    if args.index_only:
        result["index"] = index_backends(args.base, args.donor)
    else:
        with fresh_embedding_cache() as root:
            result["transplant"] = cold_and_warm(args.base, args.donor, args.output, root)
            result["index"] = index_backends(args.base, args.donor)
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text + "\n")
    return 0 if args.index_only or (result["transplant"]["cold_ok"] and result["transplant"]["warm_ok"]) else 1


if __name__ == "__main__":
    sys.exit(main())
