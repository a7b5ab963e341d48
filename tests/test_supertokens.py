"""Tokenizer training: plain and supertoken byte-level BPE, lossless round trips, the CLI, and transplants."""

import json
import sysconfig
from pathlib import Path

import pytest
from tokenizers import Tokenizer

from transplant.cli import main
from transplant.errors import UserError
from transplant.supertokens import Chunking, crosses_words, train_supertokens
from transplant.tokenizer_train import check_text_files, train_plain

LIB = Path(sysconfig.get_paths()["stdlib"])
# Real text that ships with every CPython: English prose (the licence) and code (the email package).
CORPUS = [LIB / "LICENSE.txt", *sorted((LIB / "email").glob("*.py"))]

ROUND_TRIP = {
    "english": "The quick brown fox jumps over the lazy dog. It's 3:45 p.m.; isn't it?",
    "code": "def f(x: int) -> int:\n    return x ** 2  # square\n\n\nclass A:\n\tpass\r\n",
    "german": "Größenwahn, Übermut und Äpfel: Straße, ß, ẞ.",
    "japanese": "東京は日本の首都です。ひらがな、カタカナ、漢字。",
    "chinese": "我们使用标记器将文本拆分为片段。",
    "emoji": "😀 👍🏽 👨‍👩‍👧‍👦 🏳️‍🌈 ❤️",
    "whitespace": "   leading\n\n\n\n    \t\t  mixed   \u00a0\u3000 trailing   \n \n",
    "control": "\x00\x01\x07\x1b[31mred\x1b[0m\x7f\x0b\x0c\u200b\u200d\u2028\u2029\ufeff",
    "combining": "e\u0301 vs \u00e9, A\u030a, \ufb01 ligature, \u2126 ohm",  # NFC/NFKC would change these
    "repeats": "a" * 300 + "=" * 80 + " " * 50 + "\n" * 20 + "ab" * 40 + "!!!!!!!!!",
    "rtl": "مرحبا بالعالم שלום עולם",
    "long_line": "x = [" + ", ".join(str(i) for i in range(400)) + "]",
    "empty": "",
}


@pytest.fixture(scope="module")
def files():
    return check_text_files(CORPUS)


@pytest.fixture(scope="module")
def super_tok(files):
    tokenizer, _ = train_supertokens(files, vocab_size=1500)
    return tokenizer


@pytest.fixture(scope="module")
def plain_tok(files):
    tokenizer, _ = train_plain(files, vocab_size=1500)
    return tokenizer


def test_corpus_is_real_text(files):
    assert sum(f.bytes for f in files) > 150_000


def test_chunks_cover_the_text_in_order_within_bounds():
    text = "The chunked pre-tokenization cuts text at random places, words or not. " * 40
    chunking = Chunking(4, 23, seed=1)
    chunks = [c for batch in chunking.chunks(iter([text, "ab", ""])) for c in batch]
    assert "".join(chunks) == text + "ab"
    body = chunks[:-2]  # the last chunk of each text is what is left, maybe shorter
    assert all(4 <= len(c) <= 23 for c in body)
    assert len({len(c) for c in body}) > 10


def test_chunks_at_spaces_start_words_and_fall_back_without_spaces():
    text = "The chunked pre-tokenization cuts text at word ends here.\n    return x\n" * 30 + "東京は日本の首都です。" * 20
    chunks = [c for batch in Chunking(4, 23, seed=2, at_spaces=True).chunks(iter([text])) for c in batch]
    assert "".join(chunks) == text
    assert all(len(c) <= 23 for c in chunks)
    latin = [c for c in chunks[1:] if c.isascii()]
    # a cut inside a word only where the drawn length held no word end ("pre-tokenization" is 16 long)
    assert len(latin) > 50 and sum(c[0].isspace() for c in latin) > 0.8 * len(latin)
    assert sum("東" in c for c in chunks) >= 10  # no spaces there: cut as drawn


def test_chunk_lengths_peak_in_the_middle():
    p = Chunking(4, 23).probabilities()
    assert p.sum() == pytest.approx(1.0)
    assert len(p) == 20 and p.argmax() in (9, 10)
    assert p[0] < p[9] / 5 and p[-1] < p[9] / 5


