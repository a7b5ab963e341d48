"""The merge loop: kernel and reference agree merge for merge; merges are lossless; token identity by bytes."""

import numpy as np
import pytest
from pair_merge_reference import ReferenceState
from transformers import AutoTokenizer

from transplant.dynamic.batches import TokenBatch, split_text, tokenize_batch
from transplant.dynamic.merging import TokenTable, merge_batch
from transplant.errors import UserError
from transplant.vocab import load_vocab

TEXT = (
    "In the beginning God created the heaven and the earth. And the earth was without form, and void;\n"
    "def transplant(base, donor):\n    return base + donor  # the quick brown fox\n"
    "Über den Wolken muss die Freiheit wohl grenzenlos sein.\n"
) * 8


@pytest.fixture(scope="module")
def setup(tiny):
    tok = AutoTokenizer.from_pretrained(tiny["tok_bl"])
    return tok, load_vocab(tiny["tok_bl"])


def real_batch(tok, boundary, chunk=48):
    return tokenize_batch(tok, split_text(TEXT, tok, chunk), boundary)


def decoded_bytes(table, seq):
    return b"".join(table.bytes_of(int(t)) for t in seq[1:])


@pytest.mark.parametrize("boundary", ["word", "pretoken", "word-hyphen", "none"])
def test_kernel_and_reference_agree_merge_for_merge(setup, boundary):
    tok, vocab = setup
    batch = real_batch(tok, boundary)
    kernel = merge_batch(batch, TokenTable.from_vocab(vocab), 60)
    reference = merge_batch(
        batch, TokenTable.from_vocab(vocab), 60, state=ReferenceState(batch.ids, batch.joinable)
    )
    assert kernel.merges == reference.merges
    assert len(kernel.merges) > 5
    for a, b in zip(kernel.ids, reference.ids, strict=True):
        np.testing.assert_array_equal(a, b)


def test_merging_is_lossless_and_shortens(setup):
    tok, vocab = setup
    batch = real_batch(tok, "word")
    table = TokenTable.from_vocab(vocab)
    previous = 0.0
    for m in (0, 5, 20, 40):
        dyn = merge_batch(batch, table, m)
        assert len(dyn.merges) == m
        assert dyn.reduction > previous or m == 0
        previous = dyn.reduction
        for text, seq in zip(batch.texts, dyn.ids, strict=True):
            assert decoded_bytes(table, seq) == text.encode()
        for token in dyn.new_ids():
            pieces = table.pieces_of(int(token))
            assert len(pieces) >= 2 and all(p < table.base_size for p in pieces)
            assert b"".join(table.bytes_of(p) for p in pieces) == table.bytes_of(int(token))
    assert previous > 0.1


def test_batch_input_is_not_changed(setup):
    tok, vocab = setup
    batch = real_batch(tok, "word")
    before = [seq.copy() for seq in batch.ids]
    merge_batch(batch, TokenTable.from_vocab(vocab), 30)
    for a, b in zip(before, batch.ids, strict=True):
        np.testing.assert_array_equal(a, b)


def test_target_reduction_stops_at_the_first_merge_that_reaches_it(setup):
    tok, vocab = setup
    batch = real_batch(tok, "word")
    dyn = merge_batch(batch, TokenTable.from_vocab(vocab), 1000, target_reduction=0.1)
    assert dyn.reduction >= 0.1
    one_less = merge_batch(batch, TokenTable.from_vocab(vocab), len(dyn.merges) - 1)
    assert one_less.reduction < 0.1


def tiny_table():
    base = [None, b"a", b"b", b"c", b"ab", b" "]
    return TokenTable(base, {t: i for i, t in enumerate(base) if t is not None}, [], [])


def manual_batch(seqs, joins):
    return TokenBatch(
        texts=["x"] * len(seqs),
        ids=[np.array([0, *s], np.int64) for s in seqs],
        joinable=[np.array([0, *j], np.uint8) for j in joins],
        boundary="none",
    )


def test_a_merge_spelling_a_base_token_reuses_its_id():
    table = tiny_table()
    dyn = merge_batch(manual_batch([[1, 2, 1, 2, 3]], [[1, 1, 1, 1, 0]]), table, 1)
    assert dyn.merges[0].result == 4 and not table.new_bytes
    assert dyn.ids[0].tolist() == [0, 4, 4, 3]


def test_two_merges_spelling_the_same_bytes_are_one_token():
    table = tiny_table()
    first = merge_batch(manual_batch([[4, 3, 4, 3]], [[1, 1, 1, 0]]), table, 1)  # "ab" + "c"
    second = merge_batch(manual_batch([[1, 2, 3]], [[1, 1, 0]]), table, 2)  # "a" + "b" -> 4, then "ab" + "c"
    assert first.merges[0].result == second.merges[1].result == 6
    assert table.new_bytes == [b"abc"] and table.pieces_of(6) == (4, 3)


def test_special_tokens_have_no_bytes_and_bad_settings_fail():
    table = tiny_table()
    with pytest.raises(ValueError, match="special"):
        table.bytes_of(0)
    batch = manual_batch([[1, 2]], [[1, 0]])
    with pytest.raises(UserError):
        merge_batch(batch, table, -1)
    with pytest.raises(UserError):
        merge_batch(batch, table, 3, target_reduction=1.5)
