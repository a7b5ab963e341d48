"""The FIM benchmark's bookkeeping: a run with --log goes on where a stopped one ended, and refuses a
log of other prompts. The model and FIM itself are replaced by stand-ins (tests/test_bytes_fim*.py
test the real ones)."""

import json

import pytest

from transplant.bytes.fim import METHODS, FimOutcome, FimPrompt
from transplant.eval import bench_fim


@pytest.fixture
def fake(monkeypatch):
    calls = []

    def prompts(lm, n, seed):
        return [FimPrompt(head="", tail=f"x = f{seed}_{i}", middle="(1)\n", suffix="") for i in range(n)]

    def run_fim(lm, prompt, max_bytes):
        calls.append(prompt.tail)
        if len(calls) > 3:
            raise KeyboardInterrupt  # stopped part way
        return FimOutcome(prediction={m: "(1)" for m in METHODS}, logp={m: -1.0 for m in METHODS},
                          exact={m: True for m in METHODS})

    monkeypatch.setattr(bench_fim, "load_byte_lm", lambda model: None)
    monkeypatch.setattr(bench_fim, "make_prompts", prompts)
    monkeypatch.setattr(bench_fim, "run_fim", run_fim)
    return calls


def test_a_logged_run_continues_where_it_stopped(fake, tmp_path):
    log = tmp_path / "fim.jsonl"
    with pytest.raises(KeyboardInterrupt):
        bench_fim.bench("m", 5, 0, log)
    assert [r["tail"] for r in bench_fim.read_log(log)] == ["x = f0_0", "x = f0_1", "x = f0_2"]
    fake.clear()
    result = bench_fim.bench("m", 5, 0, log)
    assert fake == ["x = f0_3", "x = f0_4"]  # the first three are not recomputed
    assert result["prompts"] == 5 and len(bench_fim.read_log(log)) == 5
    assert result["summary"]["plain"]["exact_match"] == 1.0
    with pytest.raises(SystemExit, match="other prompts"):
        bench_fim.bench("m", 5, 1, log)
    assert json.loads(log.read_text().splitlines()[0])["tail"] == "x = f0_0"