def test_chunking_rejects_bad_bounds():
    with pytest.raises(UserError, match="chunk"):
        Chunking(10, 5)
    with pytest.raises(UserError, match="chunk"):
        Chunking(0, 5)


@pytest.mark.parametrize("kind", ["super_tok", "plain_tok"])
@pytest.mark.parametrize("name", sorted(ROUND_TRIP))
def test_round_trip_is_lossless(kind, name, request):
    tokenizer = request.getfixturevalue(kind)
    text = ROUND_TRIP[name]
    assert tokenizer.decode(tokenizer.encode(text).ids) == text


@pytest.mark.parametrize("kind", ["super_tok", "plain_tok"])
def test_round_trip_on_held_out_stdlib_files(kind, request):
    tokenizer = request.getfixturevalue(kind)
    for name in ("argparse.py", "textwrap.py", "this.py"):
        text = (LIB / name).read_text(encoding="utf-8")
        assert tokenizer.decode(tokenizer.encode(text).ids) == text


def test_lone_surrogate_is_refused_not_dropped(super_tok):
    # a str with a lone surrogate has no UTF-8 bytes; the byte-level encoder must not invent or skip any
    with pytest.raises(TypeError):
        super_tok.encode("a\ud800b")


@pytest.mark.parametrize("kind", ["super_tok", "plain_tok"])
def test_vocabulary_has_the_size_asked_for(kind, request):
    tokenizer = request.getfixturevalue(kind)
    assert tokenizer.get_vocab_size() == 1500
    assert [tokenizer.id_to_token(i) for i in range(3)] == ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]


def test_only_supertokens_cross_word_boundaries(super_tok, plain_tok):
    def crossing(tokenizer):
        return [t for t in (tokenizer.decode([i]) for i in range(3, tokenizer.get_vocab_size())) if crosses_words(t)]

    assert len(crossing(super_tok)) > 10
    assert crossing(plain_tok) == []
    ids = super_tok.encode("the value of the header").ids
    assert any(crosses_words(super_tok.decode([i])) for i in ids)


def test_cuts_at_spaces_give_leading_space_tokens(files, super_tok):
    at_spaces, _ = train_supertokens(files, vocab_size=1500, chunking=Chunking(at_spaces=True))

    def spaces(tokenizer):
        pieces = [tokenizer.decode([i]) for i in range(3, tokenizer.get_vocab_size())]
        pieces = [p for p in pieces if len(p) > 1 and p.strip()]
        return sum(p[0] == " " for p in pieces), sum(p[-1] == " " for p in pieces)

    leading, trailing = spaces(at_spaces)
    assert leading > 5 * trailing
    leading, trailing = spaces(super_tok)  # random cuts: words mostly end with their space
    assert trailing > leading
    assert any(crosses_words(at_spaces.decode([i])) for i in range(at_spaces.get_vocab_size()))
    text = ROUND_TRIP["english"] + ROUND_TRIP["code"] + ROUND_TRIP["whitespace"]
    assert at_spaces.decode(at_spaces.encode(text).ids) == text


def test_supertokens_compress_held_out_text_better(super_tok, plain_tok):
    text = (LIB / "argparse.py").read_text(encoding="utf-8")
    assert len(super_tok.encode(text).ids) < 0.95 * len(plain_tok.encode(text).ids)


def test_training_is_deterministic_under_a_seed(files):
    first, _ = train_supertokens(files[:6], vocab_size=600, chunking=Chunking(seed=3))
    again, _ = train_supertokens(files[:6], vocab_size=600, chunking=Chunking(seed=3))
    other, _ = train_supertokens(files[:6], vocab_size=600, chunking=Chunking(seed=4))
    assert first.to_str() == again.to_str()
    assert first.get_vocab() != other.get_vocab()


def test_training_files_are_checked(tmp_path):
    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes("caf\u00e9".encode("latin-1"))
    with pytest.raises(UserError, match="not UTF-8"):
        check_text_files([latin1])
    with pytest.raises(UserError, match="no such file"):
        check_text_files([tmp_path / "missing.txt"])
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    with pytest.raises(UserError, match="empty"):
        check_text_files([empty])


# ---------------------------------------------------------------- the command line


