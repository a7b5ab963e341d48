"""The frozen base model run on embeddings the hypernetwork predicts for a sampled vocabulary."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

IGNORE = -100


@dataclass
class VocabRows:
    """One embedding matrix of a sampled vocabulary, ordered fixed rows first: ids below
    len(fixed) are base rows that take no gradient, id len(fixed) + j is learned[j]. Kept apart so
    that neither the lookup nor the LM head's backward ever builds a gradient for the (many) base rows."""

    fixed: torch.Tensor  # (F, d)
    learned: torch.Tensor  # (L, d)

    def lookup(self, ids: torch.Tensor) -> torch.Tensor:
        n = self.fixed.shape[0]
        inside = (ids < n).unsqueeze(-1)
        if not self.learned.shape[0]:
            return self.fixed[ids.clamp(0, n - 1)]
        return torch.where(inside, self.fixed[ids.clamp(0, n - 1)], self.learned[(ids - n).clamp(0, self.learned.shape[0] - 1)])

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        return torch.cat([hidden @ self.fixed.T, hidden @ self.learned.T], dim=-1)

    def __len__(self) -> int:
        return self.fixed.shape[0] + self.learned.shape[0]


class FrozenBase:
    """Wraps a causal LM so that its input embeddings and output head come from outside: gradients flow
    to the given matrices, never into the model's own weights."""

    def __init__(self, model):
        self.model = model.eval()
        for p in model.parameters():
            p.requires_grad_(False)
        self.body = model.get_decoder()
        # Gemma-style models scale inputs inside their embedding module, which inputs_embeds skips.
        self.embed_scale = getattr(model.get_input_embeddings(), "embed_scale", None)
        self.softcap = getattr(model.config, "final_logit_softcapping", None)

    def lm_loss(self, emb_in: VocabRows, emb_out: VocabRows, ids: torch.Tensor, start: torch.Tensor) -> torch.Tensor:
        """Mean next-token NLL of (B, T) ids (IGNORE-padded) of a vocabulary whose input and output
        rows are `emb_in`/`emb_out`; `start` (d,) is the row put before every sequence."""
        valid = ids != IGNORE
        x = emb_in.lookup(ids.clamp_min(0))
        x = torch.cat([start.expand(ids.shape[0], 1, -1), x[:, :-1]], dim=1)
        if self.embed_scale is not None:
            x = x * self.embed_scale.to(x.dtype)
        attention = torch.cat([torch.ones_like(valid[:, :1]), valid[:, :-1]], dim=1).long()
        hidden = self.body(inputs_embeds=x, attention_mask=attention).last_hidden_state
        logits = emb_out.logits(hidden[valid])
        if self.softcap:
            logits = torch.tanh(logits / self.softcap) * self.softcap
        return F.cross_entropy(logits.float(), ids[valid])


def reconstruction_loss(predicted: torch.Tensor, target: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """MSE per dimension in units of the base's standard deviation, so every dimension counts alike."""
    return ((predicted - target) / scale).square().mean()
