"""Healing a real transplant: SmolLM2-135M with the Qwen2.5 tokenizer (omp, k=8)."""

import shutil
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def omp_folder(tmp_path_factory):
    """The README's omp k=8 transplant when this checkout has it, else made now (a few minutes)."""
    made = REPO / "results/compare_peer2/ours-omp-k8"
    if (made / "transplant.json").is_file():
        yield made
        return
    from transplant.pipeline import TransplantOptions, run

    # CI machines can be short of disk: the 750 MB folder goes as soon as this module's tests are done.
    root = tmp_path_factory.mktemp("real")
    yield run(TransplantOptions(base="smollm2-135m", donor="qwen2.5-coder-0.5b", method="omp", params={"k": 8},
                                output=str(root / "omp-k8"), progress=False))
    shutil.rmtree(root, ignore_errors=True)


def en_bpb(folder, text) -> float:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from transplant.eval.score import score_text

    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    return score_text(model, AutoTokenizer.from_pretrained(folder), text).bits_per_byte


@pytest.mark.slow
def test_twenty_lm_steps_lower_english_bits_per_byte(omp_folder, tmp_path):
    from transplant.cache import cache_dir
    from transplant.eval.build_train_text import build_train_text
    from transplant.eval.domains import load_domains
    from transplant.heal.pipeline import HealOptions, heal

    train = cache_dir("train_text") / "en.txt"
    if not train.is_file():
        build_train_text(["en"], train.parent)
    text = load_domains(["en"], max_bytes=16384)["en"]
    clock = time.perf_counter()
    out = heal(HealOptions(folder=str(omp_folder), texts=[str(train)], output=str(tmp_path / "healed"), steps=20,
                           objective="lm", progress=False, checkpoint_minutes=None))
    heal_s = time.perf_counter() - clock
    before, after = en_bpb(omp_folder, text), en_bpb(out, text)
    print(f"\nen bpb {before:.4f} -> {after:.4f} ({after / before - 1:+.2%}) after 20 lm steps in {heal_s:.0f} s")
    # measured 2026-11-23 (2 cores, lr / sqrt(row updates)): 0.7906 -> 0.7182 (-9.2%) in 147 s
    assert after < before * 0.95
