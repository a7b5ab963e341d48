"""Hypernetwork shapes, ties, FVT at initialisation, fallback pieces and the folder round trip."""

import pytest
import torch

from transplant.checkpoint import read_embeddings
from transplant.errors import UserError
from transplant.hypernet.model import Hypernet, HypernetConfig, check_base, embeddings_fingerprint, load_hypernet, save_hypernet
from transplant.hypernet.pieces import PAD, PieceEncoder
from transplant.vocab import load_vocab


def make(folder):
    table = read_embeddings(folder).matrices
    config = HypernetConfig(table.shape[0], table.shape[2], table.shape[1], max_pieces=6, width=32, layers=1, ff=64,
                            base={"name": "tiny", "fingerprint": embeddings_fingerprint(table)})
    model = Hypernet(config)
    model.init_from_base(table)
    return model, table, PieceEncoder(load_vocab(folder), 6)


@pytest.mark.parametrize("name,n", [("bl_tied", 1), ("bl_untied", 2), ("sp_untied", 2)])
def test_shapes_follow_the_base(tiny, name, n):
    model, table, encoder = make(tiny[name])
    out = model(table, encoder.batch([b"hello", b" world", b"x"]))
    assert out.shape == (3, n, table.shape[2])
    assert len(model.readout) == n


def test_untrained_network_is_fvt(tiny):
    model, table, encoder = make(tiny["bl_untied"])
    tokens = [b" transplantation", b"ab", b"\xe6\x9d\xb1\xe4\xba\xac"]
    out = model(table, encoder.batch(tokens))
    for row, data in enumerate(tokens):
        expected = table[list(encoder.pieces(data))].mean(0)
        torch.testing.assert_close(out[row], expected)


def test_trained_heads_move_away_from_fvt_and_grouping_keeps_order(tiny):
    model, table, encoder = make(tiny["bl_tied"])
    torch.manual_seed(0)
    for head in model.readout:
        torch.nn.init.normal_(head.weight, std=0.1)
    pieces = encoder.batch([b" the quick brown", b"a", b" fox", b"jumps over"])
    together = model(table, pieces, chunk=2)
    one_by_one = torch.cat([model(table, pieces[i : i + 1]) for i in range(4)])
    torch.testing.assert_close(together, one_by_one, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(together[1], table[list(encoder.pieces(b"a"))].mean(0))


def test_tied_base_gives_one_matrix_untied_two_distinct(tiny):
    model, table, encoder = make(tiny["bl_untied"])
    for head in model.readout:
        torch.nn.init.normal_(head.weight, std=0.1)
    out = model(table, encoder.batch([b" hello"]))
    assert not torch.allclose(out[0, 0], out[0, 1])


def test_unspellable_bytes_become_fallback_pieces(tiny):
    _, table, encoder = make(tiny["bl_tied"])
    # SmolLM2 cannot spell 0xC0; the tiny vocabulary can, so take the byte away from it
    spellable = encoder._spellable.copy()
    spellable[0xC0] = False
    encoder.__dict__["_spellable"] = spellable
    ids = encoder.pieces(b"ab\xc0cd")
    assert table.shape[0] + 0xC0 in ids
    assert b"".join(encoder.vocab.tokens[i] for i in ids if i < table.shape[0]) == b"abcd"


def test_fallback_pieces_are_learned_vectors(tiny):
    model, table, _ = make(tiny["bl_tied"])
    pieces = torch.tensor([[table.shape[0] + 0xC0, PAD]])
    with torch.no_grad():
        model.fallback[0xC0] = 7.0
    assert torch.allclose(model(table, pieces)[0, 0], torch.full((table.shape[2],), 7.0))


def test_held_out_pieces_never_use_the_token_itself(tiny):
    _, _, encoder = make(tiny["bl_tied"])
    vocab = encoder.vocab
    longer = [i for i, t in enumerate(vocab.tokens) if t and len(t) > 2][:50]
    for tid in longer:
        held = encoder.held_out(vocab.tokens[tid])
        assert tid not in held and len(held) >= 2
        assert b"".join(vocab.tokens[i] for i in held) == vocab.tokens[tid]


def test_folder_round_trip_and_base_check(tiny, tmp_path):
    model, table, encoder = make(tiny["bl_tied"])
    for head in model.readout:
        torch.nn.init.normal_(head.weight, std=0.1)
    save_hypernet(model, tmp_path / "hn")
    loaded = load_hypernet(tmp_path / "hn")
    pieces = encoder.batch([b" hello", b"world"])
    torch.testing.assert_close(loaded(table, pieces), model(table, pieces))
    check_base(loaded, table, "the tiny base")
    with pytest.raises(UserError, match="other embeddings"):
        check_base(loaded, table * 2, "a scaled base")
    other = read_embeddings(tiny["bl_untied"]).matrices
    with pytest.raises(UserError, match="trained for a base with embeddings"):
        check_base(loaded, other, "an untied base")


def test_loading_a_non_hypernetwork_folder_says_so(tiny, tmp_path):
    with pytest.raises(UserError, match="not a hypernetwork folder"):
        load_hypernet(tmp_path)
    with pytest.raises(UserError, match="not a hypernetwork's"):
        load_hypernet(tiny["bl_tied"])
