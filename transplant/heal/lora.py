"""A small LoRA of our own: a low-rank update beside a frozen linear layer, merged back on save.

y = W x + (alpha / r) · B A x, with A (r × in) random and B (out × r) zero, so training starts from
the transplanted model exactly. Merging writes W + (alpha / r) · B A into the original weight, and the
saved folder is a plain checkpoint again.
"""

from __future__ import annotations

import math

import torch
from torch import nn

# The linears of attention and MLP blocks in Llama, Qwen2, Gemma, Mistral (first line) and Phi models.
TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj",
           "qkv_proj", "gate_up_proj", "dense", "fc1", "fc2")


class LoRALinear(nn.Module):
    def __init__(self, base: nn.Linear, rank: int, alpha: float, generator: torch.Generator):
        super().__init__()
        self.base = base
        self.scale = alpha / rank
        a = torch.empty(rank, base.in_features, dtype=base.weight.dtype)
        # the same bound nn.Linear uses for its own weights, drawn from our generator for --seed
        bound = 1 / math.sqrt(base.in_features)
        a.uniform_(-bound, bound, generator=generator)
        self.lora_a = nn.Parameter(a.to(base.weight.device))
        self.lora_b = nn.Parameter(torch.zeros(base.out_features, rank, dtype=base.weight.dtype, device=base.weight.device))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x) + (x @ self.lora_a.T @ self.lora_b.T) * self.scale

    def merged_weight(self) -> torch.Tensor:
        return self.base.weight + self.scale * (self.lora_b @ self.lora_a)


def inject(model: nn.Module, rank: int, alpha: float, seed: int) -> dict[str, LoRALinear]:
    """Wrap every attention/MLP linear of `model` in place; returns original weight name -> wrapper.
    Modules are visited in name order, so the same seed gives the same initial A on every rank."""
    generator = torch.Generator().manual_seed(seed)
    found = [(name, module) for name, module in model.named_modules()
             if isinstance(module, nn.Linear) and name.rsplit(".", 1)[-1] in TARGETS]
    wrapped: dict[str, LoRALinear] = {}
    for name, module in sorted(found, key=lambda item: item[0]):
        parent_name, _, attr = name.rpartition(".")
        wrapper = LoRALinear(module, rank, alpha, generator)
        setattr(model.get_submodule(parent_name) if parent_name else model, attr, wrapper)
        wrapped[f"{name}.weight"] = wrapper
    return wrapped
