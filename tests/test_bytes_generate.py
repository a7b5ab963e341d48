"""Byte-level decoding, ensembles, FIM and the CLI on tiny models."""

import math

import numpy as np
import pytest
from bytes_helpers import tiny_byte_lm, tiny_fim_lm

from transplant.bytes.ensemble import combine, normalize_weights
from transplant.bytes.fim import FimPrompt, run_fim
from transplant.bytes.generate import generate, utf8_allowed
from transplant.bytes.likelihood import END, score_bytes
from transplant.bytes.next_byte import ByteStream, open_stream
from transplant.errors import UserError


@pytest.fixture(scope="module")
def bl(tiny):
    return tiny_byte_lm(tiny["bl_tied"])


@pytest.fixture(scope="module")
def sp(tiny):
    return tiny_byte_lm(tiny["sp_untied"])


def test_greedy_bytes_follow_the_stream_argmax(bl):
    stream = open_stream(bl, b"The qu")
    out = generate([stream], max_bytes=6)
    check = open_stream(bl, b"The qu")
    for byte in out.data:
        dist = check.distribution()
        allowed = utf8_allowed(b"")  # greedy picked valid bytes, check them one at a time
        assert dist[byte] == pytest.approx(np.max(np.where(allowed | (np.arange(257) == byte), dist, -np.inf)))
        check.push(byte)


def test_sampling_gives_valid_utf8_and_is_seeded(bl, sp):
    for lm in (bl, sp):
        a = generate([ByteStream(lm)], max_bytes=40, temperature=1.5, seed=1)
        b = generate([ByteStream(lm)], max_bytes=40, temperature=1.5, seed=1)
        assert a.data == b.data
        a.data.decode("utf-8")  # raises on invalid UTF-8


def test_utf8_mask():
    assert not utf8_allowed(b"")[0x80] and utf8_allowed(b"")[0xE6] and utf8_allowed(b"")[END]
    after_lead = utf8_allowed(b"\xe6")
    assert after_lead[0x9D] and not after_lead[ord("a")] and not after_lead[END]
    assert not utf8_allowed(b"\xe0")[0x80]  # overlong form


def test_open_stream_equals_pushing_every_byte_on_canonical_paths(bl):
    prompt = b"The quick brown fox ju"
    committed = open_stream(bl, prompt).distribution()
    full = open_stream(bl, prompt, exact=True).distribution()
    assert np.allclose(np.exp(committed), np.exp(full), atol=0.05)
    assert np.argmax(committed) == np.argmax(full)


def test_ensembles():
    a = np.log(np.array([[0.7, 0.3], [0.5, 0.5]]))
    b = np.log(np.array([[0.1, 0.9], [0.5, 0.5]]))
    w = normalize_weights(None, 2)
    assert np.allclose(np.exp(combine([a, b], "mixture", w)), [[0.4, 0.6], [0.5, 0.5]])
    prod = np.exp(combine([a, b], "product", w))
    assert np.allclose(prod[0], np.sqrt([0.07, 0.27]) / np.sqrt([0.07, 0.27]).sum())
    assert np.allclose(np.exp(combine([a, b], "product", normalize_weights([1, 0], 2))), np.exp(a))
    with pytest.raises(UserError):
        normalize_weights([1.0], 2)


def test_ensemble_of_two_vocabularies_scores_the_same_bytes(bl, sp):
    data = b"The quick brown fox"
    dists = [score_bytes(lm, data, keep_dists=True).dists for lm in (bl, sp)]
    w = normalize_weights(None, 2)
    mix = combine(dists, "mixture", w)[np.arange(len(data)), list(data)]
    singles = [d[np.arange(len(data)), list(data)] for d in dists]
    # a mixture's byte probability lies between its members'
    assert np.all(mix <= np.maximum(*singles) + 1e-12) and np.all(mix >= np.minimum(*singles) - 1e-12)


def test_fim_three_ways(tmp_path):
    lm = tiny_fim_lm(tmp_path / "fim")
    prompt = FimPrompt(head="def add(a, b):\n", tail="    ret", middle="urn a + b\n", suffix="\nclass Point:\n")
    out = run_fim(lm, prompt, max_bytes=12)
    assert set(out.logp) == {"plain", "healing", "bytes"}
    assert all(v <= 0 for v in out.logp.values())
    assert all(math.isfinite(out.logp[m]) for m in ("plain", "bytes"))
    assert all(len(p.encode()) <= 12 for p in out.prediction.values())


def test_fim_needs_fim_tokens(bl):
    with pytest.raises(UserError, match="FIM"):
        run_fim(bl, FimPrompt("a", "b", "c\n", "d"))


def test_cli_errors(capsys):
    from transplant.cli import main

    assert main(["bytes", "score", "--models", "x", "--text", "/nonexistent.txt"]) == 2
    assert "not found" in capsys.readouterr().err
    assert main(["bytes", "score", "--models", "a", "b", "--weights", "1", "--text", "f"]) == 2
    with pytest.raises(SystemExit):
        main(["bytes", "--help"])
    assert "score" in capsys.readouterr().out


def test_cli_score_and_generate(tiny, tmp_path, capsys):
    from transplant.cli import main

    text = tmp_path / "t.txt"
    text.write_text("The quick brown fox\n")
    out = tmp_path / "r.json"
    models = [str(tiny["bl_tied"]), str(tiny["bl_untied"])]
    assert main(["bytes", "score", "--models", *models, "--text", str(text), "--json", str(out)]) == 0
    table = capsys.readouterr().out
    assert "mixture" in table and "product" in table and out.is_file()
    assert main(["bytes", "generate", "--models", str(tiny["bl_tied"]), "--prompt", "The qu", "--max-bytes", "5"]) == 0
    assert capsys.readouterr().out


def test_generation_stops_when_it_leaves_the_target(bl):
    free = generate([open_stream(bl, b"The qu")], max_bytes=8)
    wrong = bytes([free.data[0] ^ 1]) + b"xyz"
    out = generate([open_stream(bl, b"The qu")], max_bytes=8, target=wrong)
    assert out.stopped == "diverged" and out.data == free.data[:1]
