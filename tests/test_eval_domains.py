"""Evaluation domains: text extraction, deterministic slices, manifest and the committed record."""

import hashlib
import json
import re

import pytest

from transplant.errors import UserError
from transplant.eval import build_domains as build
from transplant.eval.domains import (
    DOMAINS,
    Source,
    bible_to_text,
    cut_at_line,
    fortunes_to_text,
    html_to_text,
    info_to_text,
    load_domains,
    translated,
)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TRANSPLANT_CACHE", str(tmp_path))
    return tmp_path / "domains"


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """Every domain at its default size, built once into a fresh folder."""
    out = tmp_path_factory.mktemp("domains")
    return out, build.build_domains(None, out)


def test_cut_at_line_keeps_whole_lines_and_characters():
    assert cut_at_line("ab\ncd\n", 4) == "ab\n"
    assert cut_at_line("ab\ncd\n", 6) == "ab\ncd\n"
    assert cut_at_line("日本\n語です\n", 8) == "日本\n"  # 7 bytes; the next line would need 10 more
    assert cut_at_line("日本語", 7) == "日本"  # one long line: cut at a character boundary


def test_html_to_text_keeps_visible_prose_only():
    html = """<html><head><title>T</title><style>p {}</style></head><body>
      <div class="navheader"><table><tr><td>Prev</td><td>Next</td></tr></table></div>
      <div class="toc"><dl><dt>1.1 Contents</dt></dl></div>
      <h1 class="title"><a id="x"/>Chapter   1</h1>
      <p>Fish &amp; chips
         cost &lt;5&#8364;.<br/>Second line.</p>
      <script>var x = 1;</script>
      <div class="note"><table><tr><th>Note</th></tr><tr><td> Mind the <em>gap</em>.</td></tr></table></div>
      <div class="table"><table><tr><td>pkg</td><td>1.0</td></tr></table></div>


      <pre class="screen">$ ls
  indented   output</pre>
    </body></html>"""
    assert html_to_text(html) == (
        "Chapter 1\n\nFish & chips cost <5€.\nSecond line.\n\nNote\n\nMind the gap.\n\n$ ls\n  indented   output\n"
    )


def test_paragraphs_left_in_english_are_dropped():
    html = "<p>Vous devez lire la documentation avant de commencer.</p><p>You can read the manual with man.</p>"
    assert html_to_text(html, translated("fr")) == "Vous devez lire la documentation avant de commencer.\n"
    html = "<p>コマンドを使います。</p><p>This is the English text of the original.</p><p>ln -s foo bar</p>"
    assert html_to_text(html, translated("ja")) == "コマンドを使います。\n\nln -s foo bar\n"


def test_info_nodes_lose_headers_and_menus():
    info = (
        "This is x.info\n\x1f\nFile: x.info,  Node: Top,  Next: A\n\nIntro   text\n\n\n\n* Menu:\n\n* A::\n"
        "\x1f\nFile: x.info,  Node: A,  Up: Top\n\n1 A\n***\n\nBody.\n\x1f\nTag Table:\nNode: Top\x7f1\n"
    )
    assert list(info_to_text(info)) == ["Intro   text\n", "1 A\n***\n\nBody.\n"]


def test_fortunes_and_bible_become_paragraphs():
    fortunes = "Знание - сила.\n\t\t-- Ф.Бэкон\n%\nВторой.\n%\n"
    assert fortunes_to_text(fortunes) == "Знание - сила.\n-- Ф.Бэкон\n\nВторой.\n"
    verses = "Ge1:1 In the beginning.\nGe1:2 And the earth.\nGe2:1 Thus the heavens.\n1Sm1:1 Now there was.\n"
    chapters = ["In the beginning.\nAnd the earth.\n", "Thus the heavens.\n", "Now there was.\n"]
    assert list(bible_to_text(verses)) == chapters


def test_slices_start_at_the_anchor_and_stop_reading_early():
    def pieces():
        yield "front matter\n"
        yield "x\nSTART HERE\n" + "line of text\n" * 100
        raise AssertionError("read past the slice")

    offset, text = build.slice_source(Source("test", (), "test", pieces, anchor="START HERE"), 100)
    assert offset == len("front matter\n\nx\n")
    assert text.startswith("START HERE\n") and text.endswith("\n") and len(text.encode()) <= 100


def test_load_domains_cuts_built_text_to_max_bytes(cache):
    text = load_domains(["code"], max_bytes=1000)["code"]
    assert 900 < len(text.encode("utf-8")) <= 1000 and text.endswith("\n")
    full = (cache / "code.txt").read_bytes()
    assert full.decode("utf-8").startswith(text)
    manifest = json.loads((cache / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["code"]["sha256"] == hashlib.sha256(full).hexdigest()
    assert manifest["code"]["bytes"] == len(full) <= manifest["code"]["max_bytes"]


def test_every_domain_builds_and_matches_the_committed_record(built):
    out, manifest = built
    record = json.loads(build.RECORD.read_text(encoding="utf-8"))
    assert set(manifest) == set(DOMAINS) == set(record)
    for name, entry in manifest.items():
        data = (out / f"{name}.txt").read_bytes()
        assert hashlib.sha256(data).hexdigest() == entry["sha256"]
        assert entry["max_bytes"] - 1024 < len(data) <= entry["max_bytes"]
        text = data.decode("utf-8")
        if name != "code":  # source code is kept byte for byte; the rest is cleaned text
            assert not re.search(r"</?(p|div|span|a|table|td)\b[^>]*>|&(amp|lt|gt|nbsp|#\d+);|\n\n\n", text), name
        if entry["packages"] == record[name]["packages"]:
            assert entry["sha256"] == record[name]["sha256"], name


def test_small_slices_of_every_domain_are_valid_utf8(cache, built):
    out, _ = built
    for path in out.iterdir():
        (cache / path.name).parent.mkdir(parents=True, exist_ok=True)
        (cache / path.name).write_bytes(path.read_bytes())
    for name, text in load_domains(max_bytes=3000).items():
        assert 0 < len(text.encode("utf-8")) <= 3000, name
        assert text.endswith("\n") and "\ufffd" not in text, name


def test_a_changed_text_warns_and_says_why(tmp_path, monkeypatch):
    record = tmp_path / "record.json"
    monkeypatch.setattr(build, "RECORD", record)
    entry = {"packages": {"python": "0.0"}, "max_bytes": 2000, "sha256": "0" * 64}
    record.write_text(json.dumps({"code": entry}))
    with pytest.warns(build.DomainMismatchWarning, match="python .* here, 0.0 recorded"):
        build.build_domains(["code"], tmp_path / "out", max_bytes=2000)
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    record.write_text(json.dumps({"code": {**entry, "packages": manifest["code"]["packages"]}}))
    with pytest.warns(build.DomainMismatchWarning, match="extraction changed"):
        build.build_domains(["code"], tmp_path / "out", max_bytes=2000)


def test_missing_package_without_root_names_the_install_line(monkeypatch):
    monkeypatch.setattr(build, "installed_version", lambda package: None)
    monkeypatch.setattr(build.os, "geteuid", lambda: 1000)
    with pytest.raises(UserError, match="apt-get install -y debian-reference-xx"):
        build.ensure_packages(("debian-reference-xx",))


def test_unknown_domains_are_user_errors(cache):
    with pytest.raises(UserError, match="klingon"):
        load_domains(["klingon"])
