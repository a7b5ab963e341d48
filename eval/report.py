"""Evaluate model folders on the same domain texts against a reference: results, table and JSON.

Definitions (also written into the JSON's "definition" field):
- bits-per-byte (bpb) = total NLL in nats / (ln 2 * UTF-8 bytes of the text). It does not depend on
  the tokenizer, so it compares a transplanted model with its base.
- bpb ratio = bpb(model) / bpb(reference) on the same text: the comparable ratio (1.05 = 5 % worse).
- perplexity ratio (TokenAdapt-style) = token_ppl(model) / token_ppl(reference) on the same text, each
  with its own tokenizer, token_ppl = exp(NLL / tokens). Tokens of different tokenizers cover different
  amounts of text, so read it beside the bpb ratio, never alone.
- overall pools every domain: total NLL / total bytes (total tokens for perplexity), and its ratios are
  ratios of the pooled values.
The reference is evaluated like the others (its ratios are 1.000). Every token is scored once with
sliding windows (see transplant.eval.score).
"""

from __future__ import annotations

import gc
import hashlib
import json
import math
import textwrap
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from transplant.errors import UserError
from transplant.eval.score import TextScore, score_text

DEFINITION = {
    "bits_per_byte": "total NLL (nats) / (ln 2 * UTF-8 bytes of the text)",
    "token_ppl": "exp(total NLL / tokens), counting tokens of the model's own tokenizer",
    "bpb_ratio": "bits_per_byte(model) / bits_per_byte(reference) on the same text",
    "ppl_ratio": "token_ppl(model) / token_ppl(reference) on the same text, each with its own tokenizer "
    "(TokenAdapt-style perplexity ratio)",
    "tokens_per_byte": "tokens / UTF-8 bytes",
    "tokens_per_word": "tokens / words; words are whitespace-separated, and each kana or CJK ideograph is one word",
    "overall": "all domains pooled: total NLL / total bytes (total tokens for token_ppl); ratios of pooled values",
    "scoring": "text tokenized once without special tokens, bos (else eos) prepended, every token scored once "
    "by windows of `context` tokens advancing by `stride`",
}
COLUMN = 8


@dataclass
class ModelResult:
    name: str
    path: str
    scores: dict[str, TextScore]  # per domain


def evaluate(
    model_dirs: list[str | Path],
    reference: str | Path | None,
    domains: dict[str, str],
    *,
    context: int = 1024,
    stride: int = 512,
    batch_size: int = 4,
    dtype: torch.dtype = torch.float32,
    device: str | None = None,
) -> dict:
    """Score every model folder (and the reference, if not among them) on every domain text.

    Models load from local files only, never with remote code, one at a time. `device` defaults to
    CUDA when available. Returns the JSON-able result that `format_table` and `write_json` take.
    """
    paths = [Path(p) for p in model_dirs]
    reference_path = Path(reference) if reference is not None else None
    if reference_path is not None and not any(_same(reference_path, p) for p in paths):
        paths.insert(0, reference_path)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    results = [
        score_model(
            path, name, domains, context=context, stride=stride, batch_size=batch_size, dtype=dtype, device=device
        )
        for path, name in zip(paths, _unique_names(paths), strict=True)
    ]
    ref = next((r for r, p in zip(results, paths, strict=True) if reference_path and _same(p, reference_path)), None)
    return {
        "definition": DEFINITION,
        "context": context,
        "stride": stride,
        "dtype": str(dtype).removeprefix("torch."),
        "reference": ref.name if ref else None,
        "texts": {
            d: {"n_bytes": len(text.encode("utf-8")), "sha256": hashlib.sha256(text.encode("utf-8")).hexdigest()}
            for d, text in domains.items()
        },
        "models": [_model_json(result, ref) for result in results],
    }


def score_model(
    path: Path,
    name: str,
    domains: dict[str, str],
    *,
    context: int,
    stride: int,
    batch_size: int,
    dtype: torch.dtype,
    device: str,
) -> ModelResult:
    """Load one model folder and score it on every domain, with a progress bar per domain."""
    if not (path / "config.json").is_file():
        raise UserError(f"{path} is not a model folder (no config.json)")
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True, trust_remote_code=False)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype, local_files_only=True, trust_remote_code=False)
    model.to(device).eval()
    scores = {
        domain: score_text(
            model, tokenizer, text, context=context, stride=stride, batch_size=batch_size, progress=f"{name} {domain}"
        )
        for domain, text in domains.items()
    }
    # modules keep reference cycles: collect now so two models never sit in memory together
    del model
    gc.collect()
    return ModelResult(name=name, path=str(path), scores=scores)


