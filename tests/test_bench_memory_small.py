"""The memory benchmark's whole path (synthetic sharded checkpoint, sampled subprocess transplant,
bound, lazy output check) on a tiny configuration: hidden 64, SmolLM2's 49152-token tokenizer as
the base, Qwen2's 151646 ids as the donor, 2 layers, 2 shards forced by a small shard size."""

import json

import pytest
import torch
from safetensors import safe_open

from transplant.eval import bench_memory as bm

SMOL = ["/tmp/pk/smol", "smollm2-135m"]  # SmolLM2 tokenizer, 49152 ids
QWEN = ["/tmp/pk/qwen", "qwen2"]  # Qwen tokenizer, trimmed to Qwen2's 151646 ids


def tiny_config() -> bm.BenchConfig:
    return bm.BenchConfig(
        base=bm.ModelShape("mistral", "MistralForCausalLM", hidden=64, intermediate=128, heads=4, kv_heads=2, layers=2),
        donor=bm.ModelShape("qwen2", "Qwen2ForCausalLM", hidden=32, intermediate=64, heads=4, kv_heads=2, layers=1),
        base_tokenizer=SMOL, donor_tokenizer=QWEN, base_vocab=None, donor_vocab=151646,
        shard_bytes=8 * 1024**2,  # the 49152 x 64 bf16 input embedding alone is 6 MiB: lm_head goes to shard 2
    )


@pytest.fixture(scope="module")
def fvt_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("bench")
    record = bm.bench(workdir, tiny_config(), method="fvt", rss_cap=4 * bm.GiB, echo=False)
    return workdir, record


def test_synthetic_base_is_sharded_and_untied(fvt_run):
    workdir, record = fvt_run
    base = workdir / "base"
    index = json.loads((base / "model.safetensors.index.json").read_text())
    shards = sorted(set(index["weight_map"].values()))
    assert shards == ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]
    assert record["shape"]["base_vocab"] == 49152 and record["shape"]["donor_vocab"] == 151646
    config = json.loads((base / "config.json").read_text())
    assert (config["vocab_size"], config["hidden_size"], config["num_hidden_layers"]) == (49152, 64, 2)
    assert config["tie_word_embeddings"] is False
    assert bm.embedding_keys(base) == ["model.embed_tokens.weight", "lm_head.weight"]
    table = bm.tensor_table(base)
    assert index["metadata"]["total_size"] == sum(t["bytes"] for t in table.values())
    assert {t["dtype"] for t in table.values()} == {"BF16"}
    assert table["model.embed_tokens.weight"]["shape"] == [49152, 64]
    # the index names exactly the tensors each shard holds
    for name, shard in index["weight_map"].items():
        assert table[name]["file"] == shard


def test_transplant_ran_and_was_sampled(fvt_run):
    _, record = fvt_run
    assert record["returncode"] == 0 and not record["killed_at_cap"]
    assert record["peak_rss_bytes"] > 0 and record["peak_rss_sampled_bytes"] > 0 and record["ru_maxrss_bytes"] > 0
    assert record["samples"] > 10 and record["wall_s"] > 0
    stages = [s["name"] for s in record["stages"]]
    for stage in ("read_embeddings base", "method fvt", "build_matrices", "write_weights"):
        assert stage in stages
    assert record["peak_stage"] in stages


def test_bound_components(fvt_run):
    workdir, record = fvt_run
    c = record["components"]
    assert c["base_embeddings"] == 2 * 49152 * 64 * 2
    assert c["donor_embeddings"] == 0  # fvt reads the donor tokenizer only
    assert c["new_embeddings"] == 2 * 151646 * 64 * 2
    assert c["largest_shard"] == max(p.stat().st_size for p in bm.shard_paths(workdir / "base"))
    assert record["bound_bytes"] == 3 * (c["base_embeddings"] + c["new_embeddings"]) + c["largest_shard"]
    # at this size the interpreter and libraries dominate, so only the arithmetic is checked here
    assert record["under_bound"] == (record["peak_rss_bytes"] < record["bound_bytes"])


