import torch
from tiny_aux import tiny_sentence_model

from transplant.align import align
from transplant.checkpoint import read_embeddings
from transplant.methods import METHODS, MethodInputs, build_matrices
from transplant.vocab import load_vocab


def _inputs(tiny, base, donor):
    bv, dv = load_vocab(tiny[base]), load_vocab(tiny[donor])
    donor_emb = read_embeddings(tiny[donor]).matrices if (tiny[donor] / "config.json").exists() else None
    return MethodInputs(read_embeddings(tiny[base]).matrices, donor_emb, bv, dv, align(bv, dv))


def _tiny_hypernet(base, tmp_path):
    from tests.conftest import TRAINING_TEXT
    from transplant.hypernet.train import TrainOptions, train

    text = tmp_path / "text.txt"
    text.write_text(TRAINING_TEXT)
    return train(TrainOptions(base=str(base), texts=[str(text)], output=str(tmp_path / "hn"), steps=2, batch_size=2,
                              seq_len=16, vocab_size=300, recon_steps=1, aux_tokens=16, width=16, layers=1,
                              allow_eval_overlap=True, progress=False)).output


def test_every_method_returns_one_row_per_new_token(tiny, tmp_path, monkeypatch):
    monkeypatch.setenv("TRANSPLANT_CACHE", str(tmp_path / "cache"))
    # a tiny auxiliary model keeps tokenadapt from fetching the default one in the fast tier
    params = {"omp": {"k": 8}, "tokenadapt": {"aux_model": str(tiny_sentence_model(tmp_path / "aux"))},
              "hypernet": {"hypernet": str(_tiny_hypernet(tiny["bl_untied"], tmp_path))}}
    inputs = _inputs(tiny, "bl_untied", "sp_untied")
    for name, spec in METHODS.items():
        rows = spec.fn(inputs, progress=False, **params.get(name, {}))
        assert rows.shape == (len(inputs.alignment.new_ids), 2, inputs.base.shape[2]), name
        assert torch.isfinite(rows).all(), name


def test_control_donor_equal_to_base_gives_base_embeddings(tiny):
    inputs = _inputs(tiny, "bl_untied", "bl_untied")
    assert len(inputs.alignment.new_ids) == 0
    rows = METHODS["omp"].fn(inputs, k=8, progress=False)
    heads = build_matrices(inputs, rows, torch.float32)
    assert all(torch.equal(h, inputs.base[:, i]) for i, h in enumerate(heads))


def test_fvt_is_the_mean_of_the_base_pieces(tiny):
    inputs = _inputs(tiny, "bl_untied", "tok_sp")
    rows = METHODS["fvt"].fn(inputs)
    new_ids = inputs.alignment.new_ids
    for row, did in list(enumerate(new_ids))[:40]:
        data = inputs.donor_vocab.tokens[did]
        if data:
            pieces = inputs.base_vocab.decompose(data)
            assert torch.allclose(rows[row], inputs.base[pieces].mean(0), atol=1e-6)


def test_omp_reconstructs_a_donor_that_is_a_linear_map_of_the_base(tiny):
    """If donor = base @ W (same vocabulary up to a few removed tokens), OMP's coefficients found in
    the donor space carry over exactly, so new rows land close to the true base rows."""
    bv = load_vocab(tiny["tok_bl"])
    base = read_embeddings(tiny["bl_untied"]).matrices
    w = torch.randn(base.shape[2], 40, generator=torch.Generator().manual_seed(0))
    donor = base @ w  # (V, 2, 40)
    al = align(bv, bv)
    hidden = torch.arange(100, 140)
    al.kind[hidden.numpy()] = 0
    al.donor_to_base[hidden.numpy()] = -1
    inputs = MethodInputs(base, donor, bv, bv, al)
    rows = METHODS["omp"].fn(inputs, k=32, progress=False)
    err = (rows - base[hidden]).norm() / base[hidden].norm()
    assert err < 0.05
