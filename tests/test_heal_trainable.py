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
    new = set(new_ids(src).tolist())
    for key in before:
        assert after[key].dtype == before[key].dtype
        if key in embedding_keys:
            rows = set(changed_rows(before[key], after[key]).tolist())
            # only new rows, and only those of tokens the windows held: far from all of them
            assert 5 <= len(rows) < len(new) // 2 and rows <= new
        else:
            assert torch.equal(before[key], after[key]), key
    if kind == "tied":
        assert "lm_head.weight" not in after
        from transformers import AutoModelForCausalLM

        model = AutoModelForCausalLM.from_pretrained(out)
        assert model.lm_head.weight is model.model.embed_tokens.weight
        assert torch.equal(model.model.embed_tokens.weight, after["model.embed_tokens.weight"])


def test_a_step_moves_only_the_rows_of_tokens_in_its_batch(transplants):
    from transformers import AutoModelForCausalLM

    from transplant.heal.optim import HealOptimizer
    from transplant.heal.trainable import Trainable

    src = transplants["untied"]
    ids = new_ids(src)
    trainable = Trainable(AutoModelForCausalLM.from_pretrained(src), ids)
    optimizer = HealOptimizer(trainable.row_params(), trainable.dense_groups(0.0))
    batch = torch.tensor([[int(ids[3]), 7, int(ids[10]), 12, int(ids[3])]])
    active = trainable.active_rows(batch)
    assert torch.nonzero(active).flatten().tolist() == [3, 10]
    before = [p.detach().clone() for p in trainable.row_params()]
    for _ in range(3):
        logits = trainable.logits(batch[:, :-1])
        loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), batch[:, 1:].flatten())
        for p in trainable.row_params():
            p.grad = None
        loss.backward()
        assert (trainable.row_params()[1].grad[~active] != 0).any()  # the softmax pushes every output row
        trainable.keep_row_gradients(active)
        optimizer.step(1e-2, active)
    for old, p in zip(before, trainable.row_params()):
        assert set(changed_rows(old, p.detach()).tolist()) <= {3, 10}
    assert set(changed_rows(before[1], trainable.row_params()[1].detach()).tolist()) == {3, 10}


@pytest.mark.parametrize("kind", ["tied", "untied"])
def test_chunked_head_gives_the_logprobs_and_row_gradients_of_the_whole_logits(transplants, kind, monkeypatch):
    """target_logprobs works chunk by chunk and skips the gradient of rows that do not train; the
    log-probs and what the optimizer uses (the gradients of the active rows) are those of the logits."""
    from transformers import AutoModelForCausalLM

    import transplant.heal.head as head
    from transplant.heal.objectives import IGNORE, token_logprobs
    from transplant.heal.trainable import Trainable

    monkeypatch.setattr(head, "CHUNK", 4)  # several chunks, the last one short
    ids = new_ids(transplants[kind])
    trainable = Trainable(AutoModelForCausalLM.from_pretrained(transplants[kind]), ids)
    assert trainable.chunked_head
    tokens = torch.tensor([[int(ids[3]), 7, int(ids[10]), 12, int(ids[3]), int(ids[20]), 9, 30, int(ids[3]), 5, 6]])
    inputs, targets = tokens[:, :-1], tokens[:, 1:].clone()
    targets[0, -2] = IGNORE
    weights = torch.linspace(0.5, 2.0, targets.shape[1])  # any upstream use, not only a mean
    active = trainable.active_rows(tokens)
    runs = []
    for fast in (False, True):
        lp = trainable.target_logprobs(inputs, targets, active) if fast else token_logprobs(trainable.logits(inputs), targets)
        for p in trainable.row_params():
            p.grad = None
        (lp * weights).sum().backward()
        runs.append((lp.detach(), [p.grad.clone() for p in trainable.row_params()]))
    (general, general_grads), (chunked, chunked_grads) = runs
    assert chunked[0, -2] == 0
    torch.testing.assert_close(chunked, general, rtol=1e-5, atol=1e-5)
    for full, fast in zip(general_grads, chunked_grads):
        torch.testing.assert_close(fast[active], full[active], rtol=1e-4, atol=1e-6)
        assert not fast[~active].any()


def test_a_head_with_a_bias_keeps_the_general_path(transplants):
    from transformers import AutoModelForCausalLM

    from transplant.heal.objectives import token_logprobs
    from transplant.heal.trainable import Trainable

    model = AutoModelForCausalLM.from_pretrained(transplants["untied"])
    model.lm_head.bias = torch.nn.Parameter(torch.randn(model.lm_head.out_features))
    trainable = Trainable(model, new_ids(transplants["untied"]))
    assert not trainable.chunked_head
    ids = torch.tensor([[1, 5, 9, 12]])
    everything = torch.ones(len(trainable.ids), dtype=torch.bool)
    with torch.no_grad():
        torch.testing.assert_close(trainable.target_logprobs(ids[:, :-1], ids[:, 1:], everything),
                                   token_logprobs(model(input_ids=ids[:, :-1]).logits, ids[:, 1:]))


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
