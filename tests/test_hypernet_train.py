"""Hypernetwork training on a tiny model: a folder comes out, resume continues exactly, two gloo
processes agree, the method and the dynamic provider use the folder, bad input fails in one line."""

import json
import os
import socket

import pytest
import torch
import torch.multiprocessing as mp

from tests.conftest import TRAINING_TEXT
from transplant.cli import main
from transplant.errors import UserError
from transplant.hypernet.model import load_hypernet
from transplant.hypernet.train import TrainOptions, train

TINY = dict(batch_size=2, seq_len=16, vocab_size=300, recon_steps=2, aux_tokens=32, width=16, layers=1,
            allow_eval_overlap=True, progress=False)


@pytest.fixture(scope="module")
def text_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("text") / "train.txt"
    path.write_text(TRAINING_TEXT)
    return path


def train_out(opts):
    return train(opts).output


def options(tiny, text_file, out, **kw):
    return TrainOptions(base=str(tiny["bl_tied"]), texts=[str(text_file)], output=str(out), **{**TINY, **kw})


def test_training_writes_a_hypernetwork_folder_that_learned(tiny, text_file, tmp_path):
    out = train_out(options(tiny, text_file, tmp_path / "hn", steps=6))
    config = json.loads((out / "config.json").read_text())
    assert config["model_type"] == "transplant-hypernet"
    assert config["training"]["steps"] == 6 and config["training"]["tokens"] > 0
    model = load_hypernet(out)
    assert any(head.weight.abs().sum() > 0 for head in model.readout)
    log = json.loads((out / "training_log.json").read_text())
    assert log[0]["step"] == 0
    assert not (tmp_path / "hn.partial").exists()


def test_same_seed_same_network(tiny, text_file, tmp_path):
    a = load_hypernet(train_out(options(tiny, text_file, tmp_path / "a", steps=4)))
    b = load_hypernet(train_out(options(tiny, text_file, tmp_path / "b", steps=4)))
    for (name, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items()):
        torch.testing.assert_close(x, y, msg=name)


def test_resume_continues_where_the_checkpoint_left(tiny, text_file, tmp_path, monkeypatch):
    from transplant.hypernet import train as train_module

    whole = load_hypernet(train_out(options(tiny, text_file, tmp_path / "whole", steps=6)))
    real = train_module._checkpoint

    def crash_after_three(partial, model, optimizer, sampler, state, ctx):
        real(partial, model, optimizer, sampler, state, ctx)
        if state["step"] == 3:
            raise KeyboardInterrupt

    monkeypatch.setattr(train_module, "_checkpoint", crash_after_three)
    with pytest.raises(KeyboardInterrupt):
        train(options(tiny, text_file, tmp_path / "resumed", steps=6, checkpoint_minutes=0.0))
    monkeypatch.setattr(train_module, "_checkpoint", real)
    assert not (tmp_path / "resumed").exists()
    resumed = load_hypernet(train_out(options(tiny, text_file, tmp_path / "resumed", steps=6, resume=True)))
    for (name, x), (_, y) in zip(whole.state_dict().items(), resumed.state_dict().items()):
        torch.testing.assert_close(x, y, msg=name)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank, world, port, kwargs, results):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE=str(world), RANK=str(rank), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    import torch.distributed as dist

    result = train(TrainOptions(**kwargs))
    # every rank reports its own parameters; rank 0 also what it wrote
    results[rank] = {k: v.clone() for k, v in result.model.state_dict().items()}
    if rank == 0:
        results["saved"] = {k: v.clone() for k, v in load_hypernet(result.output).state_dict().items()}
    dist.destroy_process_group()


def test_two_gloo_processes_train_one_network(tiny, text_file, tmp_path):
    kwargs = {**TINY, "base": str(tiny["bl_tied"]), "texts": [str(text_file)], "output": str(tmp_path / "ddp"), "steps": 4}
    with mp.Manager() as manager:
        results = manager.dict()
        mp.spawn(_worker, args=(2, _free_port(), kwargs, results), nprocs=2, join=True)
        results = dict(results)
    assert set(results) == {0, 1, "saved"}
    for name, value in results[0].items():
        torch.testing.assert_close(results[1][name], value, msg=name)
        torch.testing.assert_close(results["saved"][name], value, msg=name)
    config = json.loads((tmp_path / "ddp" / "config.json").read_text())
    assert config["training"]["world_size"] == 2
    # each rank drew its own windows, so two processes saw twice the tokens of one
    single = train_out(options(tiny, text_file, tmp_path / "single", steps=4))
    assert config["training"]["tokens"] > json.loads((single / "config.json").read_text())["training"]["tokens"]


