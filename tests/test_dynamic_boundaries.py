"""Boundary modes: which adjacent tokens may merge, on real tokenizer output."""

import numpy as np
import pytest
from transformers import AutoTokenizer

from transplant.dynamic.batches import special_ids, split_text, tokenize_batch
from transplant.dynamic.boundaries import MODES, char_groups, joinable_gaps
from transplant.errors import UserError

TEXT = (
    "The well-known fox, (quickly) jumps!  Over 2024 dogs.\n\n    def f(x):\n        return x-1\n"
    "Über den Wolken<|im_end|>東京は日本の首都です。\n"
)


def runs(text, groups):
    """The text cut where the group changes."""
    out, start = [], 0
    for i in range(1, len(text) + 1):
        if i == len(text) or groups[i] != groups[i - 1]:
            out.append(text[start:i])
            start = i
    return out


def test_word_groups_keep_one_leading_whitespace_and_whitespace_runs():
    assert runs("a bc  d\n\nef", char_groups("a bc  d\n\nef", "word")) == ["a", " bc", " ", " d", "\n", "\nef"]


def test_word_hyphen_separates_punctuation_but_not_hyphens():
    text = "well-known (end). x"
    assert runs(text, char_groups(text, "word-hyphen")) == ["well-known", " (", "end", ").", " x"]


def merged_spans(text, offsets, flags):
    """Text of every token that merging all joinable gaps would build from two or more base tokens
    (a base token may break the rules by itself: merges only must not)."""
    spans, first = [], 0
    for i in range(len(offsets)):
        if not flags[i]:
            if i > first:
                spans.append(text[offsets[first][0] : offsets[i][1]])
            first = i + 1
    return spans


@pytest.fixture(scope="module")
def tokenizers(tiny):
    return {name: AutoTokenizer.from_pretrained(tiny[name]) for name in ("tok_bl", "tok_sp")}


@pytest.mark.parametrize("name", ["tok_bl", "tok_sp"])
@pytest.mark.parametrize("mode", MODES)
def test_fully_merged_tokens_obey_the_mode(tokenizers, name, mode):
    tok = tokenizers[name]
    text = TEXT if name == "tok_bl" else TEXT.replace("<|im_end|>", "</s>")
    enc = tok(text, add_special_tokens=False, return_offsets_mapping=True)
    ids, offsets = enc["input_ids"], enc["offset_mapping"]
    special = [t in special_ids(tok) for t in ids]
    assert any(special)
    flags = joinable_gaps(text, offsets, enc.word_ids(), special, mode)
    assert flags[-1] == 0
    for i, is_special in enumerate(special):
        if is_special:
            assert flags[i] == 0 and (i == 0 or flags[i - 1] == 0)
    spans = merged_spans(text, offsets, flags)
    assert spans
    for span in spans:
        core = span[1:] if span[:1].isspace() else span
        if mode in ("word", "word-hyphen", "pretoken"):
            assert not any(c.isspace() for c in core) or span.isspace(), span
        if mode == "word-hyphen":
            punct = [c not in "-" and not c.isalnum() and not c.isspace() for c in core]
            assert all(punct) or not any(punct), span
    if mode == "none":
        assert flags.sum() == len(ids) - 1 - sum(2 for s in special if s)
    if mode == "pretoken":
        words = enc.word_ids()
        assert all(words[i] == words[i + 1] for i in np.flatnonzero(flags))


def test_byte_level_pieces_of_one_character_may_merge(tokenizers):
    tok = tokenizers["tok_bl"]
    enc = tok("東京", add_special_tokens=False, return_offsets_mapping=True)
    flags = joinable_gaps("東京", enc["offset_mapping"], enc.word_ids(), [False] * len(enc["input_ids"]), "word")
    assert len(enc["input_ids"]) > 2 and flags[:-1].all()


def test_unknown_mode_is_a_user_error():
    with pytest.raises(UserError, match="boundary mode"):
        joinable_gaps("ab", [(0, 1), (1, 2)], [0, 0], [False, False], "sentence")


def test_split_text_is_lossless_and_respects_the_chunk_size(tokenizers):
    tok = tokenizers["tok_bl"]
    text = TEXT.replace("<|im_end|>", " ") * 6
    chunks = split_text(text, tok, 40)
    assert "".join(chunks) == text and len(chunks) > 3
    lengths = [len(tok(c, add_special_tokens=False)["input_ids"]) for c in chunks]
    assert max(lengths) <= 40
    assert sum(c.endswith("\n") for c in chunks[:-1]) >= len(chunks) // 2


def test_batches_start_with_a_closed_start_token(tokenizers):
    tok = tokenizers["tok_bl"]
    batch = tokenize_batch(tok, ["a b", "the fox"], "word")
    assert [seq[0] for seq in batch.ids] == [tok.bos_token_id] * 2
    assert all(flags[0] == 0 and flags[-1] == 0 for flags in batch.joinable)
    assert batch.n_text_tokens == sum(len(seq) - 1 for seq in batch.ids)
