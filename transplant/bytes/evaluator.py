"""Next-token distributions for many nodes of a token tree, in one forward per call.

Every evaluated node owns one slot of a single growing KV cache (batch 1). A call packs the new nodes
into one sequence; a 4D mask lets each attend only to its own ancestors' slots and itself, and its
position id is its depth, so branches share the KV of their common prefix and are never recomputed
(tree attention). Models with sliding-window layers (Gemma-3) get a second mask that also hides
ancestors more than a window back. Logits are formed chunk by chunk (a 262k vocabulary times a
thousand positions would not fit) and handed out as float64 log-probabilities.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch
from transformers.cache_utils import DynamicCache


@dataclass(eq=False)
class Node:
    """A token sequence: `parent`'s sequence plus `token`. `end` is the text byte it decodes up to."""

    token: int
    parent: Node | None
    end: int
    depth: int  # position id of `token`
    logp: float = 0.0  # log P(token sequence | context), context tokens count as certain
    slot: int | None = None  # KV cache slot once evaluated
    visible: torch.Tensor | None = field(default=None, repr=False)  # bool over slots: ancestors and self


class TreeEvaluator:
    """Runs a causal LM over nodes of one token tree, counting positions it puts through the model."""

    def __init__(self, model, chunk: int = 32) -> None:
        self.model = model.eval()
        self.chunk = chunk
        self.device = next(model.parameters()).device
        self.dtype = next(model.parameters()).dtype
        config = model.config
        self.window = getattr(config, "sliding_window", None)
        self.sliding = self.window is not None and "sliding_attention" in (getattr(config, "layer_types", None) or [])
        self.softcap = getattr(config, "final_logit_softcapping", None)
        self.cache = DynamicCache()
        self.cache_keyword = _cache_argument(model.model)
        self.slot_depth = torch.zeros(0, dtype=torch.long)
        self.positions = 0  # token positions run through the model (the cost measure)
        self.calls = 0

    @property
    def slots(self) -> int:
        return len(self.slot_depth)

    def evaluate(self, nodes: list[Node]) -> Iterator[tuple[Node, torch.Tensor]]:
        """(node, log-probabilities of its next token) for each node, in order.

        Parents must be evaluated already or come earlier in `nodes`.
        """
        if not nodes:
            return
        first, q = self.slots, len(nodes)
        depth = torch.tensor([n.depth for n in nodes], dtype=torch.long)
        self.slot_depth = torch.cat([self.slot_depth, depth])
        rows = torch.zeros(q, first + q, dtype=torch.bool)
        for i, node in enumerate(nodes):
            parent = node.parent
            if parent is not None:
                if parent.slot is None:
                    raise ValueError("a node's parent must be evaluated before or with it")
                seen = parent.visible
                rows[i, : len(seen)] = seen
            node.slot = first + i
            rows[i, first + i] = True
            node.visible = rows[i].clone()
        mask = self._additive(rows)
        if self.sliding:
            near = self.slot_depth[None, :] > depth[:, None] - self.window
            mask = {"full_attention": mask, "sliding_attention": self._additive(rows & near)}
        with torch.inference_mode():
            out = self.model.model(
                input_ids=torch.tensor([[n.token for n in nodes]], device=self.device),
                position_ids=depth[None].to(self.device),
                attention_mask=mask,
                **{self.cache_keyword: self.cache},
                use_cache=True,
            )
            hidden = out.last_hidden_state[0]
            self.positions += q
            self.calls += 1
            for start in range(0, q, self.chunk):
                logits = self.model.lm_head(hidden[start : start + self.chunk]).double()
                if self.softcap:
                    logits = torch.tanh(logits / self.softcap) * self.softcap
                logprobs = torch.log_softmax(logits, dim=-1).cpu()
                for j, row in enumerate(logprobs):
                    yield nodes[start + j], row

    def _additive(self, allowed: torch.Tensor) -> torch.Tensor:
        mask = torch.zeros(allowed.shape, dtype=self.dtype)
        mask.masked_fill_(~allowed, torch.finfo(self.dtype).min)
        return mask[None, None].to(self.device)


def _cache_argument(body: torch.nn.Module) -> str:
    """The keyword a decoder takes its KV cache by: `cache` from transformers 5.25 on, where
    `past_key_values` is deprecated, `past_key_values` before (which would swallow `cache` unread)."""
    return "cache" if "cache" in inspect.signature(body.forward).parameters else "past_key_values"
