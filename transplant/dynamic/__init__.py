"""Dynamic tokenization (Feher, Vulić & Minixhofer 2024): batch-level BPE over the base tokenizer's
output, with embeddings for the merged tokens made on the fly.

    batch = tokenize_batch(tokenizer, texts, "pretoken")        # base ids + where merges may happen
    dynamic = merge_batch(batch, TokenTable.from_vocab(vocab), 30)
    inputs = batch_inputs(dynamic, EmbeddingCache(load_provider(model)))

`score_batches` gives bits-per-byte over batches, `prefill` runs a padded batch forward.
"""

from transplant.dynamic.batches import TokenBatch, split_text, tokenize_batch
from transplant.dynamic.boundaries import MODES
from transplant.dynamic.cache import EmbeddingCache
from transplant.dynamic.embeddings import (
    EmbeddingProvider,
    FvtProvider,
    NewToken,
    load_provider,
)
from transplant.dynamic.merging import DynamicBatch, TokenTable, merge_batch
from transplant.dynamic.scoring import (
    DynamicScore,
    batch_inputs,
    prefill,
    score_batches,
)

__all__ = [
    "MODES",
    "DynamicBatch",
    "DynamicScore",
    "EmbeddingCache",
    "EmbeddingProvider",
    "FvtProvider",
    "NewToken",
    "TokenBatch",
    "TokenTable",
    "batch_inputs",
    "load_provider",
    "merge_batch",
    "prefill",
    "score_batches",
    "split_text",
    "tokenize_batch",
]
