"""Batch-OMP (`kernels/batch_omp.py`) against the plain batched OMP it replaces, on real embeddings.

    python -m transplant.eval.bench_omp [--base DIR] [--donor DIR] [--k 8] [--limit N] [--json OUT]

The problem is the one the OMP method solves: the dictionary is the donor's input embeddings of the
tokens both vocabularies share, the targets those of the donor-only tokens. The reference (torch
`omp`, float32 unless --ref-precision bf16) and `sparse_codes` run on the first N targets; the
reference's time for all targets is extrapolated linearly (its cost is per target, in batches of
1024 as the method runs it). Then `sparse_codes` runs once on all targets, Gram matrix included.

Reported: seconds and targets/s of each, atom agreement with the reference on the first N targets
(same atom in the same slot; and the share of the reference's atoms chosen at all), the mean relative
reconstruction error ||y - Σ coef·atom|| / ||y|| of both, and the process's peak RSS. JIT compilation
is done (or loaded from numba's cache) before any clock starts.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import sys
import time
from pathlib import Path

import torch

from transplant.align import align
from transplant.checkpoint import read_embeddings
from transplant.kernels.batch_omp import sparse_codes
from transplant.kernels.omp import bf16_is_faster, omp
from transplant.sources import resolve
from transplant.vocab import load_vocab

REFERENCE_BATCH = 1024


def load_problem(base: str, donor: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(targets, dictionary): donor input embeddings of the donor-only and of the shared tokens."""
    base, donor = resolve(base, need_weights=True).path, resolve(donor, need_weights=True).path
    alignment = align(load_vocab(base), load_vocab(donor))
    embeddings = read_embeddings(donor).matrices
    donor_ids, _ = alignment.shared_pairs
    return embeddings[alignment.new_ids, 0].contiguous(), embeddings[donor_ids, 0].contiguous()


def relative_error(targets: torch.Tensor, dictionary: torch.Tensor, idx: torch.Tensor, coef: torch.Tensor) -> float:
    total = 0.0
    for start in range(0, targets.shape[0], REFERENCE_BATCH):
        y = targets[start : start + REFERENCE_BATCH]
        approx = torch.einsum("bk,bkd->bd", coef[start : start + REFERENCE_BATCH], dictionary[idx[start : start + REFERENCE_BATCH]])
        total += float(((y - approx).norm(dim=1) / y.norm(dim=1).clamp_min(1e-30)).sum())
    return total / max(targets.shape[0], 1)


def reference(targets: torch.Tensor, dictionary: torch.Tensor, k: int, precision: str) -> tuple[torch.Tensor, torch.Tensor]:
    screen = dictionary.to(torch.bfloat16) if precision == "bf16" else None
    parts = [omp(targets[s : s + REFERENCE_BATCH], dictionary, k, screen) for s in range(0, targets.shape[0], REFERENCE_BATCH)]
    return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])


