"""lm-evaluation-harness pass-through: a local task on tiny models, task checks, the table, no lm-eval."""

import json
import sys
from pathlib import Path

import pytest

from transplant.cli import main
from transplant.errors import UserError
from transplant.eval.lm_eval_bridge import format_tasks, prepare_tasks, run_tasks

TINY_MC = Path(__file__).parent / "data" / "lm_eval" / "tiny_mc.yaml"
N_QUESTIONS = 10


def _error_line(capsys):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("transplant: error: ")
    return err[0]


@pytest.fixture
def sample(tmp_path):
    path = tmp_path / "sample.txt"
    path.write_text("The quick brown fox jumps over the lazy dog.\n" * 10, encoding="utf-8")
    return path


def test_local_task_runs_on_every_model_and_lands_in_json_and_table(tiny, sample, tmp_path, capsys):
    out = tmp_path / "results.json"
    argv = ["eval", str(tiny["bl_untied"]), "--reference", str(tiny["bl_tied"]), "--domains", "", "--text", str(sample)]
    argv += ["--context", "64", "--stride", "32", "--lm-eval", str(TINY_MC), "--json", str(out)]
    assert main(argv) == 0
    result = json.loads(out.read_text(encoding="utf-8"))
    assert result["lm_eval"]["tasks"] == [str(TINY_MC.resolve())]
    assert [m["name"] for m in result["models"]] == ["bl_tied", "bl_untied"]
    printed = capsys.readouterr().out
    table = printed[printed.index("\nlm-eval") :]
    assert "tiny_mc" in table and "acc" in table and "bpb ratio" in printed
    for model in result["models"]:
        accuracy = model["lm_eval"]["tiny_mc"]["acc,none"]
        # a share of ten questions, with its standard error beside it
        assert accuracy * N_QUESTIONS == pytest.approx(round(accuracy * N_QUESTIONS))
        assert model["lm_eval"]["tiny_mc"]["acc_stderr,none"] >= 0
        row = next(line for line in table.splitlines() if line.startswith(model["name"] + " "))
        assert row.split()[-1] == f"{accuracy:.3f}"


def test_limit_caps_the_examples(tiny):
    tasks = prepare_tasks(str(TINY_MC))
    metrics, subtasks = run_tasks(tasks, tiny["bl_tied"], batch_size=4, limit=4, device="cpu")
    assert metrics["tiny_mc"]["acc,none"] * 4 == pytest.approx(round(metrics["tiny_mc"]["acc,none"] * 4))
    assert subtasks == set()


def test_missing_task_file_is_one_line(tiny, sample, capsys):
    argv = ["eval", str(tiny["bl_tied"]), "--domains", "", "--text", str(sample), "--lm-eval", "no/such/task.yaml"]
    assert main(argv) == 2
    assert "lm-eval task file no/such/task.yaml not found" in _error_line(capsys)


def test_unknown_task_name_suggests_close_ones():
    with pytest.raises(UserError, match="unknown lm-eval task 'hellaswagg'; did you mean hellaswag"):
        prepare_tasks("hellaswagg")


def test_without_lm_eval_the_error_says_how_to_install_it(tiny, sample, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "lm_eval", None)
    monkeypatch.setitem(sys.modules, "lm_eval.tasks", None)
    argv = ["eval", str(tiny["bl_tied"]), "--domains", "", "--text", str(sample), "--lm-eval", "hellaswag"]
    assert main(argv) == 2
    assert "pip install lm-eval" in _error_line(capsys)


def test_table_shows_asked_tasks_not_subtasks_nor_standard_errors():
    metrics = {
        "group": {"acc,none": 0.5, "acc_stderr,none": 0.1},
        "group_part": {"acc,none": 0.25},
        "gen": {"exact_match,strict-match": 0.75},
    }
    result = {
        "models": [{"name": "a", "lm_eval": metrics}, {"name": "b", "lm_eval": {"group": {"acc,none": 1.0}}}],
        "lm_eval": {"tasks": ["group", "gen"], "subtasks": ["group_part"], "limit": 5, "lm_eval_version": "0.4.13"},
    }
    table = format_tasks(result)
    header, metric_row, row_a, row_b, footer = table.splitlines()
    assert header.split() == ["lm-eval", "gen", "group"]
    assert metric_row.split() == ["exact_match,strict-match", "acc"]
    assert row_a.split() == ["a", "0.750", "0.500"] and row_b.split() == ["b", "-", "1.000"]
    assert "group_part" not in table and "stderr" not in table and "at most 5 examples" in footer
