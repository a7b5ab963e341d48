"""The optimizer of healing: a lazy Adam for embedding rows, AdamW for everything else.

Why not AdamW on the rows: every softmax pushes down the output row of every token that is not the
target, so a token absent from all training windows still gets a tiny gradient of constant sign, and
Adam divides it by its own size: such rows move by the full learning rate at every step. Measured
(SmolLM2-135M <- Qwen2.5, omp k=8, lr 1e-2): English bpb ratio 1.283 before, 1.198 after 8 steps,
then 1.239 after 16 and 1.206 after 28, as the rows of tokens the text never showed sank further.
Here a row's moments and value change only at steps whose batch holds its token (in the inputs or
the targets), with bias correction by the row's own count of updates.

Each row's step is also divided by the square root of that count. Adam's steps are about the
learning rate whatever the gradient's size, and with batches of a thousand tokens a row's gradient is
mostly noise, so at a constant rate the rows of frequent tokens random-walk away from what they
learned. Measured (same transplant, lm, 4 x 256 tokens per step, bpb ratio on 8 KiB of en / tech /
de / ja): before 1.302 / 1.394 / 2.053 / 3.091; constant 1e-2 reached 1.215 / 1.425 / 1.814 / 2.138
after 86 steps (16 KiB) and then got worse (1.235 / 1.742 / 1.963 / 2.049 after 256); constant 1e-3
1.208 / 1.373 / 1.827 / 2.305 after 90 steps; 1e-2 / sqrt(count) 1.182 / 1.352 / 1.625 / 1.850. The
decay depends on the row's history only, not on the run's length, so a snapshot along a long run is
still the run that would have stopped there.
"""

from __future__ import annotations

import torch
from torch import nn


class RowAdam:
    """Adam over the rows of 2-D parameters, updating only the rows marked active at each step, each
    with a step size of lr / sqrt(its number of updates)."""

    def __init__(self, params: list[nn.Parameter], betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8):
        self.params, self.betas, self.eps = params, betas, eps
        self.m = [torch.zeros_like(p) for p in params]
        self.v = [torch.zeros_like(p) for p in params]
        self.updates = [torch.zeros(p.shape[0], dtype=torch.long, device=p.device) for p in params]

    @torch.no_grad()
    def step(self, lr: float, active: torch.Tensor) -> None:
        """`active`: bool per row, the same for every parameter (one row per new token)."""
        rows = torch.nonzero(active).flatten()
        if not len(rows):
            return
        b1, b2 = self.betas
        for p, m, v, n in zip(self.params, self.m, self.v, self.updates, strict=True):
            if p.grad is None:
                continue
            g = p.grad[rows]
            m[rows] = b1 * m[rows] + (1 - b1) * g
            v[rows] = b2 * v[rows] + (1 - b2) * g * g
            n[rows] += 1
            count = n[rows].unsqueeze(1).to(p.dtype)
            m_hat = m[rows] / (1 - b1**count)
            v_hat = v[rows] / (1 - b2**count)
            p[rows] -= lr / count.sqrt() * m_hat / (v_hat.sqrt() + self.eps)

    def state_dict(self) -> dict:
        return {"m": self.m, "v": self.v, "updates": self.updates}

    def load_state_dict(self, state: dict) -> None:
        for mine, saved in ((self.m, state["m"]), (self.v, state["v"]), (self.updates, state["updates"])):
            for tensor, value in zip(mine, saved, strict=True):
                tensor.copy_(value)


class HealOptimizer:
    """RowAdam for the new rows; AdamW (with the groups' weight decay and lr_scale) for norms and LoRA."""

    def __init__(self, rows: list[nn.Parameter], groups: list[dict]):
        self.rows = RowAdam(rows)
        self.dense = torch.optim.AdamW(groups, lr=0.0) if groups else None

    def step(self, lr: float, active: torch.Tensor) -> None:
        self.rows.step(lr, active)
        if self.dense is not None:
            for group in self.dense.param_groups:
                group["lr"] = lr * group["lr_scale"]
            self.dense.step()

    def state_dict(self) -> dict:
        return {"rows": self.rows.state_dict(), "dense": self.dense.state_dict() if self.dense is not None else None}

    def load_state_dict(self, state: dict) -> None:
        self.rows.load_state_dict(state["rows"])
        if self.dense is not None:
            self.dense.load_state_dict(state["dense"])
