"""A hypernetwork for SmolLM2-135M trained briefly on real English text (slow tier, about 5 minutes)."""

import numpy as np
import pytest
import torch


@pytest.mark.slow
def test_forty_steps_reconstruct_base_tokens_better_than_fvt_and_transplant_llama3(tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from transplant.cache import cache_dir
    from transplant.checkpoint import read_embeddings
    from transplant.eval.build_train_text import build_train_text
    from transplant.eval.domains import load_domains
    from transplant.eval.score import score_text
    from transplant.hypernet.model import Hypernet
    from transplant.hypernet.objective import reconstruction_loss
    from transplant.hypernet.pieces import PieceEncoder
    from transplant.hypernet.train import TrainOptions, train
    from transplant.pipeline import TransplantOptions, run
    from transplant.sources import resolve
    from transplant.vocab import load_vocab

    text_file = cache_dir("train_text") / "en.txt"
    if not text_file.is_file():
        build_train_text(["en"], text_file.parent)
    result = train(TrainOptions(base="smollm2-135m", texts=[str(text_file)], output=str(tmp_path / "hn"), steps=40,
                                recon_steps=10, progress=False))

    source = resolve("smollm2-135m", need_weights=True)
    table = read_embeddings(source.path).matrices.float()
    vocab = load_vocab(source.path)
    untrained = Hypernet(result.model.config)
    untrained.init_from_base(table)  # exactly fvt: the mean of the pieces
    ordinary = [i for i, t in enumerate(vocab.tokens) if t is not None and len(t) > 1]
    ids = np.random.default_rng(123).choice(ordinary, 3000, replace=False)
    pieces = PieceEncoder(vocab, 8).batch([vocab.tokens[i] for i in ids], held_out=True)
    with torch.no_grad():
        losses = [float(reconstruction_loss(m(table, pieces), table[torch.as_tensor(ids)], table.std(0)))
                  for m in (untrained, result.model.eval())]
    print(f"\nreconstruction of 3000 base tokens from held-out pieces: fvt {losses[0]:.4f}, trained {losses[1]:.4f}")
    # measured 2026-12-06: 1.4313 -> 1.2988 (-9.3%)
    assert losses[1] < losses[0] * 0.95

    text = load_domains(["en"], max_bytes=8192)["en"]
    bpb = {}
    for method, params in (("fvt", {}), ("hypernet", {"hypernet": str(result.output)})):
        out = run(TransplantOptions(base="smollm2-135m", donor="llama3", method=method, params=params,
                                    output=str(tmp_path / method), progress=False))
        model = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32)
        bpb[method] = score_text(model, AutoTokenizer.from_pretrained(out), text).bits_per_byte
    print(f"SmolLM2 <- Llama 3, English bpb: fvt {bpb['fvt']:.4f}, hypernet after 40 steps {bpb['hypernet']:.4f}")
    # measured 2026-12-06: 0.6758 vs 0.6865 (+1.6%); 40 steps are far from the 335 of the README's run
    # (0.648, -4% against fvt), so this bound only says the network's rows work in the real model
    assert bpb["hypernet"] < bpb["fvt"] * 1.04
