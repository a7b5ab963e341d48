"""`transplant push` against the local Hub stand-in (tests/hub_server.py), through the official clients.

Client steps run in subprocesses: huggingface_hub reads HF_ENDPOINT and HF_HUB_DISABLE_XET at import.
"""

import hashlib
import json
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hub_server import HubServer, client_env

TOKENS = {"tok-alice": "alice", "tok-bob": "bob"}

# Loads ORG/NAME through HF_ENDPOINT and compares it with the local folder: every tensor, the
# tokenizer's ids on TEXT, and the card's metadata as huggingface_hub's ModelCard reads it back.
CHECK = r"""
import json, sys
import torch
from huggingface_hub import ModelCard, hf_hub_download
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer
repo, folder, text = sys.argv[1], sys.argv[2], sys.argv[3]
revision = sys.argv[4] if len(sys.argv) > 4 else None
model = AutoModelForCausalLM.from_pretrained(repo, revision=revision, dtype=torch.float32)
local = {}
import glob
for shard in glob.glob(folder + "/*.safetensors"):
    local.update(load_file(shard))
remote = model.state_dict()
tied = model.config.tie_word_embeddings
equal = all(torch.equal(remote[name], tensor) for name, tensor in local.items())
tokenizer, own = AutoTokenizer.from_pretrained(repo, revision=revision), AutoTokenizer.from_pretrained(folder)
card = ModelCard.load(repo if revision is None else hf_hub_download(repo, "README.md", revision=revision))
print(json.dumps({
    "tensors": len(local), "equal": equal, "tied": tied,
    "ids_equal": tokenizer(text)["input_ids"] == own(text)["input_ids"], "n_ids": len(own(text)["input_ids"]),
    "card": card.data.to_dict(), "card_text": card.text,
}))
"""


def run_cli(args, env, timeout=300):
    return subprocess.run([sys.executable, "-m", "transplant.cli", *args], env=env, check=False, capture_output=True, text=True, timeout=timeout)


