"""Where a transplant loses: bits-per-byte split by whether the target token is new or shared with the
base, and how much probability the new tokens take where the target is shared.

    python -m transplant.eval.loss_split FOLDER [--domain en] [--max-bytes 16384] [--json OUT]

Scored as `transplant eval` scores (one start token, windows of `context` advancing by `stride`, each
target once). "shared-target bpb without new mass" is what the shared targets would cost if the new
tokens' probability went back to the shared ones in proportion: the part of the loss an output-side
fix (a bias, healed output rows) could remove at most, as opposed to the cost of the new targets.
"shared after new" are the shared targets right after a new token, which its input row affects. The
new tokens that cost most as targets and that take most probability at shared targets are listed.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from transplant.errors import UserError
from transplant.eval.score import plan_windows, start_token


@dataclass
class LossSplit:
    n_bytes: int
    new_targets: int
    shared_targets: int
    bpb: float
    bpb_new_targets: float  # the new targets' NLL over all the text's bytes (the two parts add up to bpb)
    bpb_shared_targets: float
    mean_new_mass_at_shared: float
    bpb_shared_without_new_mass: float
    # shared targets that follow a new token: where a new token's input row, not its output row, costs
    shared_after_new: int
    bpb_shared_after_new: float
    # the new tokens that cost most as targets: (token, count, bits in all) and the ones that take
    # most probability where the target is shared: (token, summed probability over those positions)
    costly_new_targets: list[tuple[str, int, float]]
    mass_takers: list[tuple[str, float]]


def new_token_mask(folder: Path, vocab_rows: int) -> torch.Tensor:
    """True for the ids of tokens the base does not have byte for byte (transplant.json names the base)."""
    from transplant.heal.inputs import read_input
    from transplant.vocab import load_vocab

    source = read_input(folder)
    base = load_vocab(source.base)
    vocab = load_vocab(folder)
    flags = [token is not None and token not in base.byte_index for token in vocab.tokens]
    return torch.tensor(flags + [False] * (vocab_rows - len(flags)))


def split_loss(model, tokenizer, text: str, new: torch.Tensor, *, context: int = 1024, stride: int = 512,
               top: int = 10) -> LossSplit:
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    if not ids:
        raise UserError("the text is empty")
    targets = torch.tensor(ids)
    inputs = torch.cat([torch.tensor([start_token(tokenizer)[1]]), targets[:-1]])
    nll = torch.zeros(len(targets), dtype=torch.float64)
    new_mass = torch.zeros(len(targets), dtype=torch.float64)
    taken = torch.zeros(int(new.sum()), dtype=torch.float64)  # per new token, its probability summed at shared targets
    width = min(context, len(targets))
    with torch.inference_mode():
        for window in plan_windows(len(targets), context, stride):
            end = window.begin + width
            logits = model(input_ids=inputs[window.begin : end][None], use_cache=False).logits[0, window.first - end :]
            logprobs = torch.log_softmax(logits.double(), dim=-1)
            wanted = targets[window.first : end]
            nll[window.first : end] = -logprobs.gather(-1, wanted[:, None]).squeeze(-1)
            new_probs = logprobs[:, new[: logprobs.shape[-1]]].exp()
            new_mass[window.first : end] = new_probs.sum(-1)
            taken[: new_probs.shape[-1]] += new_probs[~new[wanted]].sum(0)
    is_new = new[targets]
    n_bytes = len(text.encode("utf-8"))

    def bits(nats: torch.Tensor) -> float:
        return float(nats.sum()) / (math.log(2) * n_bytes)

    shared = ~is_new
    after_new = shared & new[inputs]
    names = [tokenizer.convert_ids_to_tokens(int(i)) for i in torch.nonzero(new).flatten()]
    cost: dict[int, tuple[int, float]] = {}
    for token, nats in zip(targets[is_new].tolist(), nll[is_new].tolist()):
        count, total = cost.get(token, (0, 0.0))
        cost[token] = (count + 1, total + nats)
    costly = sorted(cost.items(), key=lambda item: -item[1][1])[:top]
    order = torch.argsort(taken, descending=True)[:top]
    return LossSplit(
        n_bytes=n_bytes, new_targets=int(is_new.sum()), shared_targets=int(shared.sum()), bpb=bits(nll),
        bpb_new_targets=bits(nll[is_new]), bpb_shared_targets=bits(nll[shared]),
        mean_new_mass_at_shared=float(new_mass[shared].mean()) if shared.any() else 0.0,
        bpb_shared_without_new_mass=bits(nll[shared] + torch.log1p(-new_mass[shared].clamp(max=1 - 1e-12))),
        shared_after_new=int(after_new.sum()), bpb_shared_after_new=bits(nll[after_new]),
        costly_new_targets=[(tokenizer.convert_ids_to_tokens(t), n, round(nats / math.log(2), 2)) for t, (n, nats) in costly],
        mass_takers=[(names[i], round(float(taken[i]), 3)) for i in order.tolist() if taken[i] > 0],
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m transplant.eval.loss_split", description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", help="a `transplant` output folder")
    parser.add_argument("--domain", default="en", help="an evaluation domain (default en)")
    parser.add_argument("--max-bytes", type=int, default=16384)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from transplant.eval.domains import load_domains

    try:
        folder = Path(args.folder)
        text = load_domains([args.domain], max_bytes=args.max_bytes)[args.domain]
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
        result = split_loss(model, AutoTokenizer.from_pretrained(folder), text,
                            new_token_mask(folder, model.get_output_embeddings().weight.shape[0]))
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for key, value in asdict(result).items():
        if isinstance(value, list):
            print(f"{key:30s} " + ", ".join(" ".join(repr(v) if isinstance(v, str) else str(v) for v in item) for item in value))
        else:
            print(f"{key:30s} {value:.4f}" if isinstance(value, float) else f"{key:30s} {value}")
    if args.json:
        args.json.write_text(json.dumps({"folder": str(folder), "domain": args.domain, **asdict(result)}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
