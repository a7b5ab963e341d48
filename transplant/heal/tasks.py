"""An objective as the training loop sees it: turn text windows into a batch, and a batch into a loss.

Every text gets the start token that evaluation puts before it (the tokenizer's bos, else eos; see
transplant.eval.score), so the first token of a window is trained the way it is scored.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from transplant.errors import UserError
from transplant.heal.objectives import (
    IGNORE,
    alm_loss,
    chunk_index,
    chunk_logprobs,
    common_boundaries,
    lm_loss,
    token_ends,
    token_logprobs,
)
from transplant.heal.trainable import Trainable

# A window of text is cut this many bytes per token wanted: more than any tokenizer here needs
# (English ~4.5 bytes per Qwen token, CJK ~1.5), so batches are rarely padded.
BYTES_PER_TOKEN = 8
MAX_TRIES = 50  # unusable windows (no shared boundary, special tokens in the text) per batch row


@dataclass
class Reader:
    """One model's tokenizer, the bytes of each of its tokens, and the token texts start with."""

    tokenizer: object  # a transformers fast tokenizer
    token_bytes: list[bytes | None]
    start_id: int

    @classmethod
    def from_folder(cls, folder: str | Path) -> Reader:
        from transformers import AutoTokenizer

        from transplant.eval.score import start_token
        from transplant.vocab import load_vocab

        tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True, trust_remote_code=False)
        return cls(tokenizer, load_vocab(folder).tokens, start_token(tokenizer)[1])

    def encode(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"]


@dataclass
class Side:
    """One model's view of a batch: inputs, targets (IGNORE at padding), chunk id per target."""

    inputs: torch.Tensor  # (B, T)
    targets: torch.Tensor  # (B, T)
    chunks: torch.Tensor | None = None  # (B, T), -1 where a target is in no chunk


@dataclass
class Batch:
    student: Side
    teacher: Side | None
    n_chunks: int
    n_tokens: int  # student targets
    n_bytes: int  # text bytes those targets cover

    def tokens(self) -> torch.Tensor:
        """Every student token id the batch reads or predicts (IGNORE marks padding)."""
        return torch.cat([self.student.inputs.flatten(), self.student.targets.flatten()])


def _side(rows: list[list[int]], chunks: list[np.ndarray] | None, start_id: int, seq_len: int) -> Side:
    inputs = torch.full((len(rows), seq_len), start_id, dtype=torch.long)
    targets = torch.full((len(rows), seq_len), IGNORE, dtype=torch.long)
    chunk_ids = torch.full((len(rows), seq_len), -1, dtype=torch.long) if chunks is not None else None
    for r, ids in enumerate(rows):
        n = len(ids)
        inputs[r, 1:n] = torch.tensor(ids[: n - 1], dtype=torch.long)
        targets[r, :n] = torch.tensor(ids, dtype=torch.long)
        if chunk_ids is not None:
            chunk_ids[r, :n] = torch.from_numpy(chunks[r])
    return Side(inputs, targets, chunk_ids)


def _usable(draw: Callable[[], str], cut: Callable[[str], tuple | None]) -> tuple:
    for _ in range(MAX_TRIES):
        got = cut(draw())
        if got is not None:
            return got
    raise UserError(f"the training text gave no usable window in {MAX_TRIES} tries; give more (or other) text")


class LMTask:
    """Next-token loss with the transplanted model's tokenizer."""

    name = "lm"

    def __init__(self, student: Reader, batch_size: int, seq_len: int):
        self.student, self.batch_size, self.seq_len = student, batch_size, seq_len

    def _cut(self, text: str) -> tuple | None:
        ids = self.student.encode(text)[: self.seq_len]
        if not ids:
            return None
        # bytes the kept tokens spell (counted for the record, not for the loss)
        return ids, sum(len(self.student.token_bytes[i] or b"") for i in ids)

    def batch(self, draw: Callable[[], str]) -> Batch:
        rows = [_usable(draw, self._cut) for _ in range(self.batch_size)]
        side = _side([ids for ids, _ in rows], None, self.student.start_id, self.seq_len)
        return Batch(side, None, 0, sum(len(ids) for ids, _ in rows), sum(n for _, n in rows))

    def loss(self, trainable: Trainable, batch: Batch, device: torch.device) -> torch.Tensor:
        return lm_loss(_student_logprobs(trainable, batch, device), batch.student.targets.to(device))


class DistillTask:
    """The base model teaches the transplant the likelihood of every chunk of bytes both tokenizers
    can delimit (transplant.heal.objectives)."""

    name = "distill"

    def __init__(self, student: Reader, teacher: Reader, teacher_model: torch.nn.Module, batch_size: int, seq_len: int):
        self.student, self.teacher, self.teacher_model = student, teacher, teacher_model
        self.batch_size, self.seq_len = batch_size, seq_len

    def _cut(self, text: str) -> tuple | None:
        """Both tokenizations cut at the last shared boundary that leaves each within seq_len tokens."""
        data = text.encode("utf-8")
        s_ids, t_ids = self.student.encode(text), self.teacher.encode(text)
        s_ends = token_ends(s_ids, self.student.token_bytes, data)
        t_ends = token_ends(t_ids, self.teacher.token_bytes, data)
        if s_ends is None or t_ends is None:
            return None
        bounds = common_boundaries(s_ends, t_ends)
        n_s = np.searchsorted(s_ends, bounds, side="right")
        n_t = np.searchsorted(t_ends, bounds, side="right")
        bounds = bounds[(n_s <= self.seq_len) & (n_t <= self.seq_len)]
        if not len(bounds):
            return None
        n_s, n_t = int(np.searchsorted(s_ends, bounds[-1], side="right")), int(np.searchsorted(t_ends, bounds[-1], side="right"))
        return (s_ids[:n_s], chunk_index(s_ends[:n_s], bounds), t_ids[:n_t], chunk_index(t_ends[:n_t], bounds),
                len(bounds), int(bounds[-1]))

    def batch(self, draw: Callable[[], str]) -> Batch:
        rows = [_usable(draw, self._cut) for _ in range(self.batch_size)]
        offsets = np.cumsum([0] + [row[4] for row in rows])
        # chunk ids are numbered across the whole batch, so one index_add sums them all
        s_chunks = [np.where(row[1] >= 0, row[1] + offsets[r], -1) for r, row in enumerate(rows)]
        t_chunks = [np.where(row[3] >= 0, row[3] + offsets[r], -1) for r, row in enumerate(rows)]
        student = _side([row[0] for row in rows], s_chunks, self.student.start_id, self.seq_len)
        teacher = _side([row[2] for row in rows], t_chunks, self.teacher.start_id, self.seq_len)
        return Batch(student, teacher, int(offsets[-1]), sum(len(row[0]) for row in rows), sum(row[5] for row in rows))

    def loss(self, trainable: Trainable, batch: Batch, device: torch.device) -> torch.Tensor:
        with torch.no_grad():
            logits = self.teacher_model(input_ids=batch.teacher.inputs.to(device), use_cache=False).logits
            target = chunk_logprobs(token_logprobs(logits, batch.teacher.targets.to(device)),
                                    batch.teacher.chunks.to(device), batch.n_chunks)
            del logits
        student = chunk_logprobs(_student_logprobs(trainable, batch, device), batch.student.chunks.to(device), batch.n_chunks)
        return alm_loss(student, target)


def _student_logprobs(trainable: Trainable, batch: Batch, device: torch.device) -> torch.Tensor:
    """The transplant's log-prob of each of its targets; gradients reach only the rows the batch holds."""
    return trainable.target_logprobs(batch.student.inputs.to(device), batch.student.targets.to(device),
                                     trainable.active_rows(batch.tokens()))
