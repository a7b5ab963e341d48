"""Exact top-k inner-product search: the k keys most similar to each query (unit vectors: cosine).

Three interchangeable backends return the same neighbours (ties aside): `torch` (blocked matmul and
topk), `faiss` (IndexFlatIP, when faiss-cpu is installed) and `sklearn` (NearestNeighbors, brute
force cosine). `auto` picks the fastest installed one as measured by `eval/bench_tokenadapt.py
--index` (see docs/readme/tokenadapt.md).
"""

from __future__ import annotations

import importlib.util

import numpy as np
import torch
from tqdm.auto import tqdm

from transplant.errors import UserError

BLOCK = 2048  # queries per matmul: BLOCK x keys float32 scores stay a few hundred MB at most
PREFERENCE = ("torch", "faiss", "sklearn")  # fastest first, from the measurement


def available() -> list[str]:
    found = ["torch"]
    if importlib.util.find_spec("faiss") is not None:
        found.append("faiss")
    if importlib.util.find_spec("sklearn") is not None:
        found.append("sklearn")
    return found


def top_k(
    keys: np.ndarray, queries: np.ndarray, k: int, backend: str = "auto", progress: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """(scores, ids), each (len(queries), k), best first; k is capped at len(keys)."""
    if backend == "auto":
        backend = next(name for name in PREFERENCE if name in available())
    if backend not in available():
        raise UserError(f"neighbour index {backend!r} is not available here; choose one of: {', '.join(available())}")
    keys = np.ascontiguousarray(keys, dtype=np.float32)
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    k = min(k, len(keys))
    if k == 0 or len(queries) == 0:
        return np.zeros((len(queries), k), np.float32), np.zeros((len(queries), k), np.int64)
    return {"torch": _torch, "faiss": _faiss, "sklearn": _sklearn}[backend](keys, queries, k, progress)


def _blocks(count: int, progress: bool, desc: str):
    return tqdm(range(0, count, BLOCK), desc=desc, unit="block", disable=not progress)


def _torch(keys, queries, k, progress):
    table = torch.from_numpy(keys)
    scores = np.empty((len(queries), k), np.float32)
    ids = np.empty((len(queries), k), np.int64)
    for lo in _blocks(len(queries), progress, "neighbours (torch)"):
        block = torch.from_numpy(queries[lo : lo + BLOCK]) @ table.T
        best = block.topk(k, dim=1)
        scores[lo : lo + BLOCK] = best.values.numpy()
        ids[lo : lo + BLOCK] = best.indices.numpy()
    return scores, ids


def _faiss(keys, queries, k, progress):
    import faiss

    index = faiss.IndexFlatIP(keys.shape[1])
    index.add(keys)
    scores = np.empty((len(queries), k), np.float32)
    ids = np.empty((len(queries), k), np.int64)
    for lo in _blocks(len(queries), progress, "neighbours (faiss)"):
        scores[lo : lo + BLOCK], ids[lo : lo + BLOCK] = index.search(queries[lo : lo + BLOCK], k)
    return scores, ids


def _sklearn(keys, queries, k, progress):
    from sklearn.neighbors import NearestNeighbors

    index = NearestNeighbors(n_neighbors=k, algorithm="brute", metric="cosine").fit(keys)
    scores = np.empty((len(queries), k), np.float32)
    ids = np.empty((len(queries), k), np.int64)
    for lo in _blocks(len(queries), progress, "neighbours (sklearn)"):
        distances, found = index.kneighbors(queries[lo : lo + BLOCK])
        scores[lo : lo + BLOCK], ids[lo : lo + BLOCK] = 1.0 - distances, found
    return scores, ids
