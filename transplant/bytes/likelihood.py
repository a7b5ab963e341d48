"""Byte-level log-likelihood of a known text: the cover of every byte prefix, in a few packed passes.

By the Byte-Token Representation Lemma, P(x[:n]) is the sum of P(t) over the token sequences t whose
tokens before the last decode to x[:m] (m < n) and whose last token starts with x[m:n]. Every node of
the token tree (a sequence decoding to x[:m]) adds P(node) * P(next token starts with x[m:n] | node)
to every n > m its trie walk reaches, and one next-token distribution per node suffices for all of them.

Pass 1 evaluates the canonical tokenization in one forward (what token-level scoring costs). Each later
pass evaluates, in one tree-attention forward, the nodes the previous pass opened: other tokenizations
of the same bytes. With `exact=False` a node is opened only when its last two tokens form a canonical
pair, some token that can follow it along the text forms one too, and its probability is at least
`epsilon` times the prefix mass already found there; with `exact=True` every tokenization is kept (the
true sum, exponential in the text length: for tests on tiny vocabularies).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np

from transplant.bytes.evaluator import Node, TreeEvaluator
from transplant.bytes.model import ByteLM
from transplant.errors import UserError

END = 256  # index of "no further byte" (a special token) in next-byte distributions


@dataclass
class ByteScore:
    """Per-byte log-probabilities of one text under one model, and what computing them cost."""

    n_bytes: int
    logprobs: np.ndarray  # natural log P(x[n] | x[:n]) for every byte (see score_bytes)
    canonical_logp: float  # log P(canonical tokenization): the token-level number (nan if it does not spell the text)
    positions: int  # token positions run through the model
    calls: int  # forward calls
    nodes: int  # tree nodes evaluated
    seconds: float
    # (n_bytes, 257) log next-byte distributions, each normalized over the kept cover
    dists: np.ndarray | None = field(default=None, repr=False)

    @property
    def nll_nats(self) -> float:
        return -float(self.logprobs.sum())

    @property
    def bits_per_byte(self) -> float:
        return self.nll_nats / (math.log(2) * self.n_bytes)

    @property
    def forwards_per_byte(self) -> float:
        return self.positions / self.n_bytes


class _Along:
    """Tokens that match the text from each position on: (token, end) pairs, cached per start."""

    def __init__(self, lm: ByteLM, data: bytes) -> None:
        self.trie, self.data = lm.trie, data
        self._cache: dict[int, tuple[list[tuple[int, int]], bool]] = {}

    def __call__(self, start: int) -> tuple[list[tuple[int, int]], bool]:
        """(tokens equal to data[start:e], whether some token reaches past the end of the text)."""
        hit = self._cache.get(start)
        if hit is None:
            trie, data = self.trie, self.data
            lo, hi, found, depth = 0, trie.size, [], 0
            while start + depth < len(data):
                lo, hi = trie.narrow(lo, hi, depth, data[start + depth])
                depth += 1
                if lo >= hi:
                    break
                found.extend((int(trie.order[p]), start + depth) for p in trie.ending(lo, hi, depth))
            hit = (found, start + depth >= len(data) and lo < hi)
            self._cache[start] = hit
        return hit


def _canonical_chain(lm: ByteLM, text: str, data: bytes, root: Node) -> list[Node]:
    """Nodes of the canonical tokenization, as far as its bytes spell the text (normalizers may not)."""
    chain, parent, end = [], root, 0
    for token in lm.encode(text):
        piece = lm.vocab.tokens[token]
        if not piece or data[end : end + len(piece)] != piece:
            break
        end += len(piece)
        parent = Node(token, parent, end, parent.depth + 1, math.nan)
        chain.append(parent)
    return chain


def score_bytes(
    lm: ByteLM,
    text: str | bytes,
    *,
    context: list[int] | None = None,
    exact: bool = False,
    epsilon: float = 1e-6,
    keep_dists: bool = False,
    evaluator: TreeEvaluator | None = None,
    parent: Node | None = None,
) -> ByteScore:
    """log P(x[n] | x[:n]) for every byte of `text`, after the `context` tokens (default: the start token).

    `evaluator` and `parent` (an evaluated node of it) let several scores share a long context. When the
    mass threshold happens to cut every path that spells some byte, the text is scored again without it.
    """
    data = text.encode("utf-8") if isinstance(text, str) else bytes(text)
    if not data:
        raise UserError("cannot score an empty text")
    try:
        return _score(lm, data, context, exact, epsilon, keep_dists, evaluator, parent)
    except _Unspellable:
        if exact or epsilon == 0:
            raise UserError(f"a byte of the text has probability zero under {lm.name} (its vocabulary cannot spell it)") from None
    try:
        return _score(lm, data, context, exact, 0.0, keep_dists, evaluator, parent)
    except _Unspellable as err:
        raise UserError(f"byte {err} of the text has probability zero under {lm.name} "
                        "(its vocabulary cannot spell it, or only non-canonical tokenizations can: try exact)") from None


class _Unspellable(Exception):
    """A byte got probability zero (its index is the message)."""


def _score(lm, data, context, exact, epsilon, keep_dists, evaluator, parent) -> ByteScore:
    started = time.perf_counter()
    trie, n_bytes = lm.trie, len(data)
    evaluator = evaluator or TreeEvaluator(lm.model)
    positions, calls = evaluator.positions, evaluator.calls
    context = list(context) if context else [lm.start_id]
    prefix: list[Node] = []
    offset = parent.depth + 1 if parent is not None else 0
    for i, token in enumerate(context):
        prefix.append(Node(token, prefix[-1] if prefix else parent, 0, offset + i))
    root = prefix[-1]
    chain = _canonical_chain(lm, data.decode("utf-8", errors="replace"), data, root)
    known = {(id(n.parent), n.token): n for n in chain}
    along = _Along(lm, data)
    observed = np.full(n_bytes, -np.inf)  # log sum of P(x[:n] + x[n]) contributions
    total = np.full(n_bytes, -np.inf)  # log sum of P(x[:n] + any byte or end)
    dists = np.full((n_bytes, 257), -np.inf) if keep_dists else None
    log_eps = math.log(epsilon) if epsilon > 0 else -math.inf
    # the token that ends the text opens no prefix of it: its distribution is never needed
    pending, n_nodes = prefix + [n for n in chain if n.end < n_bytes], 0
    confine = None if exact else _Confine(lm.pairs.pretoken_ends(data), chain, root)
    with np.errstate(divide="ignore"):
        while pending:
            opened: list[Node] = []
            for node, logprobs in evaluator.evaluate(pending):
                n_nodes += 1
                if node.end == 0 and node is not root:
                    continue  # context tokens are given, not part of the text's cover
                lp = logprobs.numpy()
                cum = trie.cumulative(lp)
                _walk(node, lp, cum, trie, data, observed, total, dists)
                tokens, _ = along(node.end)
                for token, end in tokens:
                    child_logp = node.logp + lp[token]
                    child = known.get((id(node), token))
                    if child is not None:
                        child.logp = child_logp
                    elif end < n_bytes:
                        opened.append(Node(token, node, end, node.depth + 1, child_logp))
            pending = [n for n in opened if exact or (confine.allows(n) and _worth_opening(lm, n, along, total, log_eps, root))]
    # log P(x[:n+1]) - log P(x[:n]) over the kept cover: the sum is log P(text is a prefix), which
    # pruning can only lower and which the canonical path alone bounds from below
    logprobs = np.diff(observed, prepend=0.0)
    if not np.all(np.isfinite(logprobs)):
        raise _Unspellable(int(np.flatnonzero(~np.isfinite(logprobs))[0]))
    canonical = chain[-1].logp if chain and chain[-1].end == n_bytes else math.nan
    if dists is not None:
        dists -= total[:, None]
    return ByteScore(
        n_bytes, logprobs, float(canonical), evaluator.positions - positions, evaluator.calls - calls, n_nodes,
        time.perf_counter() - started, dists,
    )


def _walk(node, lp, cum, trie, data, observed, total, dists) -> None:
    """Add the node's share to the prefix masses of every byte position its trie walk reaches."""
    lo, hi, depth, start = 0, trie.size, 0, node.end
    end_mass = max(1.0 - cum[-1], 0.0)
    while start + depth < len(data):
        n = start + depth
        ending = trie.ending(lo, hi, depth) if depth else range(lo, lo)
        rest = cum[hi] - cum[ending.stop] + (end_mass if depth == 0 else 0.0)
        total[n] = np.logaddexp(total[n], node.logp + math.log(max(rest, 0.0)) if rest > 0 else -np.inf)
        if dists is not None:
            edges = trie.byte_edges(lo, hi, depth)
            vec = np.empty(257)
            vec[:256] = np.maximum(cum[edges[1:]] - cum[edges[:-1]], 0.0)
            vec[END] = end_mass if depth == 0 else 0.0
            dists[n] = np.logaddexp(dists[n], node.logp + np.log(vec))
        lo, hi = trie.narrow(lo, hi, depth, data[n])
        depth += 1
        if lo >= hi:
            return
        mass = cum[hi] - cum[lo]
        if mass > 0:
            observed[n] = np.logaddexp(observed[n], node.logp + math.log(mass))


