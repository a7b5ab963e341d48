"""The hypernetwork benchmark's summary: ratios to the base and the English-vs-fvt verdict per donor."""

from pathlib import Path

from transplant.eval.bench_hypernet import markdown, summarize

SCORES = {
    "base": {"en": 1.0, "code": 2.0},
    "qwen-fvt": {"en": 1.3, "code": 2.8},
    "qwen-hypernet": {"en": 1.2, "code": 3.0},
    "qwen-hypernet-all": {"en": 1.4, "code": 3.2},
    "gpt2-fvt": {"en": 1.1, "code": 2.2},
    "gpt2-hypernet": {"en": 1.15, "code": 2.1},
    "gpt2-hypernet-all": {"en": 1.12, "code": 2.4},
}


def test_summary_counts_donors_where_a_hypernet_variant_beats_fvt_on_english():
    summary = summarize(SCORES, ["qwen", "gpt2"])
    assert summary["ratios"]["qwen-fvt"] == {"en": 1.3, "code": 1.4}
    assert summary["english_vs_fvt"]["qwen"]["beats_fvt"] is True
    assert summary["english_vs_fvt"]["gpt2"] == {"fvt_en": 1.1, "hypernet_en": 1.12, "beats_fvt": False}
    assert summary["donors_beating_fvt"] == 1


def test_markdown_marks_the_best_method_per_donor_and_domain():
    table = markdown(summarize(SCORES, ["qwen", "gpt2"])["ratios"], ["qwen", "gpt2"])
    assert "| qwen | hypernet | **1.200** | 1.500 |" in table
    assert "| gpt2 | hypernet | 1.150 | **1.050** |" in table


def test_a_fixed_method_with_a_score_on_file_is_neither_rebuilt_nor_rescored(tmp_path, monkeypatch):
    """Transplant folders are 750 MB; once scored, fvt/tokenadapt need only their score files."""
    import json
    from types import SimpleNamespace

    import transplant.eval.bench_hypernet as bench

    texts = {"en": "x" * 10}
    built, scored = [], []
    monkeypatch.setattr(bench, "resolve", lambda spec, need_weights: SimpleNamespace(path=tmp_path / spec, has_weights=False))
    monkeypatch.setattr(bench, "run", lambda options: built.append(Path(options.output).name))

    def fake_evaluate(folders, reference, texts):
        scored.append(Path(folders[0]).name)
        return {"models": [{"domains": {"en": {"bits_per_byte": 2.0}}, "overall": {"bits_per_byte": 2.0}}]}

    monkeypatch.setattr(bench, "evaluate", fake_evaluate)
    for name in ("base", "gpt2-fvt"):
        (tmp_path / f"{name}.score.json").write_text(json.dumps({"texts": {"en": 10}, "bpb": {"en": 1.0, "overall": 1.0}}))
    (tmp_path / "gpt2-tokenadapt.score.json").write_text(json.dumps({"texts": {"en": 99}, "bpb": {"en": 1.0}}))
    scores = bench.build_and_score("base", ["gpt2"], "HN", tmp_path, {}, texts)
    assert built == ["gpt2-tokenadapt", "gpt2-hypernet", "gpt2-hypernet-all"]  # stale score: rebuilt
    assert scored == built
    assert scores["gpt2-fvt"] == {"en": 1.0, "overall": 1.0} and scores["gpt2-tokenadapt"]["en"] == 2.0
