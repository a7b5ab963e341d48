"""OMP transplant (Goddard & Fernandes Neto 2025): sparse codes of each new token's donor embedding
over the shared anchors' donor embeddings, applied to the same anchors' base embeddings."""

from __future__ import annotations

import torch

from transplant.kernels.batch_omp import sparse_codes
from transplant.methods.base import MethodInputs, register

APPLY_CHUNK = 8192  # new tokens whose k anchor rows are gathered at once


@register("omp", needs_donor_embeddings=True, summary="orthogonal matching pursuit over shared anchor tokens (needs donor embeddings)")
def omp_method(inputs: MethodInputs, k: int = 64, batch_size: int = 4096, precision: str = "auto", progress: bool = True) -> torch.Tensor:
    donor_ids, base_ids = (torch.from_numpy(a) for a in inputs.alignment.shared_pairs)
    new_ids = torch.from_numpy(inputs.alignment.new_ids)
    if donor_ids.numel() == 0:
        raise ValueError("the vocabularies share no token: OMP has no anchors")
    n_heads = inputs.base.shape[1]
    out = torch.empty((new_ids.numel(), n_heads, inputs.base.shape[2]))
    # A tied donor offers one space for both base heads: solve once, apply to each head. An untied
    # donor gets one independent pass per head, as in the paper.
    plans = [(0, list(range(n_heads)))] if inputs.donor.shape[1] == 1 else [(h, [h]) for h in range(n_heads)]
    for donor_head, base_heads in plans:
        dictionary = inputs.donor[donor_ids, donor_head].contiguous()
        targets = inputs.donor[new_ids, donor_head]
        idx, coef = sparse_codes(targets, dictionary, k, precision=precision, batch_size=batch_size, progress=progress)
        for h in base_heads:
            for start in range(0, new_ids.numel(), APPLY_CHUNK):
                stop = start + APPLY_CHUNK
                anchors = inputs.base[base_ids[idx[start:stop]], h]  # (B, k, d)
                out[start:stop, h] = torch.einsum("bk,bkd->bd", coef[start:stop], anchors)
    return out
