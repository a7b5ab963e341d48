"""Evaluation report: ratios against a reference, pooled 'overall', the table and the JSON."""

import json
import math
import shutil
import textwrap
from pathlib import Path

import pytest
from transformers import AutoTokenizer

from tiny_models import lossy_tokenizer, save_tiny_llama

from transplant.errors import UserError
from transplant.eval.report import evaluate, format_markdown, format_table, write_json

TEXTS = {
    "code": Path(textwrap.__file__).read_text(encoding="utf-8")[:1000],
    "prose": "The quick brown fox jumps over the lazy dog. " * 12 + "\nDer schnelle braune Fuchs. 日本語の文章。\n",
}


@pytest.fixture(scope="module")
def folders(tmp_path_factory, smollm2_dir):
    root = tmp_path_factory.mktemp("models")
    smol = AutoTokenizer.from_pretrained(smollm2_dir)
    a = save_tiny_llama(root / "tiny-a", smol, seed=0)
    b = save_tiny_llama(root / "tiny-b", smol, seed=1)
    a_copy = Path(shutil.copytree(a, root / "tiny-a-copy"))
    lossy = save_tiny_llama(root / "lossy", lossy_tokenizer(), seed=0)
    return {"a": a, "b": b, "a_copy": a_copy, "lossy": lossy}


def reloaded(result, tmp_path):
    write_json(result, tmp_path / "out" / "result.json")
    return json.loads((tmp_path / "out" / "result.json").read_text(encoding="utf-8"))


def test_model_against_itself_has_ratio_one(folders, tmp_path):
    result = reloaded(evaluate([folders["a"]], folders["a"], TEXTS, context=64, stride=32), tmp_path)
    [model] = result["models"]
    assert model["is_reference"] and result["reference"] == "tiny-a"
    for metrics in [*model["domains"].values(), model["overall"]]:
        assert metrics["bpb_ratio"] == 1.0 and metrics["ppl_ratio"] == 1.0
        assert metrics["roundtrip_ok"]


def test_ratios_and_overall_follow_the_definitions(folders, tmp_path):
    result = reloaded(evaluate([folders["a_copy"], folders["b"]], folders["a"], TEXTS, context=64, stride=32), tmp_path)
    ref, copy, b = result["models"]
    assert [m["name"] for m in result["models"]] == ["tiny-a", "tiny-a-copy", "tiny-b"]
    assert ref["is_reference"] and not copy["is_reference"] and not b["is_reference"]
    # the same weights in another folder score identically
    assert all(m["bpb_ratio"] == 1.0 for m in [*copy["domains"].values(), copy["overall"]])
    for domain, metrics in b["domains"].items():
        assert metrics["bpb_ratio"] == pytest.approx(metrics["bits_per_byte"] / ref["domains"][domain]["bits_per_byte"])
        assert metrics["ppl_ratio"] == pytest.approx(metrics["token_ppl"] / ref["domains"][domain]["token_ppl"])
    nll = sum(m["nll_nats"] for m in b["domains"].values())
    n_bytes = sum(m["n_bytes"] for m in b["domains"].values())
    n_tokens = sum(m["n_tokens"] for m in b["domains"].values())
    assert n_bytes == sum(len(t.encode()) for t in TEXTS.values())
    assert b["overall"]["bits_per_byte"] == pytest.approx(nll / (math.log(2) * n_bytes))
    assert b["overall"]["token_ppl"] == pytest.approx(math.exp(nll / n_tokens))
    assert b["overall"]["bpb_ratio"] != 1.0
    assert set(result["definition"]) >= {"bits_per_byte", "bpb_ratio", "ppl_ratio", "overall"}
    assert (result["context"], result["stride"]) == (64, 32)

    table = format_table(result)
    assert "tiny-a  [reference]" in table and "bpb ratio" in table and "context 64, stride 32" in table
    assert f"{b['overall']['bpb_ratio']:.3f}" in table
    assert max(len(line) for line in table.splitlines()) <= 120

    markdown = format_markdown(result).splitlines()
    assert markdown[0] == "| model | code | prose | overall |" and len(markdown) == 5
    assert markdown[2].startswith("| tiny-a | ") and "bpb" in markdown[2]
    assert markdown[3] == "| tiny-a-copy | 1.000x | 1.000x | 1.000x |"
    assert f"{b['overall']['bpb_ratio']:.3f}x |" in markdown[4]


def test_lossy_round_trip_is_marked(folders, tmp_path):
    result = reloaded(evaluate([folders["lossy"]], None, {"x": "héllo world.\n"}, context=8, stride=4), tmp_path)
    [model] = result["models"]
    assert not model["domains"]["x"]["roundtrip_ok"] and model["domains"]["x"]["bpb_ratio"] is None
    table = format_table(result)
    assert f"{model['domains']['x']['bits_per_byte']:.3f}!" in table
    assert "does not round-trip" in table and "No reference" in table and "bpb ratio" not in table


def test_a_folder_without_a_model_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="not a model folder"):
        evaluate([tmp_path], None, TEXTS)
