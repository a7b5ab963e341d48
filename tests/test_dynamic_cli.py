"""`transplant dynamic eval`: bad input ends with one line and exit 2; a run prints and writes results."""

import json

import pytest

from transplant.cli import main

TEXT = (
    "The quick brown fox jumps over the lazy dog. Tokenizers split text into pieces;\n"
    "def transplant(base, donor):\n    return base + donor\n"
) * 6


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--merges", "0,x"], "comma-separated integers"),
        (["--merges", "-1"], "none negative"),
        (["--hypernet", "hn"], "is not a hypernetwork folder"),
        (["--text", "missing.txt"], "not found"),
        (["--batch-size", "0"], "--batch-size must be at least 1"),
        (["--target-reduction", "2"], "fraction"),
        (["--domains", "xx"], "xx"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tiny, capsys, argv, message):
    assert main(["dynamic", "eval", "--base", str(tiny["bl_tied"]), *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and message in err


def test_help_explains_the_columns(capsys):
    with pytest.raises(SystemExit):
        main(["dynamic", "eval", "--help"])
    out = capsys.readouterr().out
    assert "bits-per-byte" in out and "--boundary" in out and "m = 0" in out


def test_eval_on_text_files(tiny, tmp_path, capsys):
    files = []
    for name, text in (("prose", TEXT), ("more", TEXT.upper())):
        files.append(tmp_path / f"{name}.txt")
        files[-1].write_text(text)
    out_json = tmp_path / "r.json"
    argv = ["dynamic", "eval", "--base", str(tiny["bl_untied"]), "--merges", "5,20", "--text", *map(str, files),
            "--chunk-tokens", "40", "--batch-size", "4", "--json", str(out_json), "--no-progress"]
    assert main(argv) == 0
    table = capsys.readouterr().out
    assert "prose -len" in table and "more -len" in table
    result = json.loads(out_json.read_text())
    settings = result["texts"]["prose"]["settings"]
    assert [s["merges"] for s in settings] == [0, 5, 20]
    assert settings[0]["reduction"] == 0 and settings[0]["bpb_change"] == 0
    assert 0 < settings[1]["reduction"] < settings[2]["reduction"]
    assert result["texts"]["prose"]["n_sequences"] == 4 and result["cache"]["misses"] > 0
