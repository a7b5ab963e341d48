"""Baselines every method is compared to: FVT (mean of the base pieces) and the base mean."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from transplant.methods.base import MethodInputs, base_mean, register

CHUNK = 16384  # new tokens averaged per embedding_bag call


@register("fvt", needs_donor_embeddings=False, summary="mean of the base embeddings of the token's pieces under the base tokenizer")
def fvt(inputs: MethodInputs, **_: object) -> torch.Tensor:
    new_ids = inputs.alignment.new_ids
    out = base_mean(inputs).expand(len(new_ids), -1, -1).clone()
    pieces: list[int] = []
    offsets = [0]
    for did in new_ids:
        data = inputs.donor_vocab.tokens[did]
        pieces.extend(inputs.base_vocab.decompose(data) if data else [])
        offsets.append(len(pieces))
    flat, bounds = torch.tensor(pieces, dtype=torch.long), torch.tensor(offsets)
    has = bounds[1:] > bounds[:-1]
    # embedding_bag averages without materialising every piece's row (GBs at 7B scale).
    for h in range(inputs.base.shape[1]):
        table = inputs.base[:, h].contiguous()
        for lo in range(0, len(new_ids), CHUNK):
            hi = min(lo + CHUNK, len(new_ids))
            span = flat[bounds[lo] : bounds[hi]]
            means = F.embedding_bag(span, table, bounds[lo:hi] - bounds[lo], mode="mean")
            keep = has[lo:hi]
            out[lo:hi, h][keep] = means[keep]
    return out


@register("mean", needs_donor_embeddings=False, summary="every new token gets the mean base embedding (the floor)")
def mean(inputs: MethodInputs, **_: object) -> torch.Tensor:
    return base_mean(inputs).expand(len(inputs.alignment.new_ids), -1, -1).clone()
