"""Real models, real tokenizers, real text: SmolLM2-135M with the Qwen vocabulary.

Bounds are measured values with a margin (numbers and command in each test)."""

import json

import pytest
import torch
from safetensors import safe_open
from transformers import AutoModelForCausalLM, AutoTokenizer

from transplant.eval.domains import load_domains
from transplant.eval.report import evaluate
from transplant.pipeline import TransplantOptions, run
from transplant.sources import resolve


def _bpb_ratio(result, domain):
    model = next(m for m in result["models"] if not m["is_reference"])
    return model["domains"][domain]["bpb_ratio"]


def test_control_own_tokenizer_gives_identical_embeddings_and_ratio_one(smollm2_dir, tmp_path):
    out = run(TransplantOptions(base="smollm2-135m", donor="smollm2-135m", method="omp", output=str(tmp_path / "ctl"),
                                params={"k": 8}, progress=False))
    record = json.loads((out / "transplant.json").read_text())
    assert record["alignment"]["new"] == 0
    with safe_open(smollm2_dir / "model.safetensors", "pt") as a, safe_open(out / "model.safetensors", "pt") as b:
        assert torch.equal(a.get_tensor("model.embed_tokens.weight"), b.get_tensor("model.embed_tokens.weight"))
    texts = load_domains(["en", "code"], max_bytes=2048)
    result = evaluate([out], smollm2_dir, texts, context=512, stride=256)
    for domain in texts:
        assert _bpb_ratio(result, domain) == pytest.approx(1.0, abs=1e-6)


def test_smollm2_with_qwen_tokenizer_fvt(tmp_path):
    """Tokenizer-only Qwen donor (offline `qwen2`), FVT. Measured 2026-11-22 on 4 KiB slices,
    context 512 / stride 256 (this test's own setup): en 1.256x, code 1.705x the original's bpb."""
    out = run(TransplantOptions(base="smollm2-135m", donor="qwen2", method="fvt", output=str(tmp_path / "fvt"), progress=False))
    base = resolve("smollm2-135m", need_weights=True).path
    texts = load_domains(["en", "code", "de", "ja"], max_bytes=4096)
    tok, donor_tok = AutoTokenizer.from_pretrained(out), AutoTokenizer.from_pretrained(resolve("qwen2", need_weights=False).path)
    for text in texts.values():
        assert tok(text)["input_ids"] == donor_tok(text)["input_ids"]
    model = AutoModelForCausalLM.from_pretrained(out)
    assert model.config.vocab_size == len(donor_tok) and model.config.tie_word_embeddings
    assert model.config.eos_token_id == donor_tok.convert_tokens_to_ids("<|im_end|>")
    result = evaluate([out], base, {d: texts[d] for d in ("en", "code")}, context=512, stride=256)
    assert 1.15 < _bpb_ratio(result, "en") < 1.35
    assert 1.55 < _bpb_ratio(result, "code") < 1.85


@pytest.mark.slow
def test_smollm2_with_qwen_model_omp_and_output_bias(tmp_path, qwen_coder_dir):
    """Donor with embeddings (Qwen2.5-Coder-0.5B), OMP k=8, and FVT with the -2 nat output bias.
    Measured 2026-11-22 on 4 KiB slices, context 512 / stride 256: see the README table."""
    base = resolve("smollm2-135m", need_weights=True).path
    omp = run(TransplantOptions(base="smollm2-135m", donor="qwen2.5-coder-0.5b", method="omp",
                                output=str(tmp_path / "omp"), params={"k": 8}, progress=False))
    fvt = run(TransplantOptions(base="smollm2-135m", donor="qwen2.5-coder-0.5b", method="fvt",
                                output=str(tmp_path / "fvt"), progress=False))
    best = run(TransplantOptions(base="smollm2-135m", donor="qwen2.5-coder-0.5b", method="fvt", output_bias=-2.0,
                                 output=str(tmp_path / "best"), progress=False))
    texts = load_domains(["en", "code"], max_bytes=4096)
    result = evaluate([omp, fvt, best], base, texts, context=512, stride=256)
    overall = {m["path"]: m["overall"]["bpb_ratio"] for m in result["models"]}
    assert overall[str(best)] < overall[str(fvt)] < overall[str(omp)]
    assert overall[str(omp)] < 2.2
