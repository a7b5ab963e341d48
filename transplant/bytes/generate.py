"""Byte-by-byte decoding from one model or an ensemble, always producing valid UTF-8."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from transplant.bytes.ensemble import combine
from transplant.bytes.likelihood import END
from transplant.bytes.next_byte import ByteStream


@dataclass
class Generation:
    data: bytes
    stopped: str  # "end", "stop", "max_bytes", "diverged"
    positions: int  # token positions run through the models, all together

    @property
    def text(self) -> str:
        return self.data.decode("utf-8", errors="replace")


def utf8_allowed(pending: bytes) -> np.ndarray:
    """Which of the 257 outcomes keep `pending` (the bytes of the unfinished character) valid UTF-8."""
    ok = np.zeros(257, dtype=bool)
    need = 0
    if pending:
        lead = pending[0]
        need = (2 if lead >= 0xE0 else 1) if lead < 0xF0 else 3
        need -= len(pending) - 1
    if need > 0:
        lo, hi = 0x80, 0xBF
        if len(pending) == 1:  # the second byte excludes overlong and surrogate forms
            lead = pending[0]
            lo = 0xA0 if lead == 0xE0 else 0x90 if lead == 0xF0 else 0x80
            hi = 0x9F if lead == 0xED else 0x8F if lead == 0xF4 else 0xBF
        ok[lo : hi + 1] = True
        return ok
    ok[:0x80] = True
    ok[0xC2:0xF5] = True
    ok[END] = True
    return ok


def _unfinished(data: bytes) -> bytes:
    """The trailing bytes of an incomplete UTF-8 character ('' if the last character is complete)."""
    for back in range(1, min(4, len(data)) + 1):
        byte = data[-back]
        if byte < 0x80:
            return b""
        if byte >= 0xC0:
            size = 2 if byte < 0xE0 else 3 if byte < 0xF0 else 4
            return data[-back:] if back < size else b""
    return b""


def generate(
    streams: list[ByteStream],
    *,
    max_bytes: int,
    mode: str = "mixture",
    weights: np.ndarray | None = None,
    temperature: float = 0.0,
    top_p: float = 1.0,
    stop: bytes | None = None,
    seed: int | None = None,
    target: bytes | None = None,
) -> Generation:
    """Greedy (temperature 0) or sampled bytes, after whatever the streams were given already.

    With `target`, decoding stops ("diverged") as soon as the output stops being a prefix of it: enough
    to decide an exact match, without paying for the rest."""
    rng = np.random.default_rng(seed)
    weights = np.full(len(streams), 1.0 / len(streams)) if weights is None else weights
    out = bytearray()
    stopped = "max_bytes"
    while len(out) < max_bytes:
        dists = [s.distribution() for s in streams]
        logp = dists[0] if len(dists) == 1 else combine(dists, mode, weights)
        logp = np.where(utf8_allowed(_unfinished(bytes(out))), logp, -np.inf)
        choice = _pick(logp, temperature, top_p, rng)
        if choice == END:
            stopped = "end"
            break
        for s in streams:
            s.push(choice)
        out.append(choice)
        if target is not None and not target.startswith(bytes(out)):
            stopped = "diverged"
            break
        if stop and out.endswith(stop) and not _unfinished(bytes(out)):
            stopped = "stop"
            break
    return Generation(bytes(out), stopped, sum(s.positions for s in streams))


def _pick(logp: np.ndarray, temperature: float, top_p: float, rng: np.random.Generator) -> int:
    if temperature <= 0:
        return int(np.argmax(logp))
    scaled = logp / temperature
    probs = np.exp(scaled - np.max(scaled))
    probs /= probs.sum()
    order = np.argsort(-probs)
    keep = np.cumsum(probs[order]) - probs[order] < top_p  # the smallest set reaching top_p
    probs_kept = np.zeros_like(probs)
    probs_kept[order[keep]] = probs[order[keep]]
    return int(rng.choice(len(probs), p=probs_kept / probs_kept.sum()))
