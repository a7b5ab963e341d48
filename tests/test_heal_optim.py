"""The lazy row Adam: only active rows move, each by lr / sqrt(its own update count)."""

import math

import torch
from torch import nn

from transplant.heal.optim import RowAdam


def test_rows_move_only_when_active_and_slow_down_with_their_own_count():
    rows = nn.Parameter(torch.zeros(3, 2))
    opt = RowAdam([rows], eps=0.0)
    # a constant gradient: bias-corrected Adam's direction is its sign, so each step is exactly lr / sqrt(n)
    pattern = [[True, True, False], [True, False, False], [True, True, False], [True, False, False]]
    for active in pattern:
        rows.grad = torch.tensor([[1.0, -2.0], [0.5, 0.5], [3.0, 3.0]])
        opt.step(0.1, torch.tensor(active))
    moved = [sum(0.1 / math.sqrt(n) for n in range(1, k + 1)) for k in (4, 2, 0)]
    expected = torch.tensor([[-moved[0], moved[0]], [-moved[1], -moved[1]], [0.0, 0.0]])
    assert torch.allclose(rows.detach(), expected, atol=1e-6)
    assert opt.updates[0].tolist() == [4, 2, 0]


def test_state_round_trip_continues_identically():
    def run(split: bool) -> torch.Tensor:
        torch.manual_seed(0)
        rows = nn.Parameter(torch.randn(4, 3))
        opt = RowAdam([rows])
        grads = torch.randn(6, 4, 3)
        active = torch.rand(6, 4) > 0.4
        for step in range(6):
            if split and step == 3:
                state = {k: [t.clone() for t in v] for k, v in opt.state_dict().items()}
                opt = RowAdam([rows])
                opt.load_state_dict(state)
            rows.grad = grads[step]
            opt.step(0.05, active[step])
        return rows.detach()

    assert torch.equal(run(False), run(True))