def pooled(scores: list[TextScore]) -> TextScore:
    """One score for several texts: sums of bytes, tokens, words and NLL."""
    return TextScore(
        n_bytes=sum(s.n_bytes for s in scores),
        n_tokens=sum(s.n_tokens for s in scores),
        n_words=sum(s.n_words for s in scores),
        nll_nats=math.fsum(s.nll_nats for s in scores),
        roundtrip_ok=all(s.roundtrip_ok for s in scores),
        context=scores[0].context,
        stride=scores[0].stride,
        start_token=scores[0].start_token,
    )


def _metrics(score: TextScore, reference: TextScore | None) -> dict:
    return {
        "bits_per_byte": score.bits_per_byte,
        "token_ppl": score.token_ppl,
        "tokens_per_byte": score.tokens_per_byte,
        "tokens_per_word": score.tokens_per_word,
        "n_bytes": score.n_bytes,
        "n_tokens": score.n_tokens,
        "n_words": score.n_words,
        "nll_nats": score.nll_nats,
        "roundtrip_ok": score.roundtrip_ok,
        "bpb_ratio": score.bits_per_byte / reference.bits_per_byte if reference else None,
        "ppl_ratio": score.token_ppl / reference.token_ppl if reference else None,
    }


def _model_json(result: ModelResult, ref: ModelResult | None) -> dict:
    ref_scores = ref.scores if ref else {}
    overall = pooled(list(result.scores.values()))
    ref_overall = pooled(list(ref_scores.values())) if ref_scores else None
    return {
        "name": result.name,
        "path": result.path,
        "is_reference": result is ref,
        "start_token": overall.start_token,
        "domains": {d: _metrics(s, ref_scores.get(d)) for d, s in result.scores.items()},
        "overall": _metrics(overall, ref_overall),
    }


def format_table(result: dict) -> str:
    """One block per model: domains (and overall) as columns, bpb and ratios as rows."""
    domains = list(result["texts"]) + ["overall"]
    rows = [("bpb", "bits_per_byte"), ("tok/byte", "tokens_per_byte"), ("tok/word", "tokens_per_word")]
    if result["reference"] is not None:
        rows[1:1] = [("bpb ratio", "bpb_ratio"), ("ppl ratio", "ppl_ratio")]
    lines: list[str] = []
    for model in result["models"]:
        tag = "  [reference]" if model["is_reference"] else ""
        lines += [f"{model['name']}{tag}  {model['path']}", " " * 10 + "".join(f"{d:>{COLUMN}}" for d in domains)]
        cells = {**model["domains"], "overall": model["overall"]}
        for label, key in rows:
            values = [_cell(cells[d], key) for d in domains]
            lines.append(f"{label:<10}" + "".join(f"{v:>{COLUMN}}" for v in values))
        lines.append("")
    if any(not m["roundtrip_ok"] for model in result["models"] for m in model["domains"].values()):
        lines.append(
            "! the tokenizer does not round-trip this text (decode(encode(text)) != text): the model was "
            "scored on a different text, so that number is not comparable."
        )
    reference = result["reference"]
    ratios = (
        f"bpb ratio = bpb(model) / bpb({reference}) on the same text; ppl ratio = token perplexity ratio, "
        "each model with its own tokenizer (compare with care)."
        if reference is not None
        else "No reference, so no ratios."
    )
    footer = f"bpb = total NLL / (ln 2 * UTF-8 bytes). {ratios} overall pools all domains."
    lines += textwrap.wrap(footer, width=120)
    lines.append(f"context {result['context']}, stride {result['stride']}, {result['dtype']}")
    return "\n".join(lines)


def _cell(metrics: dict, key: str) -> str:
    value = metrics[key]
    text = "-" if value is None else f"{value:.3f}"
    # the mark sits on bpb, where a lossy round trip matters
    return text + ("!" if key == "bits_per_byte" and not metrics["roundtrip_ok"] else "")


def write_json(result: dict, path: str | Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def _same(a: Path, b: Path) -> bool:
    return a.resolve() == b.resolve()


def _unique_names(paths: list[Path]) -> list[str]:
    """Folder names, or whole paths where two folders share a name."""
    names = [p.name or str(p) for p in paths]
    return [name if names.count(name) == 1 else str(path) for name, path in zip(names, paths, strict=True)]


def format_markdown(result: dict) -> str:
    """A Markdown table for READMEs and model cards: the reference's bits-per-byte, then every other
    model's bpb ratio against it, per domain and overall."""
    domains = list(result["texts"]) + ["overall"]
    lines = ["| model | " + " | ".join(domains) + " |", "|---|" + "---|" * len(domains)]
    for model in sorted(result["models"], key=lambda m: not m["is_reference"]):
        cells = {**model["domains"], "overall": model["overall"]}
        if model["is_reference"]:
            row = [f"{cells[d]['bits_per_byte']:.3f} bpb" for d in domains]
        else:
            row = [f"{cells[d]['bpb_ratio']:.3f}x" for d in domains]
        lines.append(f"| {model['name']} | " + " | ".join(row) + " |")
    return "\n".join(lines)
