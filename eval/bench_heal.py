"""Which healing objective heals more per minute of training: bits-per-byte ratio to the original per
domain, before healing and at every listed minute, for each transplant and objective.

    python -m transplant.eval.bench_heal --minutes 10 30 --objectives lm distill --transplants omp tokenadapt \
        --json docs/heal.json [--folder NAME=PATH ...] [--domains en,tech,code,de,fr,ja,zh] [--text FILE ...]

One run per transplant and objective trains for max(--minutes) minutes of training time. At each
listed minute (the first step that ends past it) the clock stops, the trained tensors are copied into
an evaluation copy of the model, and every domain is scored as `transplant eval` scores it (16 KiB per
domain, context 1024, stride 512): evaluation never counts as training time. The original base model
and each unhealed transplant are scored once. `--append` adds runs to an earlier --json measured with
the same options (the pairs it holds are skipped), so the benchmark can be run in parts. Training text: ~/.cache/transplant/train_text/*.txt (built when missing), which never
overlaps the evaluation domains.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path

import torch

DEFAULT_FOLDERS = {"omp": "results/compare_peer2/ours-omp-k8", "tokenadapt": "results/tokenadapt/smollm2-qwen"}
DEFINITION = {
    "bpb_ratio": "bits_per_byte(model) / bits_per_byte(original base) on the same text",
    "overall": "all domains pooled: total NLL / total bytes",
    "minutes": "training wall time (model loading and evaluation excluded) when the snapshot was taken",
}


class Scorer:
    """One model kept in memory; the trained tensors are copied into it before each scoring."""

    def __init__(self, folder: Path, domains: dict[str, str], context: int, stride: int, device: torch.device):
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32, local_files_only=True).to(device).eval()
        self.tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
        self.domains, self.context, self.stride = domains, context, stride

    @torch.no_grad()
    def score(self, tensors: dict[str, torch.Tensor] | None = None) -> dict:
        from transplant.eval.score import score_text

        for name, tensor in (tensors or {}).items():
            self.model.get_parameter(name).copy_(tensor)
        scores = {d: score_text(self.model, self.tokenizer, text, context=self.context, stride=self.stride)
                  for d, text in self.domains.items()}
        nll, n_bytes = math.fsum(s.nll_nats for s in scores.values()), sum(s.n_bytes for s in scores.values())
        bpb = {d: s.bits_per_byte for d, s in scores.items()}
        bpb["overall"] = nll / (math.log(2) * n_bytes)
        return bpb


def training_texts(paths: list[str] | None) -> list[str]:
    if paths:
        return paths
    from transplant.cache import cache_dir
    from transplant.eval.build_train_text import build_train_text

    folder = cache_dir("train_text")
    found = sorted(str(p) for p in folder.glob("*.txt"))
    if not found:
        build_train_text(None, folder)
        found = sorted(str(p) for p in folder.glob("*.txt"))
    return found


def heal_run(name: str, folder: Path, objective: str, marks: list[float], args, texts: list[str],
             domains: dict[str, str], base_bpb: dict[str, float], before: dict[str, dict]) -> dict:
    """One heal of `folder` for max(marks) minutes, scored before and at every mark. `before` keeps
    the unhealed scores per transplant folder, so each is scored once whatever the number of objectives."""
    from transplant.heal.pipeline import HealOptions, prepare

    scratch = Path(tempfile.mkdtemp(prefix="bench-heal-"))
    options = HealOptions(
        folder=str(folder), texts=texts, output=str(scratch / "never-written"), minutes=max(marks), objective=objective,
        train=args.train, lr=args.lr, batch_size=args.batch_size, seq_len=args.seq_len, seed=args.seed,
        device=args.device, checkpoint_minutes=None, progress=not args.no_progress, eval_domains=list(domains),
    )
    session = prepare(options)
    scorer = Scorer(folder, domains, args.context, args.stride, session.device)
    snapshots = []

    def snapshot(state) -> None:
        clock = time.perf_counter()
        if state is None:
            bpb = before[str(folder)] = before.get(str(folder)) or scorer.score()
        else:
            bpb = scorer.score(session.trainable.final_tensors())
        snapshots.append({
            "minutes": round(state.seconds / 60, 3) if state else 0.0, "steps": state.step if state else 0,
            "tokens": state.tokens if state else 0, "bpb": bpb,
            "bpb_ratio": {d: bpb[d] / base_bpb[d] for d in bpb},
            "loss": round(sum(state.losses[-5:]) / len(state.losses[-5:]), 4) if state else None,
        })
        print(f"{name} {objective} {snapshots[-1]['minutes']:.2f} min, {snapshots[-1]['steps']} steps: "
              + "  ".join(f"{d} {r:.3f}x" for d, r in snapshots[-1]["bpb_ratio"].items())
              + f"  (scored in {time.perf_counter() - clock:.0f} s)", file=sys.stderr, flush=True)

    pending = sorted(marks)

    def on_step(state) -> None:
        while pending and state.seconds >= pending[0] * 60:
            pending.pop(0)
            snapshot(state)

    snapshot(None)
    state = session.train(on_step)
    if pending:
        snapshot(state)
    return {"transplant": name, "folder": str(folder), "objective": objective, "train": args.train,
            "steps": state.step, "tokens": state.tokens, "snapshots": snapshots}


def continued(fresh: dict, path: Path | None) -> dict:
    """The results in `path`, to add runs to: only when they were measured exactly as this call
    would measure (same domains, bytes, marks and settings but the thread count)."""
    from transplant.errors import UserError

    if path is None or not path.is_file():
        raise UserError("--append needs --json FILE from an earlier run of this benchmark")
    old = json.loads(path.read_text(encoding="utf-8"))
    keys = ("domains", "max_bytes", "context", "stride", "minutes")
    differ = [k for k in keys if old.get(k) != fresh[k]]
    differ += [f"settings.{k}" for k, v in fresh["settings"].items() if k != "threads" and old["settings"].get(k) != v]
    if differ:
        raise UserError(f"{path} was measured with other {', '.join(differ)}; pass the same options or another --json")
    old["complete"] = False
    return old


def format_table(result: dict) -> str:
    columns = result["domains"] + ["overall"]
    lines = ["| run | minutes | steps | " + " | ".join(columns) + " |", "|---|---|---|" + "---|" * len(columns)]
    lines.append("| original base (bpb) | | | " + " | ".join(f"{result['base_bpb'][c]:.3f}" for c in columns) + " |")
    shown = set()
    for run in result["runs"]:
        for snap in run["snapshots"]:
            if not snap["steps"]:
                if run["folder"] in shown:
                    continue  # the same unhealed model for every objective
                shown.add(run["folder"])
            label = f"{run['transplant']} {run['objective']}" if snap["steps"] else f"{run['transplant']} before"
            cells = " | ".join(f"{snap['bpb_ratio'][c]:.3f}x" for c in columns)
            lines.append(f"| {label} | {snap['minutes']:.1f} | {snap['steps']} | {cells} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from transplant.cli_heal import DEFAULTS

    p = argparse.ArgumentParser(prog="python -m transplant.eval.bench_heal", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--minutes", type=float, nargs="+", default=[10, 30], help="snapshot marks; trains for the largest")
    p.add_argument("--objectives", nargs="+", default=["lm", "distill"])
    p.add_argument("--transplants", nargs="+", default=list(DEFAULT_FOLDERS), help="names among the folders")
    p.add_argument("--folder", action="append", default=[], metavar="NAME=PATH", help="a transplant folder to add or replace")
    p.add_argument("--domains", default="en,tech,code,de,fr,ja,zh")
    p.add_argument("--max-bytes", type=int, default=16384)
    p.add_argument("--text", nargs="+", help="training text (default: the cache's train_text/*.txt)")
    p.add_argument("--train", default="embeddings")
    p.add_argument("--lr", type=float, default=DEFAULTS.lr)
    p.add_argument("--batch-size", type=int, default=DEFAULTS.batch_size)
    p.add_argument("--seq-len", type=int, default=DEFAULTS.seq_len)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--context", type=int, default=1024)
    p.add_argument("--stride", type=int, default=512)
    p.add_argument("--device")
    p.add_argument("--json", type=Path)
    p.add_argument("--append", action="store_true",
                   help="add to the runs already in --json (same options), skipping transplant/objective pairs it has")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)

    from transplant.errors import UserError
    from transplant.eval.domains import load_domains
    from transplant.eval.report import write_json
    from transplant.heal.inputs import read_input

    folders = dict(DEFAULT_FOLDERS)
    for spec in args.folder:
        name, _, path = spec.partition("=")
        if not path:
            raise SystemExit(f"--folder {spec}: expected NAME=PATH")
        folders[name] = path
    unknown = [t for t in args.transplants if t not in folders]
    if unknown:
        raise SystemExit(f"unknown transplants {unknown}; known: {sorted(folders)} (add one with --folder NAME=PATH)")
    try:
        domains = load_domains(args.domains.split(","), max_bytes=args.max_bytes)
        texts = training_texts(args.text)
        sources = {t: read_input(folders[t]) for t in args.transplants}
        bases = {str(s.base) for s in sources.values()}
        if len(bases) != 1:
            raise UserError(f"the transplants have different bases ({sorted(bases)}); compare one base at a time")
        device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
        result = {"definition": DEFINITION, "domains": list(domains), "max_bytes": args.max_bytes,
                  "context": args.context, "stride": args.stride, "minutes": args.minutes,
                  "settings": {"train": args.train, "lr": args.lr, "batch_size": args.batch_size,
                               "seq_len": args.seq_len, "seed": args.seed, "device": str(device),
                               "threads": torch.get_num_threads(), "texts": [Path(t).name for t in texts]},
                  "runs": [], "complete": False}
        if args.append:
            result = continued(result, args.json)
        else:
            result["base_bpb"] = Scorer(Path(bases.pop()), domains, args.context, args.stride, device).score()
        base_bpb = result["base_bpb"]
        print("original base: " + "  ".join(f"{d} {v:.3f} bpb" for d, v in base_bpb.items()), file=sys.stderr)
        done = {(run["folder"], run["objective"]) for run in result["runs"]}
        before = {run["folder"]: run["snapshots"][0]["bpb"] for run in result["runs"]}
        for t in args.transplants:
            for objective in args.objectives:
                if (str(sources[t].folder), objective) in done:
                    continue
                result["runs"].append(heal_run(t, sources[t].folder, objective, args.minutes, args, texts, domains,
                                               base_bpb, before))
                # an hours-long benchmark keeps what it measured if it is stopped part way
                if args.json:
                    write_json(result, args.json)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    result["complete"] = True
    print(format_table(result))
    if args.json:
        write_json(result, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
