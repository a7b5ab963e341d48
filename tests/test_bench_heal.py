"""The healing benchmark on a tiny transplant: snapshots at the marks, each unhealed transplant scored
once, and `--append` that adds only missing runs measured the same way."""

import json

import pytest

from tests.test_heal_cli import text_file, transplant_dir  # noqa: F401  (a fixture)
from transplant.eval.bench_heal import main


def bench_args(folder, out, *extra):
    return ["--folder", f"tiny={folder}", "--transplants", "tiny", "--text", text_file(folder), "--domains", "code",
            "--max-bytes", "2048", "--context", "128", "--stride", "64", "--seq-len", "32", "--minutes", "0.001", "0.002", "--json", str(out),
            "--no-progress", *extra]


def test_runs_snapshots_and_append(transplant_dir, tmp_path, capsys):  # noqa: F811
    out = tmp_path / "heal.json"
    assert main(bench_args(transplant_dir, out, "--objectives", "lm")) == 0
    first = json.loads(out.read_text())
    assert first["complete"] and [r["objective"] for r in first["runs"]] == ["lm"]
    snaps = first["runs"][0]["snapshots"]
    assert [s["steps"] > 0 for s in snaps] == [False, True, True] and snaps[1]["minutes"] >= 0.001
    ratio = snaps[0]["bpb_ratio"]["code"]
    assert ratio == pytest.approx(snaps[0]["bpb"]["code"] / first["base_bpb"]["code"]) and ratio > 1
    assert "| tiny lm |" in capsys.readouterr().out

    assert main(bench_args(transplant_dir, out, "--objectives", "lm", "distill", "--append")) == 0
    second = json.loads(out.read_text())
    assert [r["objective"] for r in second["runs"]] == ["lm", "distill"]
    assert second["runs"][0] == first["runs"][0] and second["base_bpb"] == first["base_bpb"]
    # the unhealed transplant is the same model for both objectives: scored once, reused
    assert second["runs"][1]["snapshots"][0]["bpb"] == snaps[0]["bpb"]

    assert main(bench_args(transplant_dir, out, "--append", "--lr", "0.5")) == 2
    assert "settings.lr" in capsys.readouterr().err
    assert json.loads(out.read_text()) == second
