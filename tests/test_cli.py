import json
import subprocess
import sys

import pytest

from transplant.cli import main


def _error_line(capsys):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("transplant: error: ")
    return err[0]


@pytest.mark.parametrize(
    "argv,expected",
    [
        (["--base", "/no/such/folder", "--donor-tokenizer", "qwen2"], "no such file"),
        (["--base", "no-such-alias-xyz", "--donor-tokenizer", "qwen2"], "no-such-alias-xyz"),
        (["--donor-tokenizer", "qwen2"], "--base"),
        (["--base", "smollm2-135m", "--donor-tokenizer", "qwen2", "--method", "nope"], "unknown method"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(argv, expected, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    assert expected in _error_line(capsys)
    assert list(tmp_path.iterdir()) == []


def test_tokenizer_only_donor_with_omp_names_the_methods_that_work(tiny, capsys, tmp_path):
    argv = ["--base", str(tiny["bl_tied"]), "--donor-tokenizer", str(tiny["tok_sp"]), "--method", "omp", "-o", str(tmp_path / "o")]
    assert main(argv) == 2
    line = _error_line(capsys)
    assert "tokenizer only" in line and "fvt" in line and "mean" in line
    assert not (tmp_path / "o").exists()


def test_base_without_embeddings_weights_is_refused(tiny, tmp_path, capsys):
    assert main(["--base", str(tiny["tok_bl"]), "--donor-tokenizer", str(tiny["tok_sp"]), "-o", str(tmp_path / "o")]) == 2
    assert "weights" in _error_line(capsys)


def test_recipe_and_command_line_merge(tiny, tmp_path, capsys):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"base: {tiny['bl_untied']}\ndonor_tokenizer: {tiny['sp_untied']}\nmethod: omp\nparams:\n  k: 4\n")
    out = tmp_path / "out"
    assert main(["--recipe", str(recipe), "--k", "6", "-o", str(out), "--no-progress"]) == 0
    record = json.loads((out / "transplant.json").read_text())
    assert record["method"] == "omp" and record["parameters"]["k"] == 6
    capsys.readouterr()
    assert main(["--recipe", str(recipe), "-o", str(out)]) == 2
    assert "--overwrite" in _error_line(capsys)


def test_help_lists_methods_and_offline_sources():
    text = subprocess.run([sys.executable, "-m", "transplant.cli", "--help"], capture_output=True, text=True, check=True).stdout
    for word in ("omp", "fvt", "mean", "smollm2-135m", "qwen2.5-coder-0.5b", "mistral-v3"):
        assert word in text