class _Confine:
    """Keeps every tokenization other than the canonical one inside one pre-token.

    Canonical tokens never cross a pre-token boundary and a complete pre-token has one canonical
    tokenization, so a branch that leaves the canonical path at byte a must end before the end of the
    pre-token holding a; otherwise it is no prefix of any canonical tokenization (bar pre-tokenizer
    look-ahead at the very end of the text).
    """

    def __init__(self, ends: list[int] | None, chain: list[Node], root: Node) -> None:
        self.ends = np.asarray(ends) if ends else None
        self.on_path = {id(n) for n in chain} | {id(root)}
        self.limit: dict[int, int] = {}

    def allows(self, node: Node) -> bool:
        if self.ends is None:
            return True
        parent = node.parent
        if id(parent) in self.on_path:
            i = int(np.searchsorted(self.ends, parent.end, "right"))
            limit = int(self.ends[i]) if i < len(self.ends) else int(self.ends[-1])
        else:
            limit = self.limit[id(parent)]
        self.limit[id(node)] = limit
        return node.end < limit


def _worth_opening(lm: ByteLM, node: Node, along: _Along, total: np.ndarray, log_eps: float, root: Node) -> bool:
    """Canonical-output pruning plus a mass threshold (see the module docstring)."""
    if node.parent is not root and not lm.pairs.valid(node.parent.token, node.token):
        return False
    if node.logp < log_eps + total[node.end]:
        return False
    tokens, reaches_end = along(node.end)
    return reaches_end or any(lm.pairs.valid(node.token, token) for token, _ in tokens)