def _error_line(capsys):
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1
    return lines[0]


def _train(tmp_path, name, *extra):
    out = tmp_path / name
    argv = ["tokenizer", "train", "--vocab-size", "700", "--text", *map(str, CORPUS[:8]), "-o", str(out), "--no-progress"]
    assert main(argv + list(extra)) == 0
    return out


def test_cli_writes_a_folder_that_autotokenizer_and_transplant_load(tmp_path, capsys):
    from transformers import AutoTokenizer

    from transplant.sources import resolve
    from transplant.vocab import BYTE_LEVEL, load_vocab

    out = _train(tmp_path, "super", "--supertokens", "--seed", "7", "--chunk-min", "3", "--chunk-max", "16")
    assert capsys.readouterr().out.strip() == str(out)
    auto = AutoTokenizer.from_pretrained(out)
    text = ROUND_TRIP["code"] + ROUND_TRIP["japanese"]
    ids = auto(text)["input_ids"]
    assert ids == Tokenizer.from_file(str(out / "tokenizer.json")).encode(text).ids
    assert auto.decode(ids) == text and auto.eos_token == "<|endoftext|>"
    vocab = load_vocab(resolve(str(out), need_weights=False).path)
    assert vocab.family == BYTE_LEVEL and vocab.size == 700
    assert vocab.role_id("eos") == 0 and vocab.role_id("turn_start") == 1
    record = json.loads((out / "tokenizer_training.json").read_text())
    assert record["kind"] == "supertokens" and record["settings"]["chunking"] == {
        "min_chars": 3, "max_chars": 16, "seed": 7, "at_spaces": False
    }
    assert [f["path"] for f in record["files"]] == [str(p) for p in CORPUS[:8]]


def test_cli_special_tokens_and_plain_kind(tmp_path):
    out = _train(tmp_path, "plain", "--special-tokens", "</s>", "<s>")
    config = json.loads((out / "tokenizer_config.json").read_text())
    assert config["eos_token"] == "</s>"
    assert json.loads((out / "tokenizer_training.json").read_text())["kind"] == "plain"


def test_cli_notes_when_the_text_is_too_small(tmp_path, capsys):
    small = tmp_path / "small.txt"
    small.write_text("tiny text, tiny text.\n")
    assert main(["tokenizer", "train", "--vocab-size", "5000", "--text", str(small), "-o", str(tmp_path / "o"), "--no-progress"]) == 0
    assert "allowed only" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (["--vocab-size", "100"], "too small"),
        (["--vocab-size", "700", "--seed", "1"], "--seed only applies with --supertokens"),
        (["--vocab-size", "700", "--chunk-at-spaces"], "--chunk-at-spaces only applies"),
        (["--vocab-size", "700", "--supertokens", "--chunk-min", "9", "--chunk-max", "3"], "--chunk-min"),
        (["--vocab-size", "700", "--min-frequency", "0"], "--min-frequency"),
        (["--vocab-size", "700", "--special-tokens", "<a>", "<a>"], "distinct"),
    ],
)
def test_cli_bad_input_is_one_line_and_exit_2(extra, expected, tmp_path, capsys):
    argv = ["tokenizer", "train", "--text", str(CORPUS[0]), "-o", str(tmp_path / "o"), "--no-progress", *extra]
    assert main(argv) == 2
    assert expected in _error_line(capsys)
    assert not (tmp_path / "o").exists()


def test_cli_refuses_to_overwrite_without_the_flag(tmp_path, capsys):
    out = _train(tmp_path, "again")
    capsys.readouterr()
    argv = ["tokenizer", "train", "--vocab-size", "700", "--text", str(CORPUS[0]), "-o", str(out), "--no-progress"]
    assert main(argv) == 2
    assert "--overwrite" in _error_line(capsys)
    assert main([*argv, "--overwrite"]) == 0


