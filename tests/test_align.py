import numpy as np

from transplant.align import NEW, SHARED, SPECIAL, align
from transplant.vocab import load_vocab


def test_self_alignment_shares_everything(tiny):
    vocab = load_vocab(tiny["tok_sp"])
    al = align(vocab, vocab)
    assert (al.kind != NEW).all()
    assert (al.donor_to_base == np.arange(vocab.size)).all()


def test_cross_family_alignment_by_bytes_and_roles(tiny):
    base, donor = load_vocab(tiny["tok_bl"]), load_vocab(tiny["tok_sp"])
    al = align(base, donor)
    counts = al.counts()
    assert counts["shared"] > 250 and counts["new"] > 0
    assert sum(counts[k] for k in ("shared", "special_matched", "new")) == donor.size
    piece = donor.tokenizer.token_to_id("▁piece")
    assert al.kind[piece] == SHARED and base.tokens[al.donor_to_base[piece]] == b" piece"
    # </s> (eos) finds the base's eos by role although the spellings differ.
    eos = donor.tokenizer.token_to_id("</s>")
    assert al.kind[eos] == SPECIAL and base.specials[al.donor_to_base[eos]].content == "<|endoftext|>"
    assert al.special_map["</s>"] == "<|endoftext|>"
    donor_ids, base_ids = al.shared_pairs
    assert all(donor.tokens[d] == base.tokens[b] for d, b in zip(donor_ids, base_ids))


def test_real_pair_smollm2_qwen(smollm2_dir, qwen_coder_dir):
    al = align(load_vocab(smollm2_dir), load_vocab(qwen_coder_dir))
    counts = al.counts()
    # Measured 2026-11-22: 39,234 shared by bytes, 5 specials matched, 112,697 new of 151,936.
    assert 39000 <= counts["shared"] <= 39500
    assert al.special_map["<|im_end|>"] == "<|im_end|>"


def test_a_byte_piece_its_tokenizer_uses_takes_the_base_row_for_that_byte(tiny, tmp_path):
    # The donor spells "Q" only as <0x51> (as Mistral spells every newline <0x0A>); a base with an
    # ordinary "Q" uses that row for the byte, not its own rarely seen <0x51>.
    import json
    import shutil

    base_dir = tmp_path / "base"
    shutil.copytree(tiny["tok_sp"], base_dir)
    spec = json.loads((base_dir / "tokenizer.json").read_text())
    spec["model"]["vocab"]["Q"] = len(spec["model"]["vocab"])
    (base_dir / "tokenizer.json").write_text(json.dumps(spec))
    base, donor = load_vocab(base_dir), load_vocab(tiny["tok_sp"])
    byte_piece = donor.decompose(b"Q")
    assert len(byte_piece) == 1 and donor.byte_fallback[byte_piece[0]]
    al = align(base, donor)
    mapped = al.donor_to_base[byte_piece[0]]
    assert base.tokens[mapped] == b"Q" and not base.byte_fallback[mapped] and base.decompose(b"Q") == [mapped]
    # A byte piece its tokenizer keeps for rare contexts still takes the base's byte piece.
    rare = donor.tokenizer.token_to_id("<0x61>")
    assert donor.decompose(b"a") != [rare] and base.byte_fallback[al.donor_to_base[rare]]