def bench(targets: torch.Tensor, dictionary: torch.Tensor, k: int, limit: int, precision: str, ref_precision: str,
          batch_size: int, full: bool, progress: bool) -> dict:
    total, n = targets.shape[0], dictionary.shape[0]
    sample = targets[:limit]
    record = {
        "targets": total, "atoms": n, "dim": dictionary.shape[1], "k": k, "limit": sample.shape[0],
        "precision": precision, "bf16_is_faster": bf16_is_faster(dictionary.shape[1]), "ref_precision": ref_precision,
        "batch_size": batch_size, "threads": torch.get_num_threads(), "machine": platform.processor() or platform.machine(),
    }
    sparse_codes(sample[:2], dictionary[:64], k, precision=precision)  # JIT compile or cache load

    start = time.perf_counter()
    ref_idx, ref_coef = reference(sample, dictionary, k, ref_precision)
    ref_s = time.perf_counter() - start
    record["reference"] = {"seconds": ref_s, "targets_per_s": sample.shape[0] / ref_s,
                           "extrapolated_all_seconds": ref_s * total / max(sample.shape[0], 1),
                           "relative_error": relative_error(sample, dictionary, ref_idx, ref_coef)}

    start = time.perf_counter()
    idx, coef = sparse_codes(sample, dictionary, k, precision=precision, batch_size=batch_size)
    ours_s = time.perf_counter() - start
    kept = (idx[:, :, None] == ref_idx[:, None, :]).any(dim=1).float().mean()
    record["batch_omp_sample"] = {"seconds": ours_s, "targets_per_s": sample.shape[0] / ours_s,
                                  "relative_error": relative_error(sample, dictionary, idx, coef),
                                  "slot_agreement": float((idx == ref_idx).float().mean()), "set_agreement": float(kept)}

    if full:
        start = time.perf_counter()
        all_idx, all_coef = sparse_codes(targets, dictionary, k, precision=precision, batch_size=batch_size, progress=progress)
        all_s = time.perf_counter() - start
        record["batch_omp_all"] = {"seconds": all_s, "targets_per_s": total / all_s,
                                   "relative_error": relative_error(targets, dictionary, all_idx, all_coef),
                                   "speedup_vs_reference_extrapolated": record["reference"]["extrapolated_all_seconds"] / all_s}
    record["peak_rss_bytes"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return record


def format_report(r: dict) -> str:
    ref, ours = r["reference"], r["batch_omp_sample"]
    lines = [
        (f"{r['targets']} targets over {r['atoms']} atoms, d={r['dim']}, k={r['k']}, precision {r['precision']} "
         f"(bf16 faster here: {r['bf16_is_faster']}), {r['threads']} threads"),
        (f"reference omp ({r['ref_precision']}), first {r['limit']}: {ref['seconds']:.1f} s, {ref['targets_per_s']:.1f} targets/s, "
         f"all (extrapolated): {ref['extrapolated_all_seconds']:.0f} s; rel. error {ref['relative_error']:.5f}"),
        (f"sparse_codes, first {r['limit']} (Gram included): {ours['seconds']:.1f} s, {ours['targets_per_s']:.1f} targets/s; "
         f"rel. error {ours['relative_error']:.5f}; agreement: slot {ours['slot_agreement']:.4f}, set {ours['set_agreement']:.4f}"),
    ]
    if "batch_omp_all" in r:
        a = r["batch_omp_all"]
        lines.append(f"sparse_codes, all {r['targets']}: {a['seconds']:.1f} s, {a['targets_per_s']:.0f} targets/s; "
                     f"rel. error {a['relative_error']:.5f}; {a['speedup_vs_reference_extrapolated']:.1f}x the reference")
    lines.append(f"peak RSS {r['peak_rss_bytes'] / 2**30:.2f} GiB")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m transplant.eval.bench_omp", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--base", default="smollm2-135m", help="base model (any spec `transplant` accepts) (its tokenizer decides which tokens are shared)")
    p.add_argument("--donor", default="qwen2.5-coder-0.5b", help="donor model (tokenizer + embeddings)")
    p.add_argument("--k", type=int, default=8, help="atoms per target (default 8)")
    p.add_argument("--limit", type=int, default=4096, help="targets the reference runs on (default 4096)")
    p.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16"), help="sparse_codes precision (default auto)")
    p.add_argument("--ref-precision", default="fp32", choices=("fp32", "bf16"), help="reference screen (default fp32: exact OMP)")
    p.add_argument("--batch-size", type=int, default=4096, help="sparse_codes batch size (default 4096)")
    p.add_argument("--no-full", dest="full", action="store_false", help="skip the run on all targets")
    p.add_argument("--progress", action="store_true", help="progress bar for the run on all targets")
    p.add_argument("--json", help="write the result record here")
    args = p.parse_args(argv)

    targets, dictionary = load_problem(args.base, args.donor)
    record = bench(targets, dictionary, args.k, args.limit, args.precision, args.ref_precision, args.batch_size, args.full, args.progress)
    record.update(base=args.base, donor=args.donor)
    print(format_report(record))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(record, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
