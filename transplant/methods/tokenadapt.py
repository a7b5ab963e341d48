"""TokenAdapt (Sharthak et al. 2025): a new token's row from the base alone, guided by an auxiliary
sentence-embedding space φ.

- local: the token's pieces under the base tokenizer, weighted by softmax(((softmax(c / T) + share) / 2) / T)
  with c = cos(φ(token), φ(piece)) and share = the piece's share of the token's bytes;
- global: the k base tokens nearest to φ(token), weighted by softmax(sim / T) over those with sim >= threshold;
- hybrid: (1 - w) * local + w * global, or whichever exists; the base mean when neither does.

The same weights apply to every head (input and, when untied, output rows).
"""

from __future__ import annotations

import hashlib
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from transplant.errors import UserError
from transplant.methods.base import MethodInputs, base_mean, register

DEFAULTS = {"temperature": 0.3, "top_k": 3, "global_weight": 0.3, "threshold": 0.0}
REPLACEMENT = "\ufffd"


def phi_text(data: bytes | None) -> str:
    """What φ sees of a token: its text without the word-start space or surrounding whitespace, and
    without the remains of characters cut in half ("" when nothing is left: φ says nothing useful
    about whitespace or partial UTF-8, and those tokens fall back to their pieces' lengths)."""
    if not data:
        return ""
    return data.decode("utf-8", errors="replace").replace(REPLACEMENT, "").strip()


def segment_softmax(values: torch.Tensor, segments: torch.Tensor, count: int) -> torch.Tensor:
    """Softmax of `values` within each group of equal `segments` ids (0..count-1)."""
    peak = torch.full((count,), -torch.inf, dtype=values.dtype).scatter_reduce(0, segments, values, "amax")
    exp = torch.exp(values - peak[segments])
    total = torch.zeros(count, dtype=values.dtype).index_add_(0, segments, exp)
    return exp / total[segments]


def local_weights(
    sims: torch.Tensor, shares: torch.Tensor, segments: torch.Tensor, count: int, temperature: float
) -> torch.Tensor:
    """Weights of every piece (flat, grouped by `segments`): similarity and length share, combined."""
    by_similarity = segment_softmax(sims / temperature, segments, count)
    return segment_softmax((by_similarity + shares) / 2 / temperature, segments, count)


