"""`transplant heal` from the command line: a healed folder that loads and pushes, and one-line errors."""

import json
import shutil
import subprocess
import sys

import pytest

from transplant.cli import main

TEXT = ("The quick brown fox jumps over the lazy dog. def heal(rows):\n    return rows * 2\n"
        "Über den Wolken muss die Freiheit wohl grenzenlos sein. 東京は日本の首都です。\n") * 30


@pytest.fixture(scope="module")
def transplant_dir(tiny, tmp_path_factory):
    from transplant.pipeline import TransplantOptions, run

    root = tmp_path_factory.mktemp("cli")
    (root / "text.txt").write_text(TEXT)
    return run(TransplantOptions(base=str(tiny["bl_tied"]), donor=str(tiny["tok_sp"]), method="fvt",
                                 output=str(root / "tiny--sp--fvt"), progress=False))


def text_file(folder):
    return str(folder.parent / "text.txt")


def heal_args(folder, output, *extra):
    return ["heal", str(folder), "--text", text_file(folder), "--output", str(output), "--seq-len", "32",
            "--allow-eval-overlap", "--no-progress", *extra]


def error_line(capsys, argv) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "Traceback" not in "\n".join(err)
    return err[-1]


def test_heal_writes_a_folder_that_loads(transplant_dir, tmp_path, capsys):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from transplant.hub.folder_kind import folder_kind

    out = tmp_path / "healed"
    assert main(heal_args(transplant_dir, out, "--steps", "2", "--objective", "distill")) == 0
    assert capsys.readouterr().out.strip() == str(out)
    record = json.loads((out / "transplant.json").read_text())
    before = json.loads((transplant_dir / "transplant.json").read_text())
    assert {k: v for k, v in record.items() if k != "healing"} == before
    healing = record["healing"]
    assert healing["objective"] == "distill" and healing["train"] == "embeddings" and healing["steps"] == 2
    assert healing["tokens"] > 0 and healing["text"]["files"] == ["text.txt"] and len(healing["text"]["sha256"]) == 64
    assert healing["teacher"] == before["base"]["path"] and len(healing["loss"]["curve"]) == 2
    assert folder_kind(out).kind == "healed"
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in transplant_dir.iterdir())
    model = AutoModelForCausalLM.from_pretrained(out)
    tokenizer, own = AutoTokenizer.from_pretrained(out), AutoTokenizer.from_pretrained(transplant_dir)
    assert tokenizer(TEXT[:200])["input_ids"] == own(TEXT[:200])["input_ids"]
    assert model.config.vocab_size == json.loads((transplant_dir / "config.json").read_text())["vocab_size"]
    assert not (tmp_path / "healed.partial").exists()


def test_errors_are_one_line(transplant_dir, tiny, tmp_path, capsys):
    assert "not found" in error_line(capsys, heal_args(tmp_path / "missing", tmp_path / "o", "--steps", "1"))
    line = error_line(capsys, heal_args(tiny["bl_tied"], tmp_path / "o", "--steps", "1"))
    assert "is not a transplant output" in line
    assert "not both" in error_line(capsys, heal_args(transplant_dir, tmp_path / "o", "--steps", "1", "--minutes", "1"))
    existing = tmp_path / "exists"
    existing.mkdir()
    assert "--overwrite" in error_line(capsys, heal_args(transplant_dir, existing, "--steps", "1"))
    assert "nothing to resume" in error_line(capsys, heal_args(transplant_dir, tmp_path / "o", "--steps", "1", "--resume"))
    (tmp_path / "o2.partial").mkdir()
    line = error_line(capsys, heal_args(transplant_dir, tmp_path / "o2", "--steps", "1"))
    assert "interrupted heal" in line and "--resume" in line


def test_missing_base_names_the_path_and_teacher(transplant_dir, tiny, tmp_path, capsys):
    moved = tmp_path / "moved"
    shutil.copytree(transplant_dir, moved)
    shutil.copy(text_file(transplant_dir), text_file(moved))
    record = json.loads((moved / "transplant.json").read_text())
    spec = record["base"]["spec"]
    record["base"].update(path=str(tmp_path / "gone"), spec=str(tmp_path / "gone-too"))
    (moved / "transplant.json").write_text(json.dumps(record))
    line = error_line(capsys, heal_args(moved, tmp_path / "o", "--steps", "1", "--objective", "distill"))
    assert str(tmp_path / "gone") in line and "--teacher PATH" in line
    assert main(heal_args(moved, tmp_path / "o", "--steps", "1", "--teacher", str(tiny["bl_tied"]))) == 0
    # a vanished temporary folder whose spec (here a path; usually a pack name) still resolves
    record["base"]["spec"] = spec
    (moved / "transplant.json").write_text(json.dumps(record))
    assert main(heal_args(moved, tmp_path / "o3", "--steps", "1", "--objective", "distill")) == 0
    assert "is gone; using" in capsys.readouterr().err


def test_text_overlapping_the_evaluation_is_refused(transplant_dir, tmp_path, capsys, monkeypatch):
    import transplant.eval.domains as domains

    evaluation = "In the beginning God created the heaven and the earth. And the earth was without form.\n"
    monkeypatch.setattr(domains, "load_domains", lambda names=None, max_bytes=None: {"en": evaluation})
    text = tmp_path / "train.txt"
    text.write_text(TEXT + evaluation + TEXT)
    argv = ["heal", str(transplant_dir), "--text", str(text), "--output", str(tmp_path / "o"), "--steps", "1", "--no-progress"]
    line = error_line(capsys, argv)
    assert "shares 64 bytes with the evaluation text" in line and "train.txt" in line
    text.write_text(TEXT)
    assert main(argv) == 0


def test_a_healed_folder_pushes(transplant_dir, tmp_path):
    from hub_server import HubServer, client_env

    out = tmp_path / "healed"
    assert main(heal_args(transplant_dir, out, "--steps", "1")) == 0
    with HubServer(tokens={"tok-alice": "alice"}) as hub:
        env = client_env(hub, tmp_path / "hf", token="tok-alice")
        pushed = subprocess.run([sys.executable, "-m", "transplant.cli", "push", str(out), "alice/healed", "--no-progress"],
                                env=env, capture_output=True, text=True, timeout=300)
        assert pushed.returncode == 0, pushed.stderr[-3000:]
        tree = hub.head("alice/healed").tree
        assert {"model.safetensors", "transplant.json", "README.md", "tokenizer.json"} <= set(tree)
        card = hub.read_blob(tree["README.md"].oid).decode()
        assert "- healed" in card and "trained further (healing)" in card and "objective=" in card
