"""Where merges may happen: one flag per gap between adjacent tokens.

Every character of the text gets a group; two adjacent tokens may merge when both lie wholly inside
the same group. Merged tokens then stay inside one group too, so a flag per gap stays right however
many merges follow (the kernel carries the right token's flag over to the merged one).

Modes:
- `word`: a group is a run of non-whitespace characters together with the one whitespace character
  right before it (" the", "\\nif"), or a run of whitespace. Merges never cross whitespace except
  inside pure whitespace runs, the paper's rule.
- `word-hyphen`: as `word`, but punctuation and symbols (Unicode P* and S*) form groups of their
  own, apart from the hyphen, which counts as a letter: "well-known" may become one token, "end."
  may not.
- `pretoken`: the base tokenizer's pre-tokens, intersected with `word` groups, so that a tokenizer
  without a pre-tokenizer (whole text one pre-token) still never merges across whitespace.
- `none`: anything but special tokens may merge (the paper's sentence-level boundary, minus its
  whitespace rule).
"""

from __future__ import annotations

import unicodedata

import numpy as np

from transplant.errors import UserError

MODES = ("pretoken", "word", "word-hyphen", "none")

_WS, _WORD, _PUNCT = 0, 1, 2


def _kind(ch: str, hyphen: bool) -> int:
    if ch.isspace():
        return _WS
    if hyphen and ch != "-" and unicodedata.category(ch)[0] in "PS":
        return _PUNCT
    return _WORD


def char_groups(text: str, mode: str) -> np.ndarray:
    """Group id per character of `text` under `word` or `word-hyphen` rules (see the module doc)."""
    hyphen = mode == "word-hyphen"
    kinds = [_kind(ch, hyphen) for ch in text]
    groups = np.empty(len(text), np.int64)
    group, previous = -1, None  # previous: kind of the group being extended, "lead" after a lone space
    for i, kind in enumerate(kinds):
        if kind == _WS:
            if i + 1 < len(kinds) and kinds[i + 1] != _WS:
                group += 1  # this whitespace opens the word after it
                previous = "lead"
            elif previous != _WS:
                group += 1
                previous = _WS
        elif previous not in ("lead", kind):
            group += 1
            previous = kind
        else:
            previous = kind
        groups[i] = group
    return groups


def joinable_gaps(
    text: str,
    offsets: list[tuple[int, int]],
    word_ids: list[int | None],
    special: list[bool],
    mode: str,
) -> np.ndarray:
    """uint8 per token: 1 when token i may merge with token i + 1 under `mode`.

    `offsets` are the tokens' character spans in `text`, `word_ids` their pre-token indices (as a
    fast tokenizer's encoding reports them), `special` marks special tokens, which never merge.
    """
    if mode not in MODES:
        raise UserError(f"unknown boundary mode {mode!r}; choose one of {', '.join(MODES)}")
    n = len(offsets)
    flags = np.zeros(n, np.uint8)
    if n < 2:
        return flags
    if mode == "none":
        for i in range(n - 1):
            flags[i] = not (special[i] or special[i + 1])
        return flags
    groups = char_groups(text, "word-hyphen" if mode == "word-hyphen" else "word")
    token_group = np.full(n, -1, np.int64)  # -1: spans two groups (or special): merges with nothing
    for i, (start, end) in enumerate(offsets):
        if special[i] or not len(text):
            continue
        span = groups[start:end] if end > start else groups[min(start, len(text) - 1)][None]
        if span.min() == span.max():
            token_group[i] = span[0]
    for i in range(n - 1):
        same = token_group[i] >= 0 and token_group[i] == token_group[i + 1]
        if mode == "pretoken":
            same = same and word_ids[i] is not None and word_ids[i] == word_ids[i + 1]
        flags[i] = same
    return flags