def global_weights(scores: torch.Tensor, temperature: float, threshold: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(weights (Q, k), has (Q,)): softmax(sim / T) over the neighbours at or above the threshold;
    `has` is False where none is."""
    kept = scores >= threshold
    logits = torch.where(kept, scores / temperature, torch.full_like(scores, -torch.inf))
    has = kept.any(dim=1)
    weights = torch.zeros_like(scores)
    weights[has] = torch.softmax(logits[has], dim=1)
    return weights, has


def hybrid(
    local: torch.Tensor, has_local: torch.Tensor, glob: torch.Tensor, has_global: torch.Tensor,
    fallback: torch.Tensor, global_weight: float,
) -> torch.Tensor:
    """(1 - w) * local + w * global where both exist, the one that exists otherwise, else `fallback`."""
    both = (has_local & has_global).unsqueeze(-1)
    out = torch.where(both, (1 - global_weight) * local + global_weight * glob, fallback.expand_as(local))
    out = torch.where((has_local & ~has_global).unsqueeze(-1), local, out)
    return torch.where((has_global & ~has_local).unsqueeze(-1), glob, out)


@dataclass
class Pieces:
    """Every new token's pieces under the base tokenizer, flat, with the token each belongs to."""

    ids: torch.Tensor  # (P,) base ids
    segments: torch.Tensor  # (P,) index into the new tokens
    shares: torch.Tensor  # (P,) the piece's share of the token's bytes
    offsets: torch.Tensor  # (N + 1,) start of each token's pieces


def decompose_all(inputs: MethodInputs, progress: bool) -> Pieces:
    base_tokens = inputs.base_vocab.tokens
    ids: list[int] = []
    shares: list[float] = []
    offsets = [0]
    for did in tqdm(inputs.alignment.new_ids, desc="decomposing new tokens", unit="tok", disable=not progress):
        data = inputs.donor_vocab.tokens[did]
        pieces = inputs.base_vocab.decompose(data) if data else []
        ids.extend(pieces)
        shares.extend(len(base_tokens[p] or b"") / len(data) for p in pieces)
        offsets.append(len(ids))
    offsets_t = torch.tensor(offsets)
    segments = torch.repeat_interleave(torch.arange(len(offsets) - 1), offsets_t.diff())
    return Pieces(torch.tensor(ids, dtype=torch.long), segments, torch.tensor(shares), offsets_t)


def _embed_texts(aux_model: str | None, base_texts: list[str], new_texts: list[str], progress: bool):
    """φ of the distinct non-empty texts: (vectors, text -> row)."""
    from transplant.aux_embed import cached_embed, load_embedder
    from transplant.aux_model import default_aux_model

    folder = Path(aux_model) if aux_model else default_aux_model()
    embedder = load_embedder(folder)
    base_unique = sorted({t for t in base_texts if t})
    new_unique = sorted({t for t in new_texts if t} - set(base_unique))
    label = folder.name
    vectors = np.concatenate([
        cached_embed(embedder, base_unique, f"{label}-base", progress),
        cached_embed(embedder, new_unique, f"{label}-new", progress),
    ])
    return vectors, {t: i for i, t in enumerate(base_unique + new_unique)}


def _rows_of(texts: list[str], row: dict[str, int]) -> torch.Tensor:
    return torch.tensor([row.get(t, -1) for t in texts], dtype=torch.long)


@dataclass
class Evidence:
    """What the weights are computed from: the costly part (φ and the neighbour search), computed once
    and reusable for any temperature, global weight, threshold, and k up to the k it was searched with."""

    pieces: Pieces
    sims: torch.Tensor  # (P,) cos(φ(token), φ(piece)); 0 where either φ is missing
    queries: torch.Tensor  # (Q,) indices of the new tokens that φ can see
    scores: torch.Tensor  # (Q, k) similarity of their nearest base tokens, best first
    neighbours: torch.Tensor  # (Q, k) base ids of those tokens


def gather_evidence(inputs: MethodInputs, aux_model: str | None, top_k: int, index: str, progress: bool) -> Evidence:
    base_size = inputs.base.shape[0]
    pieces = decompose_all(inputs, progress)
    base_texts = [phi_text(t) for t in inputs.base_vocab.tokens[:base_size]]
    base_texts += [""] * (base_size - len(base_texts))  # rows beyond the tokenizer: never neighbours
    new_texts = [phi_text(inputs.donor_vocab.tokens[d]) for d in inputs.alignment.new_ids]
    vectors, row = _embed_texts(aux_model, base_texts, new_texts, progress)
    phi = torch.from_numpy(vectors)
    base_rows, new_rows = _rows_of(base_texts, row), _rows_of(new_texts, row)

    # a missing φ on either side counts as similarity 0, leaving the length share to decide
    piece_rows, token_rows = base_rows[pieces.ids], new_rows[pieces.segments]
    sims = torch.zeros(len(pieces.ids))
    known = (piece_rows >= 0) & (token_rows >= 0)
    sims[known] = (phi[piece_rows[known]] * phi[token_rows[known]]).sum(dim=1)

    keys = torch.nonzero(base_rows >= 0).squeeze(1)
    queries = torch.nonzero(new_rows >= 0).squeeze(1)
    # tokens with the same text have the same neighbours: search each text once
    texts, back = torch.unique(new_rows[queries], return_inverse=True)
    scores, found = _cached_search(vectors[base_rows[keys].numpy()], vectors[texts.numpy()], top_k, index, progress)
    return Evidence(pieces, sims, queries, torch.from_numpy(scores)[back], keys[torch.from_numpy(found)][back])


def _cached_search(keys: np.ndarray, queries: np.ndarray, k: int, index: str, progress: bool):
    """The exact neighbour search, kept on disk: on a second run with the same auxiliary embeddings it
    is the largest cost left."""
    from transplant.aux_embed import write_atomically
    from transplant.cache import cache_dir
    from transplant.neighbors import top_k as nearest

    digest = hashlib.sha256(f"{k}:{keys.shape}:{queries.shape}".encode())
    digest.update(keys.tobytes())
    digest.update(queries.tobytes())
    path = cache_dir("aux_neighbours") / f"top{k}-{digest.hexdigest()[:20]}.npz"
    if path.is_file():
        with np.load(path) as cached:
            return cached["scores"], cached["ids"]
    scores, ids = nearest(keys, queries, k, index, progress)
    write_atomically(path, lambda stream: np.savez(stream, scores=scores, ids=ids))
    return scores, ids


def combine(
    inputs: MethodInputs, evidence: Evidence, temperature: float, top_k: int, global_weight: float, threshold: float,
    progress: bool = False,
) -> torch.Tensor:
    """The new rows, (N, n, d), from the evidence and the parameters."""
    pieces, n_new = evidence.pieces, len(inputs.alignment.new_ids)
    weights = local_weights(evidence.sims, pieces.shares.float(), pieces.segments, n_new, temperature)
    has_local = pieces.offsets.diff() > 0
    scores, neighbours = evidence.scores[:, :top_k], evidence.neighbours[:, :top_k].reshape(-1)
    neighbour_weights, has = global_weights(scores, temperature, threshold)
    neighbour_offsets = torch.arange(0, len(neighbours), max(scores.shape[1], 1))
    has_global = torch.zeros(n_new, dtype=torch.bool)
    has_global[evidence.queries] = has

    fallback = base_mean(inputs)
    out = torch.empty((n_new, inputs.base.shape[1], inputs.base.shape[2]))
    for h in range(inputs.base.shape[1]):
        table = inputs.base[:, h].contiguous()
        local = F.embedding_bag(pieces.ids, table, pieces.offsets[:-1], mode="sum", per_sample_weights=weights)
        glob = torch.zeros_like(local)
        glob[evidence.queries] = F.embedding_bag(
            neighbours, table, neighbour_offsets, mode="sum", per_sample_weights=neighbour_weights.reshape(-1)
        )
        out[:, h] = hybrid(local, has_local, glob, has_global, fallback[h], global_weight)
    if progress:
        both = int((has_local & has_global).sum())
        print(
            f"tokenadapt: {n_new} new tokens, {both} hybrid, {int(has_local.sum()) - both} local only, "
            f"{int(has_global.sum()) - both} global only, {int((~has_local & ~has_global).sum())} base mean",
            file=sys.stderr, flush=True,
        )
    return out


def check_parameters(temperature, top_k, global_weight, threshold) -> tuple[float, int, float, float]:
    temperature, top_k, global_weight, threshold = float(temperature), int(top_k), float(global_weight), float(threshold)
    if temperature <= 0 or top_k < 1 or not 0 <= global_weight <= 1 or not -1 <= threshold <= 1:
        raise UserError("tokenadapt needs temperature > 0, top_k >= 1, 0 <= global_weight <= 1, -1 <= threshold <= 1")
    return temperature, top_k, global_weight, threshold


@register(
    "tokenadapt", needs_donor_embeddings=False,
    summary="TokenAdapt: pieces weighted by auxiliary-space similarity and length, mixed with the nearest base tokens",
)
def tokenadapt(
    inputs: MethodInputs,
    temperature: float = DEFAULTS["temperature"],
    top_k: int = DEFAULTS["top_k"],
    global_weight: float = DEFAULTS["global_weight"],
    threshold: float = DEFAULTS["threshold"],
    aux_model: str | None = None,
    index: str = "auto",
    progress: bool = False,
    **unknown: object,
) -> torch.Tensor:
    if unknown:
        raise UserError(f"tokenadapt does not take {', '.join(sorted(unknown))}; its parameters: "
                        "temperature, top_k, global_weight, threshold, aux_model, index")
    temperature, top_k, global_weight, threshold = check_parameters(temperature, top_k, global_weight, threshold)
    evidence = gather_evidence(inputs, aux_model, top_k, index, progress)
    return combine(inputs, evidence, temperature, top_k, global_weight, threshold, progress)
