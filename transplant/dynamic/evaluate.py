"""The whole evaluation: texts -> chunks -> batches -> merges -> bits-per-byte, per text and setting.

m = 0 always runs, first: it is the base model on the same chunks, the reference of every change.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from transplant.dynamic.batches import split_text, tokenize_batch
from transplant.dynamic.cache import EmbeddingCache
from transplant.dynamic.embeddings import load_provider
from transplant.dynamic.merging import TokenTable
from transplant.dynamic.scoring import score_batches
from transplant.errors import UserError


@dataclass
class DynamicEvalOptions:
    merges: list[int]
    batch_size: int = 32
    chunk_tokens: int = 256
    max_batches: int | None = 1  # None: every batch of the text
    boundary: str = "word"
    output_bias: float = 0.0
    cache_size: int = 4096
    target_reduction: float | None = None
    hypernet: str | None = None  # embed merged tokens with this hypernetwork folder instead of fvt
    progress: bool = True


def load_model(folder: str | Path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    if not getattr(tokenizer, "is_fast", False):
        raise UserError(f"{folder}: dynamic tokenization needs a fast (tokenizer.json) tokenizer for token offsets")
    return model.eval(), tokenizer


def chunk_batches(tokenizer, text: str, options: DynamicEvalOptions) -> list:
    """The text's chunks, `batch_size` per batch, the first `max_batches` batches."""
    chunks = split_text(text, tokenizer, options.chunk_tokens)
    groups = [chunks[i : i + options.batch_size] for i in range(0, len(chunks), options.batch_size)]
    if options.max_batches is not None:
        groups = groups[: options.max_batches]
    return [tokenize_batch(tokenizer, group, options.boundary) for group in groups]


def evaluate(base: str | Path, texts: dict[str, str], options: DynamicEvalOptions) -> dict:
    """Per text and merge count: sequence reduction, bits-per-byte and its change against m = 0."""
    from transplant.vocab import load_vocab

    model, tokenizer = load_model(base)
    shift = None
    if options.output_bias:
        from transplant.calibrate import bias_direction

        shift = options.output_bias * bias_direction(base).u
    vocab = load_vocab(base)
    cache = EmbeddingCache(load_provider(model, options.hypernet, shift, vocab), options.cache_size)
    table = TokenTable.from_vocab(vocab)
    settings = [0] + [m for m in dict.fromkeys(options.merges) if m != 0]
    result: dict = {
        "base": str(base),
        "embeddings": "fvt" if options.hypernet is None else f"hypernet {options.hypernet}",
        "boundary": options.boundary,
        "batch_size": options.batch_size,
        "chunk_tokens": options.chunk_tokens,
        "output_bias": options.output_bias,
        "target_reduction": options.target_reduction,
        "texts": {},
    }
    for name, text in texts.items():
        batches = chunk_batches(tokenizer, text, options)
        if not batches:
            raise UserError(f"text {name!r} is empty")
        rows = []
        for merges in settings:
            score = score_batches(
                model, batches, table, cache, merges, target_reduction=options.target_reduction,
                progress=f"{name} m={merges}" if options.progress else None,
            )
            rows.append({
                "merges": merges,
                "merges_done": score.merges_done,
                "tokens": score.tokens,
                "base_tokens": score.base_tokens,
                "new_tokens": score.new_tokens,
                "nll_nats": score.nll_nats,
                "reduction": score.reduction,
                "bits_per_byte": score.bits_per_byte,
            })
        for row in rows:
            row["bpb_change"] = row["bits_per_byte"] / rows[0]["bits_per_byte"] - 1.0
        result["texts"][name] = {
            "n_bytes": sum(b.n_bytes for b in batches),
            "n_sequences": sum(len(b.ids) for b in batches),
            "settings": rows,
        }
    result["cache"] = vars(cache.stats) | {"max_entries": cache.max_entries}
    return result


def format_table(result: dict) -> str:
    """One row per merge count; per text: length saved, bits-per-byte, relative bpb change."""
    names = list(result["texts"])
    head = f"{'merges':>6} | " + " | ".join(f"{n + ' -len':>10} {'bpb':>6} {'d bpb':>7}" for n in names)
    lines = [head, "-" * len(head)]
    for i, merges in enumerate(row["merges"] for row in result["texts"][names[0]]["settings"]):
        cells = []
        for name in names:
            row = result["texts"][name]["settings"][i]
            cells.append(f"{row['reduction']:>10.1%} {row['bits_per_byte']:>6.3f} {row['bpb_change']:>+7.2%}")
        lines.append(f"{merges:>6} | " + " | ".join(cells))
    return "\n".join(lines)