def test_a_trained_supertoken_tokenizer_is_a_donor(tiny, tmp_path, capsys):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    donor = _train(tmp_path, "donor", "--supertokens")
    out = tmp_path / "model"
    argv = ["--base", str(tiny["bl_tied"]), "--donor-tokenizer", str(donor), "--method", "fvt", "-o", str(out), "--no-progress"]
    assert main(argv) == 0
    model = AutoModelForCausalLM.from_pretrained(out)
    assert model.get_input_embeddings().weight.shape[0] == 700
    tokenizer = AutoTokenizer.from_pretrained(out)
    assert tokenizer("the header value")["input_ids"] == Tokenizer.from_file(str(donor / "tokenizer.json")).encode("the header value").ids


def test_overlap_counts_verbatim_long_lines():
    from transplant.eval.bench_supertokens import overlap

    training = ["a line that is long enough to count\nshort\n"]
    domains = {"x": "a line that is long enough to count\nshort\nanother long line, not in the training text\n"}
    assert overlap(training, domains)["x"] == {"lines": 2, "shared": 1, "examples": ["a line that is long enough to count"]}


# ---------------------------------------------------------------- real text, real model (slow)


@pytest.fixture(scope="module")
def real_pair(tmp_path_factory):
    """Both kinds at 32768 on the benchmark's English + code corpus (about 7 MB, 30 s)."""
    from transplant.eval.bench_supertokens import build_corpus

    from transplant.tokenizer_train import save_tokenizer

    out = tmp_path_factory.mktemp("real")
    manifest = build_corpus(out, 3_000_000)
    files = check_text_files([out / name for name in manifest["files"]])
    folders = {}
    for kind, train in (("super", train_supertokens), ("plain", train_plain)):
        tokenizer, record = train(files, vocab_size=32768)
        folders[kind] = save_tokenizer(out / kind, tokenizer, record)
    return folders


@pytest.mark.slow
def test_real_supertokens_use_fewer_tokens_and_are_lossless(real_pair):
    """Measured 2026-11-23 (python -m transplant.eval.bench_supertokens, docs/supertokens.json), tokens per
    byte on the 64 KiB domains, plain -> supertokens: en 0.260 -> 0.236, tech 0.260 -> 0.212, code 0.257 -> 0.207."""
    from transplant.eval.bench_supertokens import measure
    from transplant.eval.domains import load_domains

    domains = load_domains()
    rows = {kind: measure(Tokenizer.from_file(str(folder / "tokenizer.json")), domains) for kind, folder in real_pair.items()}
    assert rows["super"]["lossless"] and rows["plain"]["lossless"]
    super_, plain = rows["super"]["tokens_per_byte"], rows["plain"]["tokens_per_byte"]
    assert 0.25 < plain["en"] < 0.27 and 0.245 < plain["code"] < 0.27
    assert super_["en"] < 0.245 and super_["code"] < 0.215 and super_["tech"] < 0.22
    for name in domains:
        assert super_[name] < plain[name]


@pytest.mark.slow
def test_smollm2_transplanted_to_supertokens_with_fvt(real_pair, tmp_path):
    """The supertoken tokenizer as a donor for SmolLM2-135M (FVT). Measured 2026-11-23, en 4 KiB, context
    512 / stride 256 (this test's setup): bpb ratio to the original 6.52x with supertokens, 1.30x with the
    plain BPE of the same size: FVT cannot make multi-word tokens usable (docs/readme/supertokens.md)."""
    from transformers import AutoTokenizer
    from transplant.eval.domains import load_domains
    from transplant.eval.report import evaluate

    from transplant.pipeline import TransplantOptions, run
    from transplant.sources import resolve

    outs = {kind: run(TransplantOptions(base="smollm2-135m", donor=str(folder), method="fvt", output=str(tmp_path / kind),
                                        progress=False)) for kind, folder in real_pair.items()}
    texts = load_domains(["en"], max_bytes=4096)
    donor = Tokenizer.from_file(str(real_pair["super"] / "tokenizer.json"))
    assert AutoTokenizer.from_pretrained(outs["super"])(texts["en"])["input_ids"] == donor.encode(texts["en"]).ids
    result = evaluate(list(outs.values()), resolve("smollm2-135m", need_weights=True).path, texts, context=512, stride=256)
    ratios = {Path(m["path"]).name: m["domains"]["en"]["bpb_ratio"] for m in result["models"] if not m["is_reference"]}
    assert 1.15 < ratios["plain"] < 1.45
    assert 5.5 < ratios["super"] < 7.5
