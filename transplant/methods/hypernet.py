"""Embeddings predicted by a trained ZeTT hypernetwork (see transplant.hypernet)."""

from __future__ import annotations

import torch
from tqdm import tqdm

from transplant.errors import UserError
from transplant.hypernet.model import check_base, load_hypernet
from transplant.hypernet.pieces import PieceEncoder
from transplant.methods.base import MethodInputs, MethodOutput, register

BATCH = 4096


def predict_rows(model, table: torch.Tensor, encoder: PieceEncoder, tokens: list[bytes], progress: bool, label: str) -> torch.Tensor:
    """(len(tokens), n, d) predictions, in batches so a 150k vocabulary never builds one huge graph."""
    out = torch.empty((len(tokens), table.shape[1], table.shape[2]))
    with torch.no_grad():
        for lo in tqdm(range(0, len(tokens), BATCH), disable=not progress, desc=label, unit="batch"):
            out[lo : lo + BATCH] = model(table, encoder.batch(tokens[lo : lo + BATCH]))
    return out


@register("hypernet", needs_donor_embeddings=False,
          summary="predicted by a trained ZeTT hypernetwork (--hypernet HN_DIR; `transplant hypernet train`)")
def hypernet(inputs: MethodInputs, hypernet: str | None = None, keep_shared: bool = True, progress: bool = True, **_: object):
    """`keep_shared` (default on): tokens the base has byte for byte keep the base's rows; off: they
    are predicted too, as ZeTT does."""
    if not hypernet:
        raise UserError("--method hypernet needs --hypernet HN_DIR (a folder from `transplant hypernet train`)")
    model = load_hypernet(hypernet)
    check_base(model, inputs.base, "this base")
    encoder = PieceEncoder(inputs.base_vocab, model.config.max_pieces)
    tokens = inputs.donor_vocab.tokens
    new = predict_rows(model, inputs.base, encoder, [tokens[i] or b"" for i in inputs.alignment.new_ids], progress, "hypernet new")
    if keep_shared:
        return new
    shared_ids = inputs.alignment.shared_pairs[0]
    shared = predict_rows(model, inputs.base, encoder, [tokens[i] for i in shared_ids], progress, "hypernet shared")
    return MethodOutput(new, shared)
