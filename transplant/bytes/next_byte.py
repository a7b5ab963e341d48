"""The exact next-byte distribution of a tokenized LM, one byte at a time (for generation and FIM).

`ByteStream` keeps the cover of the bytes pushed so far: every token-tree node whose decoding ends at
or before the current position and whose last bytes start a token. Each entry remembers the node's
cumulative next-token masses in trie order and the trie range of the bytes read since the node ended,
so the distribution over the next byte is one `searchsorted` per entry. Nodes a byte completes are
evaluated lazily, all of them in one tree-attention forward when the next distribution is asked for.
Pruning (`exact=False`) is that of `likelihood`: canonical pairs only, and nodes lighter than `epsilon`
of the prefix mass are dropped.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from transplant.bytes.evaluator import Node, TreeEvaluator
from transplant.bytes.likelihood import END
from transplant.bytes.model import ByteLM


@dataclass
class _Entry:
    node: Node
    logprobs: np.ndarray
    cum: np.ndarray
    lo: int
    hi: int
    depth: int  # bytes read since node.end


class ByteStream:
    """Push bytes, read next-byte distributions (257 entries: bytes 0..255 and END)."""

    def __init__(
        self, lm: ByteLM, context: list[int] | None = None, *, exact: bool = False, epsilon: float = 1e-6,
        evaluator: TreeEvaluator | None = None, parent: Node | None = None,
    ) -> None:
        """`evaluator` and `parent` (an evaluated node of it) let several streams share a long context."""
        self.lm, self.exact = lm, exact
        self.log_eps = math.log(epsilon) if epsilon > 0 else -math.inf
        self.evaluator = evaluator or TreeEvaluator(lm.model)
        self.data = bytearray()
        nodes: list[Node] = []
        offset = parent.depth + 1 if parent is not None else 0
        for i, token in enumerate(context or [lm.start_id]):
            nodes.append(Node(token, nodes[-1] if nodes else parent, 0, offset + i))
        self.root = nodes[-1]
        self._context = nodes[:-1]
        self.pending: list[Node] = [self.root]
        self.entries: list[_Entry] = []
        self._raw: np.ndarray | None = None

    @property
    def positions(self) -> int:
        return self.evaluator.positions

    def raw(self) -> np.ndarray:
        """log of P(pushed bytes + b) for every outcome b, summed over the cover (not normalized)."""
        if self._raw is None:
            self._evaluate()
            trie, raw = self.lm.trie, np.full(257, -np.inf)
            with np.errstate(divide="ignore"):
                for e in self.entries:
                    edges = trie.byte_edges(e.lo, e.hi, e.depth)
                    vec = np.empty(257)
                    vec[:256] = np.maximum(e.cum[edges[1:]] - e.cum[edges[:-1]], 0.0)
                    vec[END] = max(1.0 - e.cum[-1], 0.0) if e.depth == 0 else 0.0
                    raw = np.logaddexp(raw, e.node.logp + np.log(vec))
            self._raw = raw
        return self._raw

    def distribution(self) -> np.ndarray:
        """log P(next byte | pushed bytes), normalized over the 257 outcomes."""
        raw = self.raw()
        total = np.logaddexp.reduce(raw)
        # after a byte this model cannot spell (possible inside an ensemble) nothing is left
        return raw - total if np.isfinite(total) else raw

    def push(self, byte: int) -> None:
        raw = self.raw()
        trie, position = self.lm.trie, len(self.data) + 1
        threshold = self.log_eps + raw[byte]
        kept: list[_Entry] = []
        for e in self.entries:
            lo, hi = trie.narrow(e.lo, e.hi, e.depth, byte)
            if lo >= hi:
                continue
            depth = e.depth + 1
            for pos in trie.ending(lo, hi, depth):
                token = int(trie.order[pos])
                child = Node(token, e.node, position, e.node.depth + 1, e.node.logp + e.logprobs[token])
                if self.exact or self._worth_opening(child, threshold):
                    self.pending.append(child)
            if self.exact or e.node.logp + math.log(max(e.cum[hi] - e.cum[lo], 1e-300)) >= threshold:
                kept.append(_Entry(e.node, e.logprobs, e.cum, lo, hi, depth))
        self.entries = kept
        self.data.append(byte)
        self._raw = None

    def extend(self, data: bytes) -> None:
        for byte in data:
            self.push(byte)

    def _worth_opening(self, node: Node, threshold: float) -> bool:
        if node.logp < threshold:
            return False
        return node.parent is self.root or self.lm.pairs.valid(node.parent.token, node.token)

    def _evaluate(self) -> None:
        batch = self._context + self.pending
        self._context, self.pending = [], []
        for node, logprobs in self.evaluator.evaluate(batch):
            if node.end == 0 and node is not self.root:
                continue
            lp = logprobs.numpy()
            self.entries.append(_Entry(node, lp, self.lm.trie.cumulative(lp), 0, self.lm.trie.size, 0))


def open_stream(
    lm: ByteLM, prompt: bytes, *, context: list[int] | None = None, exact: bool = False, epsilon: float = 1e-6,
    tail_tokens: int = 2,
) -> ByteStream:
    """A stream that has read `prompt`. All but the last `tail_tokens` canonical tokens of the prompt
    become fixed context (their tokenization no longer depends on what follows, bar rare pre-tokenizer
    look-ahead); the tail is pushed byte by byte, so the prompt may end anywhere, even mid-token.
    With `exact`, every byte is pushed."""
    context = list(context or [lm.start_id])
    head = 0
    if not exact and prompt:
        ids = lm.encode(prompt.decode("utf-8", errors="replace"))[: -tail_tokens or None]
        pieces = [lm.vocab.tokens[i] for i in ids]
        if all(pieces) and prompt.startswith(b"".join(pieces)):
            context += ids
            head = sum(len(p) for p in pieces)
    stream = ByteStream(lm, context, exact=exact, epsilon=epsilon)
    stream.extend(prompt[head:])
    return stream
