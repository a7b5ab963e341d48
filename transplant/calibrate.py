"""Shift the logits of new tokens by a constant, without adding a bias parameter to the model.

A new token's initial output row scores it about as high as the pieces it is made of, although
reaching several pieces' worth of text at once is less likely than reaching one. The LM head has no
bias, but the final hidden states of a trained LM share a direction u with h · u ≈ 1 at every
position (SmolLM2-135M: 1.000 ± 0.026 over code and prose), so adding b · u to a row adds ≈ b to
that token's logit. u is the ridge least-squares solution of H u = 1 over hidden states H collected
on a short calibration text that no evaluation domain uses.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import torch

# Calibration text: standard-library modules and a license text that the eval domains do not use.
_STDLIB_FILES = ("email/message.py", "json/decoder.py", "string.py")
_PROSE_FILES = ("/usr/share/common-licenses/Apache-2.0", "/usr/share/common-licenses/GPL-3")
TOKENS_PER_TEXT = 512


@dataclass
class BiasDirection:
    u: torch.Tensor  # (d,)
    fit_mean: float  # mean of H u over the calibration positions (≈ 1)
    fit_std: float  # spread of H u: how constant the shift is across positions
    positions: int


def calibration_texts() -> list[str]:
    lib = Path(sys.modules["json"].__file__).resolve().parent.parent
    texts = [(lib / name).read_text(encoding="utf-8")[:6000] for name in _STDLIB_FILES if (lib / name).is_file()]
    texts += [Path(p).read_text(encoding="utf-8")[:6000] for p in _PROSE_FILES if Path(p).is_file()]
    return texts


def bias_direction(model_dir: str | Path, texts: list[str] | None = None) -> BiasDirection:
    """Fit u on the base model's final hidden states (the inputs of its LM head)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    model.eval()
    captured: list[torch.Tensor] = []
    hook = model.get_output_embeddings().register_forward_pre_hook(
        lambda _module, args: captured.append(args[0].detach().reshape(-1, args[0].shape[-1]).float())
    )
    try:
        with torch.inference_mode():
            for text in texts or calibration_texts():
                ids = tok(text, return_tensors="pt", add_special_tokens=False)["input_ids"][:, :TOKENS_PER_TEXT]
                model(ids)
    finally:
        hook.remove()
    hidden = torch.cat(captured).double()
    gram = hidden.T @ hidden
    ridge = 1e-3 * gram.trace() / hidden.shape[1]
    u = torch.linalg.solve(gram + ridge * torch.eye(gram.shape[0], dtype=gram.dtype), hidden.sum(dim=0))
    fit = hidden @ u
    return BiasDirection(u.float(), fit.mean().item(), fit.std().item(), hidden.shape[0])


def shift_new_rows(new_rows: torch.Tensor, direction: BiasDirection, bias: float) -> None:
    """Add bias · u to the new tokens' output rows: the last head, which for a tied model is the
    only one. Measured on SmolLM2 <- Qwen: shifting the shared tied row does not hurt the input side."""
    new_rows[:, -1] += bias * direction.u