def check_remote(repo, folder, env, text, revision=None):
    argv = [sys.executable, "-c", CHECK, repo, str(folder), text] + ([revision] if revision else [])
    result = subprocess.run(argv, env=env, check=False, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def error_line(result) -> str:
    assert result.returncode == 2, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    return result.stderr.strip().splitlines()[-1]


def sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def evaluated(tiny, tmp_path_factory):
    """A tiny transplant (fvt) with the eval.json and eval.png that `transplant eval` writes."""
    from transplant.eval.plot import plot_results
    from transplant.eval.report import evaluate, write_json

    from transplant.pipeline import TransplantOptions, run

    out = tmp_path_factory.mktemp("push") / "tiny--sp--fvt"
    run(TransplantOptions(base=str(tiny["bl_tied"]), donor=str(tiny["tok_sp"]), method="fvt", output=str(out), progress=False))
    texts = {"en": "The quick brown fox jumps over the lazy dog. " * 8, "code": "def f(x):\n    return x + 1\n" * 8}
    result = evaluate([out], tiny["bl_tied"], texts, context=64, stride=32, device="cpu")
    write_json(result, out / "eval.json")
    plot_results(result, out / "eval.png")
    return out


@pytest.fixture
def hub():
    with HubServer(tokens=TOKENS, orgs={"lab": {"alice"}}) as server:
        yield server


def test_round_trip_and_unchanged_second_push(hub, evaluated, tmp_path):
    env = client_env(hub, tmp_path / "hf", token="tok-alice")
    pushed = run_cli(["push", str(evaluated), "lab/tiny-fvt", "--no-progress"], env)
    assert pushed.returncode == 0, pushed.stderr[-3000:]
    assert pushed.stdout.strip() == f"{hub.endpoint}/lab/tiny-fvt"
    head = hub.head("lab/tiny-fvt")
    local = sorted(p.name for p in evaluated.iterdir())
    assert sorted(set(head.tree) - {".gitattributes"}) == local
    assert head.tree["model.safetensors"].sha256 == sha256(evaluated / "model.safetensors")
    assert head.tree["eval.png"].sha256 == sha256(evaluated / "eval.png")

    got = check_remote("lab/tiny-fvt", evaluated, env, "The quick brown fox; def f(x): return x + 1\n東京")
    assert got["equal"] and got["tensors"] >= 10
    assert got["ids_equal"] and got["n_ids"] > 10
    card = got["card"]
    assert card["library_name"] == "transformers" and card["pipeline_tag"] == "text-generation"
    assert card["license"] == "unknown" and "base_model" not in card  # a local base: nothing to inherit
    assert card["tags"] == ["tokenizer-transplant", "fvt"]
    assert "zero-shot estimates" in got["card_text"] and "(this model)" in got["card_text"]
    assert "![bits-per-byte ratio per domain](eval.png)" in got["card_text"]

    puts, commits = hub.count("PUT", "/upload/"), hub.count("POST", "/commit/")
    again = run_cli(["push", str(evaluated), "lab/tiny-fvt", "--no-progress"], env)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "nothing to upload" in again.stderr
    assert hub.count("PUT", "/upload/") == puts and hub.count("POST", "/commit/") == commits
    assert hub.head("lab/tiny-fvt").oid == head.oid


def test_interrupted_upload_runs_again(hub, evaluated, tmp_path):
    env = client_env(hub, tmp_path / "hf", token="tok-alice")
    weights, plot = sha256(evaluated / "model.safetensors"), sha256(evaluated / "eval.png")
    hold = hub.hold("PUT", f"/upload/{weights}")
    push = subprocess.Popen([sys.executable, "-m", "transplant.cli", "push", str(evaluated), "alice/resume", "--no-progress"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert hold.reached.wait(120), "the weights upload never started"
        deadline = time.time() + 60
        while not hub.has_object(plot) and time.time() < deadline:
            time.sleep(0.05)
        assert hub.has_object(plot)
    finally:
        push.kill()  # the process dies in the middle of sending the weights
        push.wait()
        hold.release.set()
    assert set(hub.head("alice/resume").tree) == {".gitattributes"}  # nothing half-committed
    assert not hub.has_object(weights)

    again = run_cli(["push", str(evaluated), "alice/resume", "--no-progress"], env)
    assert again.returncode == 0, again.stderr[-3000:]
    assert hub.count("PUT", f"/upload/{plot}") == 1  # stored by the first run, not sent again
    assert hub.count("PUT", f"/upload/{weights}") == 2
    assert hub.head("alice/resume").tree["model.safetensors"].sha256 == weights


def test_transient_failures_are_retried(hub, evaluated, tmp_path):
    env = client_env(hub, tmp_path / "hf", token="tok-alice")
    hub.fail_next("POST", r"/api/repos/create", 503)
    hub.fail_next("PUT", r"/upload/", None)  # the connection drops without an answer
    hub.fail_next("POST", r"/commit/", 503, times=2)
    result = run_cli(["push", str(evaluated), "alice/flaky", "--no-progress", "--retries", "3"], env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stderr.count("the Hub answered 503; retrying") == 3
    assert hub.count("POST", r"/commit/") == 3
    assert "model.safetensors" in hub.head("alice/flaky").tree


def test_persistent_failure_is_one_line(hub, evaluated, tmp_path):
    env = client_env(hub, tmp_path / "hf", token="tok-alice")
    hub.fail_next("POST", r"/commit/", 503, times=10)
    line = error_line(run_cli(["push", str(evaluated), "alice/down", "--no-progress", "--retries", "1"], env))
    assert "still answered 503 after 2 attempts" in line and "run the same push again" in line


def test_private_repo_on_a_branch(hub, evaluated, tmp_path):
    env = client_env(hub, tmp_path / "hf", token="tok-alice")
    result = run_cli(["push", str(evaluated), "alice/private", "--private", "--revision", "dev", "--no-progress"], env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip() == f"{hub.endpoint}/alice/private/tree/dev"
    assert hub.repos["alice/private"].private
    assert "model.safetensors" in hub.head("alice/private", "dev").tree
    assert set(hub.head("alice/private", "main").tree) == {".gitattributes"}
    code = ("import sys; from huggingface_hub import hf_hub_download; "
            "print(hf_hub_download('alice/private', 'model.safetensors', revision='dev'))")
    fetched = subprocess.run([sys.executable, "-c", code], env=env, check=False, capture_output=True, text=True)
    assert fetched.returncode == 0, fetched.stderr[-3000:]
    assert sha256(Path(fetched.stdout.strip().splitlines()[-1])) == sha256(evaluated / "model.safetensors")
    anonymous = client_env(hub, tmp_path / "anon")
    code = "from huggingface_hub import HfApi; HfApi().model_info('alice/private')"
    seen = subprocess.run([sys.executable, "-c", code], env=anonymous, check=False, capture_output=True, text=True)
    assert "RepositoryNotFoundError" in seen.stderr


def test_no_token(hub, evaluated, tmp_path):
    line = error_line(run_cli(["push", str(evaluated), "alice/x"], client_env(hub, tmp_path / "hf")))
    assert "no Hugging Face token" in line and "HF_TOKEN" in line
    assert hub.count("POST", "/api/repos/create") == 0


def test_repo_owned_by_someone_else(hub, evaluated, tmp_path):
    bob = run_cli(["push", str(evaluated), "bob/theirs", "--no-progress"], client_env(hub, tmp_path / "bob", token="tok-bob"))
    assert bob.returncode == 0, bob.stderr[-3000:]
    alice = client_env(hub, tmp_path / "alice", token="tok-alice")
    for repo in ("bob/theirs", "bob/new"):
        line = error_line(run_cli(["push", str(evaluated), repo, "--no-progress"], alice))
        assert f"no write access to {repo}" in line and "another user or organisation" in line
    assert "bob/new" not in hub.repos


def test_bad_token(hub, evaluated, tmp_path):
    line = error_line(run_cli(["push", str(evaluated), "alice/x"], client_env(hub, tmp_path / "hf", token="stolen")))
    assert "refused the token" in line


def test_network_down(evaluated, tmp_path):
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = client_env(None, tmp_path / "hf", token="tok-alice", endpoint=f"http://127.0.0.1:{port}")
    result = run_cli(["push", str(evaluated), "alice/x", "--retries", "1"], env)
    line = error_line(result)
    assert "cannot reach the Hub" in line and "after 2 attempts" in line
    assert "network error (ConnectError); retrying" in result.stderr


def test_not_a_transplant_output(tiny, tmp_path):
    line = error_line(run_cli(["push", str(tiny["bl_tied"]), "alice/x"], client_env(None, tmp_path, token="t", endpoint="http://127.0.0.1:9")))
    assert "is not a transplant output" in line
    line = error_line(run_cli(["push", str(tmp_path / "missing"), "alice/x"], client_env(None, tmp_path, token="t", endpoint="http://127.0.0.1:9")))
    assert "no such folder" in line


def test_bad_repo_id(evaluated, tmp_path):
    env = client_env(None, tmp_path, token="t", endpoint="http://127.0.0.1:9")
    assert "must be ORG/NAME" in error_line(run_cli(["push", str(evaluated), "just-a-name"], env))
    assert "invalid repo id" in error_line(run_cli(["push", str(evaluated), "alice/bad name"], env))


def test_server_without_xet_is_named(hub, evaluated, tmp_path):
    pytest.importorskip("hf_xet")
    env = client_env(hub, tmp_path / "hf", token="tok-alice")
    del env["HF_HUB_DISABLE_XET"]
    line = error_line(run_cli(["push", str(evaluated), "alice/xet", "--no-progress"], env))
    assert "HF_HUB_DISABLE_XET=1" in line


def test_user_card_is_kept(hub, evaluated, tmp_path):
    folder = tmp_path / "mine"
    shutil.copytree(evaluated, folder)
    (folder / "README.md").write_text("---\nlicense: mit\n---\n# my own words\n")
    result = run_cli(["push", str(folder), "alice/mine", "--no-progress"], client_env(hub, tmp_path / "hf", token="tok-alice"))
    assert result.returncode == 0, result.stderr[-3000:]
    assert (folder / "README.md").read_text() == "---\nlicense: mit\n---\n# my own words\n"
    assert hub.read_blob(hub.head("alice/mine").tree["README.md"].oid).endswith(b"# my own words\n")


@pytest.mark.slow
def test_real_round_trip_smollm2_with_qwen_tokenizer(tmp_path):
    """The issue's round trip: SmolLM2-135M with the Qwen2.5 tokenizer (fvt), pushed and loaded back."""
    from transplant.eval.domains import load_domains

    from transplant.pipeline import TransplantOptions, run

    out = run(TransplantOptions(base="smollm2-135m", donor="qwen2.5-coder-0.5b", method="fvt",
                                output=str(tmp_path / "smollm2--qwen--fvt"), progress=False))
    text = "".join(load_domains(["en", "code", "de", "ja", "zh"], max_bytes=2000).values())
    with HubServer(tokens=TOKENS) as hub:
        env = client_env(hub, tmp_path / "hf", token="tok-alice")
        clock = time.perf_counter()
        pushed = run_cli(["push", str(out), "alice/smollm2-qwen-fvt", "--no-progress"], env, timeout=900)
        first_s = time.perf_counter() - clock
        assert pushed.returncode == 0, pushed.stderr[-3000:]
        head = hub.head("alice/smollm2-qwen-fvt")
        assert head.tree["tokenizer.json"].sha256 is not None  # 11 MB: stored by LFS, as the Hub does
        got = check_remote("alice/smollm2-qwen-fvt", out, env, text)
        assert got["equal"] and got["tensors"] > 200
        assert got["ids_equal"] and got["n_ids"] > 2000
        card = got["card"]
        assert card["base_model"] == "HuggingFaceTB/SmolLM2-135M-Instruct" and card["license"] == "apache-2.0"
        assert card["tags"] == ["tokenizer-transplant", "fvt"]
        assert "151,936 donor ids" in got["card_text"]

        puts = hub.count("PUT", "/upload/")
        clock = time.perf_counter()
        again = run_cli(["push", str(out), "alice/smollm2-qwen-fvt", "--no-progress"], env, timeout=900)
        second_s = time.perf_counter() - clock
        assert again.returncode == 0 and "nothing to upload" in again.stderr
        assert hub.count("PUT", "/upload/") == puts and hub.head("alice/smollm2-qwen-fvt").oid == head.oid
    size = sum(p.stat().st_size for p in out.iterdir()) / 1e6
    print(f"\npushed {size:.0f} MB in {first_s:.1f} s; unchanged second push {second_s:.1f} s")


def test_hypernetwork_folder_pushes_like_a_model(hub, tiny, tmp_path):
    from transplant.hypernet.train import TrainOptions, train

    text = tmp_path / "train.txt"
    text.write_text("The quick brown fox jumps over the lazy dog. def f(x): return x + 1\n" * 30)
    folder = train(TrainOptions(base=str(tiny["bl_tied"]), texts=[str(text)], output=str(tmp_path / "hn"), steps=2,
                                batch_size=2, seq_len=16, vocab_size=300, recon_steps=1, aux_tokens=16, width=16,
                                layers=1, allow_eval_overlap=True, progress=False)).output
    env = client_env(hub, tmp_path / "hf", token="tok-alice")
    pushed = run_cli(["push", str(folder), "lab/tiny-hn", "--no-progress"], env)
    assert pushed.returncode == 0, pushed.stderr[-3000:]
    tree = hub.head("lab/tiny-hn").tree
    assert {"config.json", "model.safetensors", "training_log.json", "README.md"} <= set(tree)
    assert tree["model.safetensors"].sha256 == sha256(folder / "model.safetensors")
    assert "hypernetwork" in (folder / "README.md").read_text()