def test_output_checked_lazily(fvt_run):
    workdir, record = fvt_run
    v = record["verification"]
    assert v["ok"], v["problems"]
    assert v["checks"]["config_vocab_size"] == 151646 and v["checks"]["shards"] == 2
    assert v["checks"]["shared_rows_equal"] == "16/16"
    full = bm.verify_output(workdir / "base", workdir / "out-fvt", 151646, hash_all=True, rows=0)
    assert full["ok"], full["problems"]
    assert full["checks"]["hashed_identical"] == "19/19 of 19 non-embedding tensors"


def test_output_against_the_base_directly(fvt_run):
    workdir, _ = fvt_run
    base, out = workdir / "base", workdir / "out-fvt"
    assert json.loads((out / "config.json").read_text())["vocab_size"] == 151646
    base_index = json.loads((base / "model.safetensors.index.json").read_text())["weight_map"]
    out_index = json.loads((out / "model.safetensors.index.json").read_text())["weight_map"]
    assert out_index == base_index
    for shard in sorted(set(base_index.values())):
        with safe_open(base / shard, "pt") as fb, safe_open(out / shard, "pt") as fo:
            assert set(fb.keys()) == set(fo.keys())
            for name in fb.keys():
                if name in ("model.embed_tokens.weight", "lm_head.weight"):
                    assert fo.get_slice(name).get_shape() == [151646, 64]
                else:
                    assert torch.equal(fb.get_tensor(name), fo.get_tensor(name))


def test_verification_catches_a_changed_tensor(fvt_run, tmp_path):
    import shutil

    from safetensors.torch import load_file, save_file

    workdir, _ = fvt_run
    broken = tmp_path / "broken"
    shutil.copytree(workdir / "out-fvt", broken)
    shard = broken / "model-00001-of-00002.safetensors"
    tensors = load_file(shard)
    name = "model.layers.0.mlp.down_proj.weight"
    tensors[name] = tensors[name].clone()
    tensors[name][0, 0] += 1
    save_file(tensors, shard, metadata={"format": "pt"})
    result = bm.verify_output(workdir / "base", broken, 151646, hash_all=True, rows=0)
    assert not result["ok"]
    assert any(name in p for p in result["problems"])


def test_shards_are_planned_like_save_pretrained():
    specs = [("a", (4, 4)), ("b", (4, 4)), ("c", (8, 8)), ("d", (2,))]
    groups = bm.plan_shards(specs, itemsize=2, shard_bytes=64)
    assert [[n for n, _ in g] for g in groups] == [["a", "b"], ["c"], ["d"]]


def test_trimming_the_qwen_tokenizer_gives_qwen2(fvt_run):
    from tokenizers import Tokenizer

    workdir, _ = fvt_run
    trimmed = json.loads((workdir / "tokenizer-donor" / "tokenizer.json").read_text(encoding="utf-8"))
    assert [a["content"] for a in trimmed["added_tokens"]] == ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    assert max(trimmed["model"]["vocab"].values()) < 151646  # the padding ids past Qwen2.5's 151665 went too
    full = Tokenizer.from_file(str(bm.find_tokenizer(QWEN) / "tokenizer.json"))
    cut = Tokenizer.from_file(str(workdir / "tokenizer-donor" / "tokenizer.json"))
    text = "def transplant(base, donor):\n    return base + donor  # Über 東京 <|im_end|>"
    assert cut.encode(text).ids == full.encode(text).ids


def test_cleanup_of_a_named_workdir_spares_other_files(tmp_path):
    for name in ("base", "out-fvt", ".out-fvt.tmp-1234abcd", "tokenizer-donor"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "x").write_text("x")
    (tmp_path / "notes.txt").write_text("mine")
    bm.remove_workdir(tmp_path, whole=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]
