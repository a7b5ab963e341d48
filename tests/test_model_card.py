"""Model cards: metadata only from what is recorded, parsed back by huggingface_hub's ModelCard."""

import json
import shutil

import pytest
from huggingface_hub import ModelCard

from transplant.cli import main
from transplant.errors import UserError
from transplant.hub.folder_kind import folder_kind
from transplant.hub.model_card import MARKER, build_card, write_card


@pytest.fixture(scope="module")
def out(tiny, tmp_path_factory):
    from transplant.pipeline import TransplantOptions, run

    folder = tmp_path_factory.mktemp("card") / "tiny--sp--fvt"
    run(TransplantOptions(base=str(tiny["bl_untied"]), donor=str(tiny["tok_sp"]), method="fvt", output=str(folder),
                          params={}, output_bias=-2.0, progress=False))
    return folder


def with_record(out, tmp_path, **changes):
    folder = tmp_path / "copy"
    shutil.copytree(out, folder)
    record = json.loads((folder / "transplant.json").read_text())
    record.update(changes)
    (folder / "transplant.json").write_text(json.dumps(record))
    return folder


def card_of(folder, title="alice/m") -> ModelCard:
    return ModelCard(build_card(folder_kind(folder), title))


def test_card_of_a_real_transplant(out):
    card = card_of(out)
    data = card.data.to_dict()
    assert data == {"library_name": "transformers", "license": "unknown", "pipeline_tag": "text-generation",
                    "tags": ["tokenizer-transplant", "fvt"]}
    record = json.loads((out / "transplant.json").read_text())
    counts = record["alignment"]
    assert f"{counts['donor_vocab']:,} donor ids; {counts['shared']:,} shared by bytes" in card.text
    assert f"{counts['new']:,} new" in card.text
    assert "zero-shot estimates" in card.text and "untied" in card.text
    assert "-2 nats" in card.text and "--output-bias -2" in card.text
    assert "No evaluation was stored" in card.text
    assert build_card(folder_kind(out), "alice/m") == build_card(folder_kind(out), "alice/m")  # no dates: pushes stay no-ops


def test_offline_pack_base_names_its_upstream(out, tmp_path):
    folder = with_record(out, tmp_path, base={"spec": "smollm2-135m", "name": "smollm2-135m", "path": "/x"},
                         donor={"spec": "qwen2", "name": "qwen2", "path": "/y"})
    card = card_of(folder)
    assert card.data.base_model == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert card.data.license == "apache-2.0"
    assert "dequantised to fp32" in card.text and "Qwen2/Qwen2.5 byte-level BPE" in card.text


def test_license_read_from_the_base_card_never_guessed(out, tmp_path):
    base = tmp_path / "hub" / "models--org--base" / "snapshots" / "abc"
    base.mkdir(parents=True)
    folder = with_record(out, tmp_path, base={"spec": str(base), "name": "base", "path": str(base)})
    assert card_of(folder).data.license == "unknown"
    assert card_of(folder).data.base_model == "org/base"
    (base / "README.md").write_text("---\nlicense: mit\n---\n# base\n")
    assert card_of(folder).data.license == "mit"
    folder = with_record(out, tmp_path / "alias", base={"spec": "gemma", "name": "gemma-3-270m", "path": str(tmp_path)})
    assert card_of(folder).data.base_model == "google/gemma-3-270m"


def test_evaluation_table_and_plot(out, tmp_path):
    folder = with_record(out, tmp_path)
    metrics = {"bits_per_byte": 1.2, "bpb_ratio": 1.5}
    result = {
        "context": 64, "stride": 32, "dtype": "float32", "reference": "base", "texts": {"en": {"n_bytes": 100}},
        "models": [
            {"name": "base", "path": "/b", "is_reference": True, "domains": {"en": {"bits_per_byte": 0.8, "bpb_ratio": 1.0}},
             "overall": {"bits_per_byte": 0.8, "bpb_ratio": 1.0}},
            {"name": "copy", "path": str(folder), "is_reference": False, "domains": {"en": metrics}, "overall": metrics},
        ],
    }
    (folder / "eval.json").write_text(json.dumps(result))
    text = card_of(folder).text
    assert "| base | 0.800 | 0.800 |" in text and "| **copy** (this model) | 1.500x | 1.500x |" in text
    assert "needs **1.500x** the bits per byte of `base`" in text
    assert "eval.png" not in text
    (folder / "eval.png").write_bytes(b"\x89PNG")
    assert "![bits-per-byte ratio per domain](eval.png)" in card_of(folder).text
    (folder / "eval.json").write_text("{")
    assert "could not be read" in card_of(folder).text


def test_healed_and_hypernetwork_folders(out, tmp_path):
    healed = with_record(out, tmp_path, healing={"steps": 100, "lr": 1e-4})
    card = card_of(healed)
    assert folder_kind(healed).kind == "healed" and "healed" in card.data.tags
    assert "zero-shot" not in card.text and "`steps=100`" in card.text
    hyper = tmp_path / "hyper"
    hyper.mkdir()
    (hyper / "config.json").write_text(json.dumps({"model_type": "transplant-hypernet", "base_model": "smollm2-135m",
                                                   "training": {"steps": 700, "minutes": 55.0, "tokens": 716800}}))
    card = card_of(hyper)
    assert card.data.tags == ["tokenizer-transplant", "hypernetwork"]
    assert "Trained for 700 steps (55.0 minutes" in card.text and "--hypernet" in card.text
    assert card.data.base_model == "HuggingFaceTB/SmolLM2-135M-Instruct"


def test_not_a_transplant_output(tiny, tmp_path):
    with pytest.raises(UserError, match="not a transplant output"):
        folder_kind(tiny["bl_tied"])
    with pytest.raises(UserError, match="no such folder"):
        folder_kind(tmp_path / "nothing")
    (tmp_path / "transplant.json").write_text("{broken")
    with pytest.raises(UserError, match="cannot read"):
        folder_kind(tmp_path)


def test_write_card_keeps_the_users_own(out, tmp_path):
    folder = with_record(out, tmp_path)
    assert write_card(folder_kind(folder), "alice/m")
    assert MARKER in (folder / "README.md").read_text()
    assert write_card(folder_kind(folder), "alice/other")  # ours: rewritten
    assert "# alice/other" in (folder / "README.md").read_text()
    (folder / "README.md").write_text("# mine\n")
    assert not write_card(folder_kind(folder), "alice/m")
    assert (folder / "README.md").read_text() == "# mine\n"


def test_card_only_prints_without_network(out, tmp_path, capsys):
    folder = with_record(out, tmp_path)
    assert main(["push", str(folder), "alice/m", "--card-only"]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("---\n") and "# alice/m" in printed
    assert (folder / "README.md").read_text() == printed.rstrip("\n") + "\n"
