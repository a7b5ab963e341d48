import json

import pytest
import torch
from safetensors import safe_open
from transformers import AutoModelForCausalLM, AutoTokenizer

from transplant.checkpoint import atomic_folder, embedding_names, read_embeddings
from transplant.errors import UserError
from transplant.pipeline import TransplantOptions, run


@pytest.mark.parametrize("base", ["bl_tied", "bl_untied"])
def test_embedding_names_and_tie(tiny, base):
    in_name, out_name, tied = embedding_names(tiny[base])
    assert in_name == "model.embed_tokens.weight"
    assert tied == (base == "bl_tied") and (out_name is None) == tied
    emb = read_embeddings(tiny[base])
    assert emb.matrices.shape[1] == (1 if tied else 2)


@pytest.mark.parametrize("base,method", [("bl_tied", "omp"), ("bl_untied", "fvt"), ("bl_untied", "omp")])
def test_transplant_writes_a_normal_checkpoint(tiny, tmp_path, base, method):
    out = run(TransplantOptions(base=str(tiny[base]), donor=str(tiny["sp_untied"]), method=method,
                                output=str(tmp_path / "out"), params={"k": 8} if method == "omp" else {}, progress=False))
    model = AutoModelForCausalLM.from_pretrained(out)
    tok = AutoTokenizer.from_pretrained(out)
    donor_tok = AutoTokenizer.from_pretrained(tiny["sp_untied"])
    text = "The quick brown fox über 東京 ©"
    assert tok(text)["input_ids"] == donor_tok(text)["input_ids"]
    config = json.loads((out / "config.json").read_text())
    assert config["vocab_size"] == 509 == model.get_input_embeddings().weight.shape[0]
    assert config["tie_word_embeddings"] == (base == "bl_tied")
    assert config["eos_token_id"] == tok.convert_tokens_to_ids("</s>")
    assert json.loads((out / "generation_config.json").read_text())["eos_token_id"] == config["eos_token_id"]
    record = json.loads((out / "transplant.json").read_text())
    assert record["method"] == method and record["alignment"]["donor_vocab"] == 509
    # Every tensor but the embeddings is byte-for-byte the base's.
    with safe_open(tiny[base] / "model.safetensors", "pt") as a, safe_open(out / "model.safetensors", "pt") as b:
        for name in a.keys():
            if "embed_tokens" not in name and "lm_head" not in name:
                assert torch.equal(a.get_tensor(name), b.get_tensor(name)), name
    with torch.no_grad():
        logits = model(torch.tensor([tok(text)["input_ids"]])).logits
    assert torch.isfinite(logits).all()


def test_existing_output_is_refused_then_replaced_with_overwrite(tiny, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    options = TransplantOptions(base=str(tiny["bl_tied"]), donor=str(tiny["tok_sp"]), method="fvt", output=str(out), progress=False)
    with pytest.raises(UserError, match="exists"):
        run(options)
    assert (out / "keep.txt").exists()
    options.overwrite = True
    run(options)
    assert not (out / "keep.txt").exists() and (out / "transplant.json").exists()


def test_interrupted_write_leaves_nothing(tmp_path):
    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        with atomic_folder(out, overwrite=False) as tmp:
            (tmp / "config.json").write_text("{}")
            raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []


def test_bos_is_the_donor_token_that_replaced_the_base_bos(tiny, tmp_path):
    # The donor declares <|endoftext|> its bos (as Qwen's GGUF does); the base starts texts with
    # <|im_start|> (id 1), which the donor also has: texts must start from the row the base learned.
    import shutil

    donor = tmp_path / "donor"
    shutil.copytree(tiny["tok_bl"], donor)
    (donor / "tokenizer_config.json").write_text(json.dumps(
        {"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": "<|endoftext|>", "eos_token": "<|im_end|>"}))
    out = run(TransplantOptions(base=str(tiny["bl_tied"]), donor=str(donor), method="fvt",
                                output=str(tmp_path / "out"), progress=False))
    config = json.loads((out / "config.json").read_text())
    tok = AutoTokenizer.from_pretrained(out)
    assert json.loads((tiny["bl_tied"] / "config.json").read_text())["bos_token_id"] == 1
    assert config["bos_token_id"] == tok.bos_token_id == tok.convert_tokens_to_ids("<|im_start|>")
    assert tok.eos_token == "<|im_end|>"
