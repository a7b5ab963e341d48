"""Hugging Face datasets as domains: spec parsing, saved folders, the byte limit and the error paths."""

import json
import sys

import datasets
import pytest

from transplant.cli import main
from transplant.errors import UserError
from transplant.eval.datasets import DatasetSpec, dataset_text, parse_spec
from transplant.eval.domains import DEFAULT_MAX_BYTES

ROWS = [
    "First line of the first row.", "", "Second row\nspans two lines.\n", "   ", "Third row, ünïcödé.", "Fourth.",
]


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A Dataset and a DatasetDict, each written by save_to_disk."""
    root = tmp_path_factory.mktemp("datasets")
    table = {"text": ROWS, "number": list(range(len(ROWS)))}
    datasets.Dataset.from_dict(table).save_to_disk(root / "tiny_wiki")
    splits = {"train": datasets.Dataset.from_dict(table), "test": datasets.Dataset.from_dict({"text": ["Test row."]})}
    datasets.DatasetDict(splits).save_to_disk(root / "tiny_splits")
    return root


def test_specs_name_the_domain_after_the_dataset():
    assert parse_spec("Salesforce/wikitext:wikitext-2-raw-v1:test:text") == DatasetSpec(
        "Salesforce/wikitext", "wikitext-2-raw-v1", "test", "text"
    )
    assert parse_spec("Salesforce/wikitext:wikitext-2-raw-v1:test:text").domain == "wikitext-wikitext-2-raw-v1"
    assert parse_spec("/data/tiny_wiki/:train:text").domain == "tiny_wiki"
    for bad in ("wikitext", "wikitext:test", "a:b:c:d:e", "wikitext::text"):
        with pytest.raises(UserError, match="NAME"):
            parse_spec(bad)


def test_rows_are_joined_one_per_line_without_empty_ones(saved):
    text = dataset_text(parse_spec(f"{saved / 'tiny_wiki'}:train:text"))
    assert text == "First line of the first row.\nSecond row\nspans two lines.\nThird row, ünïcödé.\nFourth.\n"


def test_text_is_cut_at_a_line_end_within_max_bytes(saved):
    full = dataset_text(parse_spec(f"{saved / 'tiny_wiki'}:train:text"))
    limit = len("First line of the first row.\nSecond row\nspans".encode())
    assert dataset_text(parse_spec(f"{saved / 'tiny_wiki'}:train:text"), max_bytes=limit) == full[: full.index("spans")]


def test_default_limit_is_64_kib(tmp_path):
    rows = [f"Row {i}: " + "words and more words " * 10 for i in range(1000)]
    datasets.Dataset.from_dict({"text": rows}).save_to_disk(tmp_path / "big")
    text = dataset_text(parse_spec(f"{tmp_path / 'big'}:train:text"))
    assert DEFAULT_MAX_BYTES - 300 < len(text.encode()) <= DEFAULT_MAX_BYTES and text.endswith("\n")


def test_splits_of_a_saved_dataset_dict(saved):
    assert dataset_text(parse_spec(f"{saved / 'tiny_splits'}:test:text")) == "Test row.\n"
    with pytest.raises(UserError, match="no split 'validation'; splits: train, test"):
        dataset_text(parse_spec(f"{saved / 'tiny_splits'}:validation:text"))


def test_missing_or_non_text_columns_are_user_errors(saved):
    with pytest.raises(UserError, match="no column 'body'; columns: text, number"):
        dataset_text(parse_spec(f"{saved / 'tiny_wiki'}:train:body"))
    with pytest.raises(UserError, match="holds int, not text"):
        dataset_text(parse_spec(f"{saved / 'tiny_wiki'}:train:number"))


def test_a_folder_not_written_by_save_to_disk_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="not one written by save_to_disk"):
        dataset_text(parse_spec(f"{tmp_path}:train:text"))


def test_offline_hub_dataset_is_a_user_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(UserError, match="HF_HUB_OFFLINE is set; pass a folder written by save_to_disk"):
        dataset_text(parse_spec("Salesforce/wikitext:wikitext-2-raw-v1:test:text"))


def test_without_the_datasets_library_the_error_says_how_to_install_it(saved, monkeypatch):
    monkeypatch.setitem(sys.modules, "datasets", None)
    with pytest.raises(UserError, match="pip install datasets"):
        dataset_text(parse_spec(f"{saved / 'tiny_wiki'}:train:text"))


def test_a_dataset_is_scored_as_its_own_domain(saved, tiny, tmp_path, capsys):
    out = tmp_path / "results.json"
    argv = ["eval", str(tiny["bl_untied"]), "--reference", str(tiny["bl_tied"]), "--domains", ""]
    argv += ["--dataset", f"{saved / 'tiny_wiki'}:train:text", "--context", "64", "--stride", "32", "--json", str(out)]
    assert main(argv) == 0
    result = json.loads(out.read_text(encoding="utf-8"))
    assert list(result["texts"]) == ["tiny_wiki"]
    expected = dataset_text(parse_spec(f"{saved / 'tiny_wiki'}:train:text"))
    assert result["texts"]["tiny_wiki"]["n_bytes"] == len(expected.encode())
    assert all("tiny_wiki" in model["domains"] for model in result["models"])
    assert "tiny_wiki" in capsys.readouterr().out
