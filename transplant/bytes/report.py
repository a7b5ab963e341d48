"""Byte-level bits-per-byte of several texts under several models and their ensembles."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from tqdm import tqdm
from transplant.eval.domains import cut_at_line

from transplant.bytes.ensemble import combine, normalize_weights, observed_logprobs
from transplant.bytes.likelihood import score_bytes
from transplant.bytes.model import ByteLM


@dataclass
class FileResult:
    name: str
    n_bytes: int
    bpb: dict[str, float] = field(default_factory=dict)  # model or ensemble name -> bits per byte
    forwards_per_byte: dict[str, float] = field(default_factory=dict)


@dataclass
class ScoreResult:
    models: list[str]
    ensembles: list[str]
    weights: list[float]
    files: list[FileResult]

    def table(self) -> str:
        columns = self.models + self.ensembles
        lines = ["| text | bytes | " + " | ".join(columns) + " |", "|---|---|" + "---|" * len(columns)]
        for f in self.files:
            cells = [f"{f.bpb[c]:.4f}" for c in columns]
            lines.append(f"| {f.name} | {f.n_bytes} | " + " | ".join(cells) + " |")
        return "\n".join(lines) + "\n(bits per byte, byte-level)"

    def to_json(self) -> dict:
        return {
            "models": self.models, "ensembles": self.ensembles, "weights": self.weights,
            "files": [vars(f) for f in self.files],
        }


def score_files(
    lms: list[ByteLM],
    texts: dict[str, str],
    *,
    modes: list[str],
    weights: list[float] | None = None,
    exact: bool = False,
    epsilon: float = 1e-6,
    max_bytes: int | None = None,
    progress: bool = True,
) -> ScoreResult:
    """Every model's byte-level bpb on every text; with two or more models, each ensemble's too.

    Ensembles combine the per-byte distributions normalized over each model's kept cover."""
    w = normalize_weights(weights, len(lms))
    ensembles = [f"{mode}" for mode in modes] if len(lms) > 1 else []
    files = []
    for name, text in tqdm(texts.items(), desc="texts", disable=not progress, leave=False):
        if max_bytes is not None:
            text = cut_at_line(text, max_bytes)
        data = text.encode("utf-8")
        result = FileResult(name, len(data))
        dists = []
        for lm in lms:
            score = score_bytes(lm, data, exact=exact, epsilon=epsilon, keep_dists=bool(ensembles))
            result.bpb[lm.name] = score.bits_per_byte
            result.forwards_per_byte[lm.name] = score.forwards_per_byte
            dists.append(score.dists)
        for mode in ensembles:
            logp = observed_logprobs(combine(dists, mode, w), data)
            result.bpb[mode] = -float(logp.sum()) / (math.log(2) * len(data))
        files.append(result)
    return ScoreResult([lm.name for lm in lms], ensembles, w.tolist(), files)
