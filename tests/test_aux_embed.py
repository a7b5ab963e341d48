import numpy as np
import pytest
import torch
from tiny_aux import tiny_sentence_model

import transplant.aux_embed as ae
from transplant.errors import UserError

TEXTS = ["the quick brown fox", "fox", "models", "über", "東京", "a", "def transplant(base, donor):", "lazy dog"]


@pytest.fixture(scope="module")
def mean_model(tmp_path_factory):
    return ae.load_embedder(tiny_sentence_model(tmp_path_factory.mktemp("aux") / "mean"))


@pytest.fixture(autouse=True)
def _own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TRANSPLANT_CACHE", str(tmp_path / "cache"))


def _by_hand(embedder, text, pooling):
    batch = embedder.tokenizer([text], return_tensors="pt")
    with torch.no_grad():
        hidden = embedder.model(**batch).last_hidden_state[0]
    pooled = hidden[0] if pooling == "cls" else hidden.mean(0)
    return (pooled / pooled.norm()).numpy()


def test_mean_pooling_of_one_text_at_a_time_matches_the_batched_padded_result(mean_model, monkeypatch):
    monkeypatch.setattr(ae, "BATCH", 3)  # batches of mixed lengths, padded
    out = ae.embed(mean_model, TEXTS)
    assert mean_model.pooling == "mean"
    for text, row in zip(TEXTS, out, strict=True):
        assert np.allclose(row, _by_hand(mean_model, text, "mean"), atol=1e-5)
    assert np.allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-6)


def test_cls_pooling_is_read_from_the_pooling_config(tmp_path):
    embedder = ae.load_embedder(tiny_sentence_model(tmp_path / "cls", pooling="cls"))
    assert embedder.pooling == "cls"
    out = ae.embed(embedder, TEXTS[:3])
    for text, row in zip(TEXTS[:3], out, strict=True):
        assert np.allclose(row, _by_hand(embedder, text, "cls"), atol=1e-5)


def test_cache_is_reused_and_keyed_by_texts_and_model(mean_model, tmp_path, monkeypatch):
    first = ae.cached_embed(mean_model, TEXTS, "vocab")
    files = list((tmp_path / "cache" / "aux_embeddings").iterdir())
    assert [f.suffix for f in files] == [".npy"]  # no temp file left behind

    def refuse(*_, **__):
        raise AssertionError("recomputed although cached")

    monkeypatch.setattr(ae, "embed", refuse)
    assert np.array_equal(ae.cached_embed(mean_model, TEXTS, "vocab"), first)
    with pytest.raises(AssertionError, match="recomputed"):
        ae.cached_embed(mean_model, TEXTS[:-1], "vocab")
    other = ae.load_embedder(tiny_sentence_model(tmp_path / "other", seed=1))
    assert other.key != mean_model.key
    with pytest.raises(AssertionError, match="recomputed"):
        ae.cached_embed(other, TEXTS, "vocab")


def test_a_folder_without_a_model_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="not a model folder"):
        ae.load_embedder(tmp_path)


@pytest.mark.slow
def test_all_minilm_l6_v2_offline_default_puts_related_words_together():
    """The real default: measured 2026-11-23, cos(king, queen) 0.681, cos(king, carburetor) 0.213."""
    from transplant.aux_model import default_aux_model

    embedder = ae.load_embedder(default_aux_model())
    assert (embedder.pooling, embedder.max_length, embedder.dim) == ("mean", 256, 384)
    king, queen, carburetor = ae.embed(embedder, ["king", "queen", "carburetor"])
    assert king @ queen > 0.55
    assert king @ carburetor < 0.4
