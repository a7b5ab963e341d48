"""The one method signature, the registry, and the assembly of full matrices in donor id order."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from transplant.align import NEW, Alignment
from transplant.vocab import Vocab


@dataclass
class MethodInputs:
    base: torch.Tensor  # (V_base, n, d) float32; n = 1 tied, 2 untied (input, output)
    donor: torch.Tensor | None  # (V_donor, n_donor, d_donor) float32, or None for a tokenizer-only donor
    base_vocab: Vocab
    donor_vocab: Vocab
    alignment: Alignment


@dataclass
class MethodOutput:
    """What a method may return instead of a bare tensor of new rows: also predictions for the tokens
    shared with the base, which then replace the base's own rows (hypernet with keep_shared off)."""

    new_rows: torch.Tensor  # (len(new_ids), n, d)
    shared_rows: torch.Tensor | None = None  # (len(shared donor ids), n, d), in alignment.shared_pairs order


def as_output(result: torch.Tensor | MethodOutput) -> MethodOutput:
    return result if isinstance(result, MethodOutput) else MethodOutput(result)


@dataclass(frozen=True)
class MethodSpec:
    fn: Callable[..., torch.Tensor]
    needs_donor_embeddings: bool
    summary: str


METHODS: dict[str, MethodSpec] = {}


def register(name: str, needs_donor_embeddings: bool, summary: str):
    def wrap(fn):
        METHODS[name] = MethodSpec(fn, needs_donor_embeddings, summary)
        return fn

    return wrap


def build_matrices(
    inputs: MethodInputs, new_rows: torch.Tensor, dtype: torch.dtype, shared_rows: torch.Tensor | None = None
) -> list[torch.Tensor]:
    """One contiguous (V_donor, d) matrix per head in `dtype`: base rows for matched tokens,
    `new_rows` for the rest, and `shared_rows` (when given) over the tokens shared by bytes.
    Filled head by head so no second full-size copy exists."""
    al: Alignment = inputs.alignment
    matched = torch.from_numpy((al.kind != NEW).nonzero()[0])
    sources = torch.from_numpy(al.donor_to_base[matched.numpy()])
    new_ids = torch.from_numpy(al.new_ids)
    heads = []
    for h in range(inputs.base.shape[1]):
        out = torch.empty((al.kind.size, inputs.base.shape[2]), dtype=dtype)
        out[matched] = inputs.base[sources, h].to(dtype)
        for lo in range(0, len(new_ids), 65536):
            out[new_ids[lo : lo + 65536]] = new_rows[lo : lo + 65536, h].to(dtype)
        if shared_rows is not None:
            out[torch.from_numpy(al.shared_pairs[0])] = shared_rows[:, h].to(dtype)
        heads.append(out)
    return heads


def base_mean(inputs: MethodInputs) -> torch.Tensor:
    """(n, d) mean over the base's ordinary tokens: specials and unused rows would skew it."""
    ordinary = [i for i, t in enumerate(inputs.base_vocab.tokens) if t is not None and i < inputs.base.shape[0]]
    return inputs.base[ordinary].mean(dim=0)
