"""`transplant eval` end to end on tiny model folders: table, JSON, plot, and one-line errors."""

import json

import matplotlib.image
import pytest

from transplant.cli import main

TEXT = "The quick brown fox jumps over the lazy dog.\ndef transplant(base, donor):\n    return base + donor\n" * 6


@pytest.fixture
def sample(tmp_path, monkeypatch):
    monkeypatch.setenv("TRANSPLANT_CACHE", str(tmp_path / "cache"))
    path = tmp_path / "sample.txt"
    path.write_text(TEXT, encoding="utf-8")
    return path


def _error_line(capsys):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("transplant: error: ")
    return err[0]


def test_two_models_against_a_reference_write_table_json_and_plot(tiny, sample, tmp_path, capsys):
    out, png = tmp_path / "out" / "results.json", tmp_path / "out" / "results.png"
    argv = ["eval", str(tiny["bl_untied"]), str(tiny["sp_untied"]), "--reference", str(tiny["bl_tied"])]
    argv += ["--domains", "", "--text", str(sample), "--context", "64", "--stride", "32"]
    argv += ["--json", str(out), "--plot", str(png)]
    assert main(argv) == 0

    result = json.loads(out.read_text(encoding="utf-8"))
    ref, bl, sp = result["models"]
    assert [m["name"] for m in result["models"]] == ["bl_tied", "bl_untied", "sp_untied"]
    assert ref["is_reference"] and result["reference"] == "bl_tied"
    assert list(result["texts"]) == ["sample"] and result["texts"]["sample"]["n_bytes"] == len(TEXT.encode())
    assert ref["overall"]["bpb_ratio"] == 1.0
    for model in (bl, sp):
        metrics, reference = model["domains"]["sample"], ref["domains"]["sample"]
        assert metrics["bpb_ratio"] == pytest.approx(metrics["bits_per_byte"] / reference["bits_per_byte"])
        assert metrics["ppl_ratio"] == pytest.approx(metrics["token_ppl"] / reference["token_ppl"])

    table = capsys.readouterr().out
    assert "bl_tied  [reference]" in table and "sp_untied" in table and "context 64, stride 32" in table
    assert matplotlib.image.imread(png).shape[0] > 100


def test_text_files_are_cut_to_max_bytes(tiny, sample, tmp_path):
    out = tmp_path / "results.json"
    argv = ["eval", str(tiny["bl_tied"]), "--domains", "", "--text", str(sample), "--max-bytes", "100"]
    assert main(argv + ["--context", "64", "--stride", "32", "--json", str(out)]) == 0
    result = json.loads(out.read_text(encoding="utf-8"))
    assert result["texts"]["sample"]["n_bytes"] == 100 and result["reference"] is None


@pytest.mark.parametrize(
    "more_models,options,expected",
    [
        (["/no/such/model"], [], "/no/such/model: no such file or folder"),
        ([], ["--reference", "/no/such/reference"], "/no/such/reference: no such file or folder"),
        ([], ["--domains", "en,klingon"], "unknown domain(s) klingon"),
        ([], ["--text", "/no/such/text.txt"], "text file /no/such/text.txt not found"),
        ([], ["--text", "SAMPLE"], "two texts would both be domain 'sample'"),
        ([], ["--dataset", "wikitext:test"], "--dataset expects NAME[:CONFIG]:SPLIT:COLUMN"),
        ([], ["--max-bytes", "0"], "--max-bytes must be at least 1"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tiny, sample, tmp_path, capsys, more_models, options, expected):
    out = tmp_path / "results.json"
    options = [str(sample) if arg == "SAMPLE" else arg for arg in options]
    argv = ["eval", str(tiny["bl_tied"]), *more_models, "--domains", "", "--text", str(sample), "--json", str(out)]
    assert main(argv + options) == 2
    assert expected in _error_line(capsys)
    assert not out.exists()


def test_nothing_to_score_is_one_line(tiny, sample, capsys):
    assert main(["eval", str(tiny["bl_tied"]), "--domains", ""]) == 2
    assert "nothing to score" in _error_line(capsys)
