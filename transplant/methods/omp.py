"""OMP transplant (Goddard & Fernandes Neto 2025): sparse codes of each new token's donor embedding
over the shared anchors' donor embeddings, applied to the same anchors' base embeddings."""

from __future__ import annotations

import torch
from tqdm import tqdm

from transplant.kernels.omp import bf16_is_faster, omp
from transplant.methods.base import MethodInputs, register


@register("omp", needs_donor_embeddings=True, summary="orthogonal matching pursuit over shared anchor tokens (needs donor embeddings)")
def omp_method(inputs: MethodInputs, k: int = 64, batch_size: int = 1024, precision: str = "auto", progress: bool = True) -> torch.Tensor:
    donor_ids, base_ids = (torch.from_numpy(a) for a in inputs.alignment.shared_pairs)
    new_ids = torch.from_numpy(inputs.alignment.new_ids)
    if donor_ids.numel() == 0:
        raise ValueError("the vocabularies share no token: OMP has no anchors")
    n_heads = inputs.base.shape[1]
    out = torch.empty((new_ids.numel(), n_heads, inputs.base.shape[2]))
    donor_heads = inputs.donor.shape[1]
    # A tied donor offers one space for both base heads: solve once, apply to each head.
    plans = [(0, list(range(n_heads)))] if donor_heads == 1 else [(h, [h]) for h in range(n_heads)]
    for donor_head, base_heads in plans:
        dictionary = inputs.donor[donor_ids, donor_head].contiguous()
        screen = _screen(dictionary, precision)
        targets = inputs.donor[new_ids, donor_head]
        label = "omp" if len(plans) == 1 else f"omp ({'input' if donor_head == 0 else 'output'})"
        for start in tqdm(range(0, new_ids.numel(), batch_size), desc=label, unit="batch", disable=not progress):
            stop = start + batch_size
            idx, coef = omp(targets[start:stop], dictionary, k, screen)
            for h in base_heads:
                anchors = inputs.base[base_ids[idx], h]  # (B, k, d)
                out[start:stop, h] = torch.einsum("bk,bkd->bd", coef, anchors)
    return out


def _screen(dictionary: torch.Tensor, precision: str) -> torch.Tensor | None:
    if precision == "fp32" or (precision == "auto" and not bf16_is_faster(dictionary.shape[1])):
        return None
    if precision not in ("auto", "bf16"):
        raise ValueError(f"precision must be auto, fp32 or bf16, not {precision!r}")
    return dictionary.to(torch.bfloat16)