def test_method_and_dynamic_provider_use_the_folder(tiny, text_file, tmp_path):
    from transformers import AutoModelForCausalLM

    from transplant.dynamic.embeddings import HypernetProvider, NewToken, load_provider
    from transplant.vocab import load_vocab

    hn = train_out(options(tiny, text_file, tmp_path / "hn", steps=3))
    out = tmp_path / "transplanted"
    assert main(["--base", str(tiny["bl_tied"]), "--donor-tokenizer", str(tiny["tok_sp"]), "--method", "hypernet",
                 "--hypernet", str(hn), "--output", str(out), "--no-progress"]) == 0
    assert json.loads((out / "transplant.json").read_text())["parameters"]["hypernet"] == str(hn)
    everything = tmp_path / "all"
    assert main(["--base", str(tiny["bl_tied"]), "--donor-tokenizer", str(tiny["tok_sp"]), "--method", "hypernet",
                 "--hypernet", str(hn), "--param", "keep_shared=false", "--output", str(everything), "--no-progress"]) == 0
    a = AutoModelForCausalLM.from_pretrained(out).get_input_embeddings().weight
    b = AutoModelForCausalLM.from_pretrained(everything).get_input_embeddings().weight
    assert not torch.equal(a, b)
    model = AutoModelForCausalLM.from_pretrained(tiny["bl_tied"])
    provider = load_provider(model, hn, vocab=load_vocab(tiny["bl_tied"]))
    assert isinstance(provider, HypernetProvider)
    rows = provider.embed([NewToken(b" the quick", (1, 2))])
    assert rows.shape == (1, 1, model.config.hidden_size)


def test_bad_input_fails_in_one_line(tiny, text_file, tmp_path, capsys):
    base = str(tiny["bl_tied"])
    assert main(["hypernet", "train", "--base", base, "--text", str(tmp_path / "missing.txt"), "--output", str(tmp_path / "x"), "--steps", "1"]) == 2
    assert "not found" in capsys.readouterr().err
    (tmp_path / "exists").mkdir()
    with pytest.raises(UserError, match="exists"):
        train_out(options(tiny, text_file, tmp_path / "exists", steps=1))
    with pytest.raises(UserError, match="budget"):
        train_out(options(tiny, text_file, tmp_path / "y"))
    assert main(["hypernet", "train", "--base", base, "--text", str(text_file), "--output", str(tmp_path / "k"),
                 "--steps", "1", "--base-keep", "0.9", "0.2"]) == 2
    assert "--base-keep" in capsys.readouterr().err
    assert main(["--base", base, "--donor-tokenizer", str(tiny["tok_sp"]), "--method", "hypernet", "--output", str(tmp_path / "z")]) == 2
    assert "needs --hypernet" in capsys.readouterr().err
    hn = train_out(options(tiny, text_file, tmp_path / "hn", steps=1))
    assert main(["--base", str(tiny["sp_untied"]), "--donor-tokenizer", str(tiny["tok_bl"]), "--method", "hypernet",
                 "--hypernet", str(hn), "--output", str(tmp_path / "w")]) == 2
    assert "trained for a base with embeddings" in capsys.readouterr().err


def test_overlap_with_the_evaluation_text_is_refused(tiny, tmp_path, monkeypatch):
    import transplant.eval.domains as domains

    path = tmp_path / "leak.txt"
    path.write_text("intro\n" + TRAINING_TEXT[:500])
    monkeypatch.setattr(domains, "load_domains", lambda names=None, max_bytes=None: {"en": TRAINING_TEXT})
    with pytest.raises(UserError, match="shares 64 bytes"):
        train(TrainOptions(base=str(tiny["bl_tied"]), texts=[str(path)], output=str(tmp_path / "o"), steps=1,
                           **{**TINY, "allow_eval_overlap": False}))
