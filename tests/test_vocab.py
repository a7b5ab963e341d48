import pytest

from transplant.errors import UserError
from transplant.vocab import BYTE_LEVEL, SENTENCEPIECE, WORDPIECE, gpt2_byte_alphabet, load_vocab, piece_bytes


def test_gpt2_alphabet_is_a_bijection_over_bytes():
    alphabet = gpt2_byte_alphabet()
    assert sorted(alphabet) == list(range(256))
    assert len(set(alphabet.values())) == 256
    assert alphabet[ord(" ")] == "Ġ" and alphabet[ord("\n")] == "Ċ"


@pytest.mark.parametrize(
    "piece,family,expected,fallback",
    [
        ("Ġthe", BYTE_LEVEL, b" the", False),
        ("ĊĊ", BYTE_LEVEL, b"\n\n", False),
        ("æĿ±", BYTE_LEVEL, "東".encode(), False),
        ("▁the", SENTENCEPIECE, b" the", False),
        ("<0x0A>", SENTENCEPIECE, b"\n", True),
        ("##ing", WORDPIECE, b"ing", False),
        ("the", WORDPIECE, b" the", False),
    ],
)
def test_piece_bytes_across_families(piece, family, expected, fallback):
    assert piece_bytes(piece, family) == (expected, fallback)


def test_sentencepiece_and_byte_level_spellings_meet_in_bytes(tiny):
    bl, sp = load_vocab(tiny["tok_bl"]), load_vocab(tiny["tok_sp"])
    assert (bl.family, sp.family) == (BYTE_LEVEL, SENTENCEPIECE)
    word_starts = {t for t in bl.byte_index if t.startswith(b" ") and len(t) > 2} & set(sp.byte_index)
    assert {b" piece", b" donor"} <= word_starts  # "Ġpiece" and "▁piece" are one token
    # Byte-fallback pieces stand for single bytes but never shadow an ordinary piece.
    assert sp.byte_fallback[sp.byte_index[b"e"]] == False  # noqa: E712


@pytest.mark.parametrize("name", ["tok_bl", "tok_sp"])
def test_decompose_is_lossless(tiny, name):
    vocab = load_vocab(tiny[name])
    for data in [b" transplantation", "東京は".encode(), b"\xe6\x9d", b" \xff\xfe x"]:
        pieces = vocab.decompose(data)
        assert b"".join(vocab.tokens[i] for i in pieces) == data


def test_special_roles_declared_and_by_spelling(tiny):
    sp = load_vocab(tiny["tok_sp"])
    roles = {s.content: s.roles for s in sp.specials.values()}
    assert roles["<s>"][0] == "bos" and roles["</s>"][0] == "eos" and roles["<unk>"][0] == "unk"
    bl = load_vocab(tiny["tok_bl"])
    roles = {s.content: s.roles for s in bl.specials.values()}
    assert "turn_start" in roles["<|im_start|>"] and "turn_end" in roles["<|im_end|>"]
    assert bl.role_id("eos") == bl.tokenizer.token_to_id("<|endoftext|>")


def test_missing_tokenizer_json_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="no tokenizer.json"):
        load_vocab(tmp_path)


def test_real_vocab_bytes_match_decoding(smollm2_dir):
    """Every ordinary SmolLM2 token's canonical bytes are what the tokenizer decodes it to."""
    vocab = load_vocab(smollm2_dir)
    checked = 0
    for tid in range(0, vocab.size, 7):
        data = vocab.tokens[tid]
        if data is None:
            continue
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            continue
        assert vocab.tokenizer.decode([tid], skip_special_tokens=False) == text
        checked += 1
    assert checked > 6000
