"""What trains and what stays: new rows only, tied stays tied, norms and LoRA on request, the written
folder equal to the trained model."""

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from transplant.heal.pipeline import HealOptions, heal, prepare

TEXT = ("The quick brown fox jumps over the lazy dog. def heal(rows):\n    return rows * 2\n"
        "Über den Wolken muss die Freiheit wohl grenzenlos sein. 東京は日本の首都です。\n") * 30


@pytest.fixture(scope="module")
def transplants(tiny, tmp_path_factory):
    """Tied (byte-level base, SentencePiece donor) and untied transplants, and a training text."""
    from transplant.pipeline import TransplantOptions, run

    root = tmp_path_factory.mktemp("heal")
    out = {}
    for name, base in (("tied", tiny["bl_tied"]), ("untied", tiny["bl_untied"])):
        out[name] = run(TransplantOptions(base=str(base), donor=str(tiny["tok_sp"]), method="fvt",
                                          output=str(root / name), progress=False))
    (root / "text.txt").write_text(TEXT)
    out["text"] = root / "text.txt"
    return out


def weights(folder):
    return load_file(folder / "model.safetensors")


def healed(transplants, folder, output, **kw):
    options = dict(folder=str(folder), texts=[str(transplants["text"])], output=str(output), steps=3, seq_len=32,
                   lr=1e-2, warmup=1, allow_eval_overlap=True, progress=False)
    return heal(HealOptions(**{**options, **kw}))


def new_ids(folder):
    from transplant.heal.inputs import new_token_ids, read_input

    return torch.as_tensor(new_token_ids(read_input(folder)))


def changed_rows(before, after):
    return torch.nonzero((before != after).any(dim=1)).flatten()


@pytest.mark.parametrize("kind", ["tied", "untied"])
def test_only_new_rows_change(transplants, tmp_path, kind):
    src = transplants[kind]
    out = healed(transplants, src, tmp_path / "healed")
    before, after = weights(src), weights(out)
    assert set(before) == set(after)
    embedding_keys = ["model.embed_tokens.weight"] + ([] if kind == "tied" else ["lm_head.weight"])
    new = new_ids(src)
    for key in before:
        assert after[key].dtype == before[key].dtype
        if key in embedding_keys:
            rows = changed_rows(before[key], after[key])
            assert set(rows.tolist()) <= set(new.tolist())
            # an output row moves with every softmax; an input row only when its token is read
            assert len(rows) > len(new) // 2 if key == embedding_keys[-1] else len(rows) >= 5
        else:
            assert torch.equal(before[key], after[key]), key
    if kind == "tied":
        assert "lm_head.weight" not in after
        from transformers import AutoModelForCausalLM

        model = AutoModelForCausalLM.from_pretrained(out)
        assert model.lm_head.weight is model.model.embed_tokens.weight
        assert torch.equal(model.model.embed_tokens.weight, after["model.embed_tokens.weight"])


def test_norms_train_only_when_asked(transplants, tmp_path):
    src = transplants["tied"]
    before = weights(src)
    plain = weights(healed(transplants, src, tmp_path / "plain"))
    norms = weights(healed(transplants, src, tmp_path / "norms", train="embeddings+norms"))
    norm_keys = [k for k in before if "norm" in k]
    assert len(norm_keys) == 5  # two per layer and the final one
    assert all(torch.equal(plain[k], before[k]) for k in norm_keys)
    assert all(not torch.equal(norms[k], before[k]) for k in norm_keys)
    others = [k for k in before if k not in norm_keys and "embed" not in k]
    assert all(torch.equal(norms[k], before[k]) for k in others)


def test_lora_is_merged_and_equals_the_trained_model(transplants, tmp_path):
    from transformers import AutoModelForCausalLM

    src = transplants["untied"]
    options = HealOptions(folder=str(src), texts=[str(transplants["text"])], output=str(tmp_path / "lora"),
                          steps=4, seq_len=32, lr=1e-2, warmup=1, train="lora", allow_eval_overlap=True, progress=False)
    session = prepare(options)
    state = session.train()
    out = session.write(state)
    after, before = weights(out), weights(src)
    linears = [k for k in before if k.endswith("_proj.weight")]
    assert len(linears) == 14 and all(not torch.equal(after[k], before[k]) for k in linears)
    assert set(after) == set(before)  # no LoRA tensors in the checkpoint: merged
    ids = torch.tensor([[1, 5, 9, 200, 17, 3, 250, 42]])
    with torch.no_grad():
        trained = session.trainable.logits(ids)
        reloaded = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32).eval()(input_ids=ids).logits
    assert torch.allclose(trained, reloaded, atol=1e-5)
    record = json.loads((out / "transplant.json").read_text())["healing"]
    assert record["train"] == "lora" and record["lora_rank"] == 8 and record["steps"] == 4


def test_bf16_checkpoint_stays_bf16_and_untouched_rows_stay_bitwise(transplants, tmp_path):
    import shutil

    src = tmp_path / "bf16"
    shutil.copytree(transplants["tied"], src)
    tensors = {k: v.to(torch.bfloat16) for k, v in weights(src).items()}
    save_file(tensors, src / "model.safetensors", metadata={"format": "pt"})
    after = weights(healed(transplants, src, tmp_path / "healed"))
    assert all(t.dtype == torch.bfloat16 for t in after.values())
    new = set(new_ids(src).tolist())
    key = "model.embed_tokens.weight"
    old_rows = [i for i in range(tensors[key].shape[0]) if i not in new]
    assert torch.equal(after[key][old_rows], tensors[key][old_rows])
    assert not torch.equal(after[key], tensors[key])
