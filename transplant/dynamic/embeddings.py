"""Embedding rows for tokens the base vocabulary does not have, made when a batch needs them.

A provider receives new tokens (their bytes, and the base pieces a merge built them from) and returns
one (n, d) block per token: n = 1 for a tied model (one row serves input and output), n = 2 for input
and output rows. Two providers: FVT, and a trained ZeTT hypernetwork (`transplant hypernet train`), which
predicts the rows from the token's bytes as the paper does.

The output side. The paper keeps the base vocabulary's output layer for its decoder experiments
(prefill with merged tokens, then score or generate base tokens) and uses the hypernetwork's output
embeddings to predict merged tokens. Bits-per-byte of a dynamically tokenized text needs the second:
each position predicts the next token of the dynamic sequence, merged or not. So the LM head is
extended for the batch: the base rows plus one output row per new token of the batch, and a merged
token's probability is its softmax share over base + new tokens. That is the probability of this one
segmentation (as for every tokenizer scored here), and it is exact for m = 0, where nothing is added.
For FVT the output row is the mean of the pieces' output rows, so a merged token's logit is the mean of
its pieces' logits (plus an optional shift, `output_shift`, see transplant.calibrate).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

import torch

from transplant.errors import UserError


@dataclass(frozen=True)
class NewToken:
    data: bytes  # what the token contributes to decoded text
    pieces: tuple[int, ...]  # base token ids whose concatenation it is


@runtime_checkable
class EmbeddingProvider(Protocol):
    n_heads: int  # rows per token: 1 tied (input = output), 2 untied (input, output)

    def embed(self, tokens: list[NewToken]) -> torch.Tensor:
        """(len(tokens), n_heads, d) float32 rows, in the order given."""


class FvtProvider:
    """Mean of the base rows of the token's base pieces, input and output side alike (FVT)."""

    def __init__(
        self, input_rows: torch.Tensor, output_rows: torch.Tensor | None = None, output_shift: torch.Tensor | None = None
    ) -> None:
        heads = [input_rows.detach().float()]
        if output_rows is not None and output_rows.data_ptr() != input_rows.data_ptr():
            heads.append(output_rows.detach().float())
        elif output_shift is not None:
            # a shifted output row no longer equals the input row: keep the input side untouched
            heads.append(heads[0])
        self.heads = heads
        self.output_shift = None if output_shift is None else output_shift.detach().float()
        self.n_heads = len(heads)

    def embed(self, tokens: list[NewToken]) -> torch.Tensor:
        if not tokens:
            return torch.empty(0, self.n_heads, self.heads[0].shape[1])
        flat = torch.tensor([p for t in tokens for p in t.pieces], dtype=torch.long)
        offsets = torch.tensor([0, *[len(t.pieces) for t in tokens[:-1]]]).cumsum(0)
        rows = torch.stack(
            [torch.nn.functional.embedding_bag(flat, head, offsets, mode="mean") for head in self.heads], dim=1
        )
        if self.output_shift is not None:
            rows[:, -1] += self.output_shift
        return rows


def base_rows(model) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(input matrix, output matrix or None when tied) of a HF causal LM, as stored."""
    head = model.get_output_embeddings()
    if head is None:
        raise UserError("the model has no output embeddings (LM head): dynamic scoring needs a causal LM")
    if getattr(head, "bias", None) is not None:
        raise UserError("LM heads with a bias are not supported by dynamic tokenization")
    inputs = model.get_input_embeddings().weight
    return inputs, None if head.weight is inputs else head.weight


class HypernetProvider:
    """Rows predicted by a hypernetwork from the token's bytes, decomposed by the base vocabulary."""

    def __init__(self, hypernet: str | Path, table: torch.Tensor, vocab, output_shift: torch.Tensor | None = None):
        from transplant.hypernet.model import check_base, load_hypernet
        from transplant.hypernet.pieces import PieceEncoder

        self.model = load_hypernet(hypernet)
        check_base(self.model, table, "this model")
        self.table = table
        self.encoder = PieceEncoder(vocab, self.model.config.max_pieces)
        self.output_shift = None if output_shift is None else output_shift.detach().float()
        # a tied model stays tied unless a shift makes the output row differ from the input row
        self.n_heads = table.shape[1] + (1 if table.shape[1] == 1 and output_shift is not None else 0)

    def embed(self, tokens: list[NewToken]) -> torch.Tensor:
        if not tokens:
            return torch.empty(0, self.n_heads, self.table.shape[2])
        with torch.no_grad():
            rows = self.model(self.table, self.encoder.batch([t.data for t in tokens]))
        if self.n_heads > rows.shape[1]:
            rows = torch.cat([rows, rows], dim=1)
        if self.output_shift is not None:
            rows[:, -1] += self.output_shift
        return rows


def load_provider(
    model, hypernet: str | Path | None = None, output_shift: torch.Tensor | None = None, vocab=None
) -> EmbeddingProvider:
    """FVT rows from the model's own matrices, or a hypernetwork's predictions (needs the base `vocab`)."""
    inputs, outputs = base_rows(model)
    if hypernet is None:
        return FvtProvider(inputs, outputs, output_shift)
    if vocab is None:
        raise UserError("a hypernetwork provider needs the base vocabulary (transplant.vocab.load_vocab)")
    heads = [inputs.detach().float()] + ([] if outputs is None else [outputs.detach().float()])
    return HypernetProvider(hypernet, torch.stack(heads, dim=1), vocab, output_shift)
