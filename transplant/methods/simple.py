"""Baselines every method is compared to: FVT (mean of the base pieces) and the base mean."""

from __future__ import annotations

import torch

from transplant.methods.base import MethodInputs, base_mean, register


@register("fvt", needs_donor_embeddings=False, summary="mean of the base embeddings of the token's pieces under the base tokenizer")
def fvt(inputs: MethodInputs, **_: object) -> torch.Tensor:
    new_ids = inputs.alignment.new_ids
    out = base_mean(inputs).expand(len(new_ids), -1, -1).clone()
    pieces, owners = [], []
    for row, did in enumerate(new_ids):
        data = inputs.donor_vocab.tokens[did]
        ids = inputs.base_vocab.decompose(data) if data else []
        pieces.extend(ids)
        owners.extend([row] * len(ids))
    if pieces:
        owner = torch.tensor(owners)
        sums = torch.zeros_like(out).index_add_(0, owner, inputs.base[torch.tensor(pieces)])
        counts = torch.bincount(owner, minlength=len(new_ids))
        has = counts > 0
        out[has] = sums[has] / counts[has, None, None]
    return out


@register("mean", needs_donor_embeddings=False, summary="every new token gets the mean base embedding (the floor)")
def mean(inputs: MethodInputs, **_: object) -> torch.Tensor:
    return base_mean(inputs).expand(len(inputs.alignment.new_ids), -1, -1).clone()
