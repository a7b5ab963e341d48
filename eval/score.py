"""Bits-per-byte of one causal LM on one text, scoring every token exactly once.

Token perplexity depends on the tokenizer; negative log-likelihood per UTF-8 byte does not, so it
compares models with different vocabularies on the same text:

    bits_per_byte = total NLL (nats) / (ln 2 * UTF-8 bytes of the text)

The text is tokenized once without special tokens and one start token is put before it (the
tokenizer's bos, else its eos), so the first text token is predicted too. Long texts are scored in
windows of `context` inputs that advance by `stride`: each window scores only the targets the previous
one did not, and the rest of it serves as context. The last window is moved back to end at the text's
end, so every window has the same length and batches stack without padding (which also keeps the
attention on its causal fast path).
"""

from __future__ import annotations

import inspect
import math
import re
import sys
from dataclasses import dataclass

import torch
from tqdm import tqdm

from transplant.errors import UserError

# Scripts written without spaces between words: each character counts as a word.
_NO_SPACE_SCRIPTS = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff66-\uff9f"
_WORD = re.compile(f"[{_NO_SPACE_SCRIPTS}]|[^\\s{_NO_SPACE_SCRIPTS}]+")


@dataclass
class TextScore:
    """Sums over every scored token of one text."""

    n_bytes: int
    n_tokens: int
    n_words: int
    nll_nats: float
    roundtrip_ok: bool  # decode(encode(text)) == text; when False the number measures another text
    context: int
    stride: int
    start_token: str  # "bos" or "eos": the special token put before the text

    @property
    def bits_per_byte(self) -> float:
        return self.nll_nats / (math.log(2) * self.n_bytes)

    @property
    def token_ppl(self) -> float:
        return math.exp(self.nll_nats / self.n_tokens)

    @property
    def tokens_per_byte(self) -> float:
        return self.n_tokens / self.n_bytes

    @property
    def tokens_per_word(self) -> float:
        """Fertility; words as counted by `count_words`."""
        return self.n_tokens / self.n_words


def count_words(text: str) -> int:
    """Whitespace-separated words, except that every kana, CJK ideograph or half-width katakana
    counts as one word on its own (Japanese and Chinese put no spaces between words)."""
    return len(_WORD.findall(text))


@dataclass(frozen=True)
class Window:
    """Inputs `begin .. begin+width` predict targets at the same indices; those from `first` on are new."""

    begin: int
    first: int


def plan_windows(n_targets: int, context: int, stride: int) -> list[Window]:
    """Windows of min(context, n_targets) positions, `stride` apart, covering every target once."""
    if context < 1 or not 1 <= stride <= context:
        raise UserError(f"need 1 <= stride <= context, got context={context}, stride={stride}")
    if n_targets == 0:
        return []
    width = min(context, n_targets)
    begins = [*range(0, n_targets - width, stride), n_targets - width]
    windows, scored = [], 0
    for begin in begins:
        windows.append(Window(begin, scored))
        scored = begin + width
    return windows


def start_token(tokenizer) -> tuple[str, int]:
    """("bos" or "eos", id) of the token that starts every scored text."""
    for role in ("bos", "eos"):
        token_id = getattr(tokenizer, f"{role}_token_id", None)
        if token_id is not None:
            return role, token_id
    raise UserError("the tokenizer has neither a bos nor an eos token to start the text with")


def token_logprobs(
    model,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    *,
    context: int,
    stride: int,
    batch_size: int = 4,
    progress: str | None = None,
) -> torch.Tensor:
    """log p(targets[i] | inputs[..i]) in float64, one forward per batch of windows.

    `inputs[i]` is the token before `targets[i]` (the start token, then the text shifted by one).
    """
    windows = plan_windows(len(targets), context, stride)
    width = min(context, len(targets))
    logprobs = torch.full((len(targets),), math.nan, dtype=torch.float64)
    can_trim = "logits_to_keep" in inspect.signature(model.forward).parameters
    device = next(model.parameters()).device
    # The first window scores all its positions, the others only `stride`; batched together, every
    # row would keep the first one's logits, so it goes alone.
    batches = [windows[:1]] + [windows[i : i + batch_size] for i in range(1, len(windows), batch_size)]
    with (
        torch.inference_mode(),
        tqdm(
            total=len(windows), desc=progress, unit="window", file=sys.stderr, disable=progress is None, leave=False
        ) as bar,
    ):
        for batch in batches:
            keep = max(w.begin + width - w.first for w in batch)
            ids = torch.stack([inputs[w.begin : w.begin + width] for w in batch]).to(device)
            extra = {"logits_to_keep": keep} if can_trim else {}
            logits = model(input_ids=ids, use_cache=False, **extra).logits[:, -keep:]
            for row, window in zip(logits, batch, strict=True):
                end = window.begin + width
                new = row[window.first - end :].float()
                wanted = targets[window.first : end].to(device)
                picked = new.gather(-1, wanted[:, None]).squeeze(-1) - torch.logsumexp(new, dim=-1)
                logprobs[window.first : end] = picked.double().cpu()
            bar.update(len(batch))
    return logprobs


def score_text(
    model,
    tokenizer,
    text: str,
    *,
    context: int = 1024,
    stride: int = 512,
    batch_size: int = 4,
    progress: str | None = None,
) -> TextScore:
    """Sum of the model's NLL over every token of `text` (see the module docstring for the rules).

    `progress`, when given, labels a tqdm bar over windows on stderr. The model is put in eval mode
    (dropout would make the numbers random). Fails with UserError when a window would exceed the
    model's position limit.
    """
    if not text:
        raise UserError("cannot score an empty text")
    ids = tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"]
    if not ids:
        raise UserError("the text tokenizes to no tokens at all")
    limit = getattr(model.config, "max_position_embeddings", None)
    if limit is not None and min(context, len(ids)) > limit:
        raise UserError(f"context {context} exceeds the model's {limit} positions; pass a smaller context")
    model.eval()
    role, start_id = start_token(tokenizer)
    targets = torch.tensor(ids, dtype=torch.long)
    inputs = torch.cat([torch.tensor([start_id]), targets[:-1]])
    logprobs = token_logprobs(
        model, inputs, targets, context=context, stride=stride, batch_size=batch_size, progress=progress
    )
    decoded = tokenizer.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)
    return TextScore(
        n_bytes=len(text.encode("utf-8")),
        n_tokens=len(ids),
        n_words=count_words(text),
        nll_nats=-float(logprobs.sum()),
        roundtrip_ok=decoded == text,
        context=context,
        stride=stride,
        start_token=role,
    )
