"""The chunked head against plain autograd on the whole logits: values and gradients, softcap, padding."""

import pytest
import torch

import transplant.heal.head as head
from transplant.heal.head import IGNORE, target_logprobs


def reference(hidden, weight, row_ids, rows, targets, softcap):
    full = weight.index_put((row_ids,), rows)
    logits = hidden @ full.T
    if softcap:
        logits = torch.tanh(logits / softcap) * softcap
    lp = torch.log_softmax(logits.double(), -1).gather(-1, targets.clamp_min(0)[..., None])[..., 0]
    return torch.where(targets != IGNORE, lp, 0.0)


@pytest.mark.parametrize("softcap", [None, 3.0])
def test_values_and_gradients_match_autograd(monkeypatch, softcap):
    monkeypatch.setattr(head, "CHUNK", 3)
    torch.manual_seed(0)
    hidden = torch.randn(2, 5, 8, dtype=torch.float64)
    weight = torch.randn(40, 8, dtype=torch.float64)
    row_ids = torch.tensor([2, 17, 31])
    targets = torch.tensor([[2, 5, 17, IGNORE, 39], [31, 31, 0, 1, IGNORE]])
    upstream = torch.randn(2, 5, dtype=torch.float64)
    grads = []
    for fn in (reference, None):
        h = hidden.clone().requires_grad_()
        rows = weight[row_ids].clone().requires_grad_()
        if fn is None:
            lp = target_logprobs(h, weight.index_put((row_ids,), rows.detach()), rows, row_ids, targets, softcap)
        else:
            lp = fn(h, weight, row_ids, rows, targets, softcap)
        (lp * upstream).sum().backward()
        grads.append((lp.detach(), h.grad, rows.grad))
    for ours, theirs in zip(grads[1], grads[0]):
        torch.testing.assert_close(ours, theirs)
    assert grads[1][0][0, 3] == 0 and grads[1][0][1, 4] == 0
    assert not grads[1][1][0, 3].any()  # a padded position gives its hidden state no gradient


def test_no_gradient_work_under_no_grad():
    hidden, weight = torch.randn(4, 8), torch.randn(20, 8)
    with torch.no_grad():
        lp = target_logprobs(hidden, weight, weight[:2], torch.tensor([0, 1]), torch.tensor([0, 3, 5, IGNORE]))
    expected = torch.log_softmax(hidden @ weight.T, -1)[torch.arange(3), torch.tensor([0, 3, 5])]
    torch.testing.assert_close(lp[:3], expected)
    assert lp[3] == 0
