"""Bits-per-byte and prefill with dynamically merged batches, for any Hugging Face causal LM.

The model runs through `inputs_embeds`. For one batch its vocabulary is extended by the batch's new
tokens: the input embedding module and the LM head get their rows appended for the duration of the
forward (and their own weights back after), so model-specific details such as Gemma's embedding
scale or logit soft-capping apply to new tokens as to base ones. See
`transplant.dynamic.embeddings` for what the output rows mean.

Scoring runs one sequence per forward, without padding: with no merge, the inputs, the forward and
the sums are those of `transplant.eval.score.score_text` on each chunk, so m = 0 gives the base
model's bits-per-byte exactly (the tests check equality, not closeness).
"""

from __future__ import annotations

import inspect
import math
import sys
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
from tqdm import tqdm

from transplant.dynamic.batches import TokenBatch
from transplant.dynamic.cache import EmbeddingCache
from transplant.dynamic.embeddings import NewToken
from transplant.dynamic.merging import DynamicBatch, TokenTable, merge_batch
from transplant.errors import UserError


@dataclass
class DynamicScore:
    """Sums over every scored token of the batches at one setting."""

    merges: int  # requested per batch
    merges_done: int  # over all batches (fewer when nothing was left to merge)
    n_bytes: int
    base_tokens: int
    tokens: int
    new_tokens: int  # distinct new tokens the sequences use, summed over batches
    nll_nats: float

    @property
    def bits_per_byte(self) -> float:
        return self.nll_nats / (math.log(2) * self.n_bytes)

    @property
    def reduction(self) -> float:
        return 1.0 - self.tokens / self.base_tokens


@dataclass
class BatchInputs:
    """A dynamic batch ready for the model: ids local to the batch (base ids, then V, V+1, ... for
    the batch's new tokens) and the new tokens' rows."""

    ids: list[torch.Tensor]
    rows: torch.Tensor  # (k, n_heads, d)


def batch_inputs(dynamic: DynamicBatch, cache: EmbeddingCache) -> BatchInputs:
    table = dynamic.table
    new_ids = dynamic.new_ids()
    tokens = [NewToken(table.bytes_of(int(t)), table.pieces_of(int(t))) for t in new_ids]
    rows = cache.embed(tokens)
    base = table.base_size
    ids = [torch.from_numpy(np.where(seq >= base, base + np.searchsorted(new_ids, seq), seq)) for seq in dynamic.ids]
    return BatchInputs(ids, rows)


@contextmanager
def extended_vocabulary(model, rows: torch.Tensor):
    """The model's input embeddings and LM head with `rows` (k, n_heads, d) appended, for the block."""
    if rows.shape[0] == 0:
        yield
        return
    modules = [model.get_input_embeddings(), model.get_output_embeddings()]
    originals = [module.weight for module in modules]
    try:
        for module, extra in zip(modules, (rows[:, 0], rows[:, -1]), strict=True):
            extended = torch.cat([module.weight.detach(), extra.to(module.weight.dtype)])
            module.weight = torch.nn.Parameter(extended, requires_grad=False)
        yield
    finally:
        for module, weight in zip(modules, originals, strict=True):
            module.weight = weight


def sequence_nll(model, ids: torch.Tensor) -> torch.Tensor:
    """-log p of ids[1:] given the earlier ids, float64 per token, one forward without padding."""
    inputs, targets = ids[None, :-1], ids[1:]
    embeds = model.get_input_embeddings()(inputs)
    logits = model(inputs_embeds=embeds, use_cache=False, **_keep(model, len(targets))).logits[0, -len(targets) :].float()
    picked = logits.gather(-1, targets[:, None]).squeeze(-1) - torch.logsumexp(logits, dim=-1)
    return -picked.double()


def score_batches(
    model,
    batches: list[TokenBatch],
    table: TokenTable,
    cache: EmbeddingCache,
    merges: int,
    *,
    target_reduction: float | None = None,
    progress: str | None = None,
) -> DynamicScore:
    """NLL of every text token of `batches`, each batch merged `merges` times (see `merge_batch`)."""
    limit = getattr(model.config, "max_position_embeddings", None)
    longest = max(len(seq) for batch in batches for seq in batch.ids)
    if limit is not None and longest - 1 > limit:
        raise UserError(f"a sequence of {longest - 1} tokens exceeds the model's {limit} positions; use shorter chunks")
    model.eval()
    totals = {"merges": 0, "tokens": 0, "new": 0, "nll": 0.0}
    n_sequences = sum(len(batch.ids) for batch in batches)
    with (
        torch.inference_mode(),
        tqdm(total=n_sequences, desc=progress, unit="seq", file=sys.stderr, disable=progress is None, leave=False) as bar,
    ):
        for batch in batches:
            dynamic = merge_batch(batch, table, merges, target_reduction=target_reduction)
            inputs = batch_inputs(dynamic, cache)
            with extended_vocabulary(model, inputs.rows):
                for seq in inputs.ids:
                    totals["nll"] += float(sequence_nll(model, seq).sum())
                    bar.update(1)
            totals["merges"] += len(dynamic.merges)
            totals["tokens"] += dynamic.n_text_tokens
            totals["new"] += len(inputs.rows)
    return DynamicScore(
        merges=merges,
        merges_done=totals["merges"],
        n_bytes=sum(batch.n_bytes for batch in batches),
        base_tokens=sum(batch.n_text_tokens for batch in batches),
        tokens=totals["tokens"],
        new_tokens=totals["new"],
        nll_nats=totals["nll"],
    )


def prefill(model, ids: list[torch.Tensor], rows: torch.Tensor | None = None) -> torch.Tensor:
    """One padded forward over the whole batch (left padding, as for generation), KV cache built;
    returns each sequence's next-token logits over the base vocabulary and the batch's new tokens."""
    width = max(len(seq) for seq in ids)
    padded = torch.zeros(len(ids), width, dtype=torch.long)
    mask = torch.zeros(len(ids), width, dtype=torch.long)
    for row, seq in enumerate(ids):
        padded[row, width - len(seq) :] = seq
        mask[row, width - len(seq) :] = 1
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    model.eval()
    with torch.inference_mode(), extended_vocabulary(model, rows if rows is not None else torch.empty(0, 1, 0)):
        embeds = model.get_input_embeddings()(padded)
        out = model(inputs_embeds=embeds, attention_mask=mask, position_ids=positions, use_cache=True, **_keep(model, 1))
    return out.logits[:, -1].float()


def _keep(model, n: int) -> dict:
    """Ask for the last n positions' logits only, where the model can skip the others."""
    return {"logits_to_keep": n} if "logits_to_keep" in inspect.signature(model.forward).parameters else {}
