"""Fill-in-the-middle when the prompt stops inside a token: plain prompting, token healing, bytes.

A FIM prompt here is `<fim_prefix> head <fim_suffix> suffix <fim_middle>` followed by `tail`, the
start of the line being completed, cut in the middle of a token. The three ways differ only in how
they condition on the tail:
- plain: the tail's canonical tokens, then ordinary token decoding;
- healing: the tail minus its last token, whose bytes the first generated token must start with;
- bytes: the tail's bytes through the exact next-byte distribution (`ByteStream`), decoding bytes.
Each is scored by exact match of the rest of the line (decoding stops where the output departs from
it, so a prediction is shown up to its first wrong piece) and by log P(true middle | prompt).
All three branch off one evaluation of the shared context (tree attention), so only what differs is run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from transplant.bytes.evaluator import Node, TreeEvaluator
from transplant.bytes.generate import generate
from transplant.bytes.likelihood import score_bytes
from transplant.bytes.model import ByteLM
from transplant.bytes.next_byte import ByteStream
from transplant.errors import UserError

METHODS = ("plain", "healing", "bytes")


@dataclass
class FimPrompt:
    head: str  # file text before the line
    tail: str  # the line up to the cut (ends mid-token)
    middle: str  # the rest of the line, newline included: what should come next
    suffix: str  # text after the line


@dataclass
class FimOutcome:
    prediction: dict[str, str]  # method -> predicted rest of the line (no newline)
    logp: dict[str, float]  # method -> log P(middle | prompt), nats
    exact: dict[str, bool]


def fim_context(lm: ByteLM, prompt: FimPrompt) -> list[int]:
    roles = {role: lm.vocab.role_id(role) for role in ("fim_prefix", "fim_suffix", "fim_middle")}
    missing = [role for role, tid in roles.items() if tid is None]
    if missing:
        raise UserError(f"{lm.name} has no FIM tokens ({', '.join(missing)} missing)")
    return [roles["fim_prefix"], *lm.encode(prompt.head), roles["fim_suffix"], *lm.encode(prompt.suffix), roles["fim_middle"]]


def _chain(parent: Node | None, tokens: list[int]) -> list[Node]:
    nodes = []
    for token in tokens:
        parent = Node(token, parent, 0, parent.depth + 1 if parent is not None else 0)
        nodes.append(parent)
    return nodes


def _token_logp(evaluator: TreeEvaluator, base: Node, prefix: list[int], targets: list[int]) -> tuple[float, np.ndarray]:
    """log P(targets | base + prefix) and the next-token log-probabilities right after the prefix."""
    rows = [lp.numpy() for _, lp in evaluator.evaluate(_chain(base, prefix + targets[:-1]))]
    after = rows[len(prefix) - 1 :]
    return float(sum(row[t] for row, t in zip(after, targets, strict=True))), after[0]


def _greedy(lm: ByteLM, evaluator: TreeEvaluator, base: Node, prefix: list[int], max_tokens: int,
            allowed: np.ndarray | None, target: bytes) -> bytes:
    """Greedy ordinary tokens after base + prefix until a newline or until the output departs from
    `target` (the exact match is decided then); `allowed` restricts the first token (healing)."""
    chain = _chain(base, prefix)
    logprobs = [lp for _, lp in evaluator.evaluate(chain)][-1].numpy()
    special = np.array([tok is None for tok in lm.vocab.tokens] + [True] * (len(logprobs) - lm.vocab.size))
    node, out = chain[-1], b""
    for step in range(max_tokens):
        scores = np.where(special[: len(logprobs)], -np.inf, logprobs)
        if step == 0 and allowed is not None:
            scores = np.where(np.isin(np.arange(len(scores)), allowed), scores, -np.inf)
        token = int(np.argmax(scores))
        out += lm.vocab.tokens[token]
        if b"\n" in out or not target.startswith(out[: len(target)]):
            break
        node = Node(token, node, 0, node.depth + 1)
        logprobs = next(iter(evaluator.evaluate([node])))[1].numpy()
    return out


def _starting_with(lm: ByteLM, data: bytes) -> np.ndarray:
    """Ids of the tokens whose bytes start with `data`."""
    trie, lo, hi = lm.trie, 0, lm.trie.size
    for depth, byte in enumerate(data):
        lo, hi = trie.narrow(lo, hi, depth, byte)
    return trie.order[lo:hi]


def run_fim(lm: ByteLM, prompt: FimPrompt, *, max_bytes: int = 96, epsilon: float = 1e-6) -> FimOutcome:
    context = fim_context(lm, prompt)
    evaluator = TreeEvaluator(lm.model)
    shared = _chain(None, context[:-1])
    list(evaluator.evaluate(shared))
    base, last = shared[-1], context[-1]
    tail_ids = lm.encode(prompt.tail)
    tail, middle = prompt.tail.encode("utf-8"), prompt.middle.encode("utf-8")
    max_tokens = max_bytes // 2
    predictions, logps = {}, {}

    predictions["plain"] = _greedy(lm, evaluator, base, [last, *tail_ids], max_tokens, None, middle)
    logps["plain"] = _token_logp(evaluator, base, [last, *tail_ids], lm.encode(prompt.middle))[0]

    removed = lm.vocab.tokens[tail_ids[-1]]
    allowed = _starting_with(lm, removed)
    predictions["healing"] = _greedy(
        lm, evaluator, base, [last, *tail_ids[:-1]], max_tokens, allowed, removed + middle
    )[len(removed) :]
    healed = lm.encode((removed + middle).decode("utf-8", errors="replace"))
    if healed[0] in set(allowed.tolist()):
        value, first = _token_logp(evaluator, base, [last, *tail_ids[:-1]], healed)
        logps["healing"] = value - float(np.logaddexp.reduce(first[allowed]))
    else:
        logps["healing"] = -math.inf  # healing cannot produce the true middle's first token

    # all but the tail's last two tokens are fixed context (see next_byte.open_stream), the rest is bytes
    fixed = tail_ids[:-2]
    stream = ByteStream(lm, [last, *fixed], epsilon=epsilon, evaluator=evaluator, parent=base)
    stream.extend(tail[sum(len(lm.vocab.tokens[t]) for t in fixed) :])
    predictions["bytes"] = generate([stream], max_bytes=max_bytes, stop=b"\n", target=middle).data
    scored = score_bytes(lm, tail + middle, context=[last], epsilon=epsilon, evaluator=evaluator, parent=base)
    logps["bytes"] = float(scored.logprobs[len(tail) :].sum())

    want = prompt.middle.rstrip("\n")
    texts = {m: p.decode("utf-8", errors="replace").split("\n")[0] for m, p in predictions.items()}
    return FimOutcome(texts, logps, {m: t == want for m, t in texts.items()})
