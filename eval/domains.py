"""Evaluation domains: fixed slices of real text that every machine can get offline.

A domain is a deterministic slice of one source (Debian packages, or CPython's own library): the
source's cleaned text from the first line that holds an anchor, cut to at most N UTF-8 bytes at a line
end. `build_domains` writes the slices to `cache_dir("domains")` with a manifest of where each came from;
the committed `eval/domains.json` holds the sha256 we got, so a rebuild elsewhere can tell whether it
measures the same text.
"""

from __future__ import annotations

import gzip
import re
import subprocess
import sysconfig
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

from transplant.cache import cache_dir
from transplant.errors import UserError

DEFAULT_MAX_BYTES = 64 * 1024
DEBIAN_REFERENCE = Path("/usr/share/debian-reference")
FORTUNES_RU = Path("/usr/share/games/fortunes/ru")
PYTHON_INFO = Path("/usr/share/info/python3.11.info.gz")
# Pure-Python modules that have barely changed across CPython releases, in a fixed order.
CODE_FILES = ("textwrap.py", "heapq.py", "bisect.py", "fractions.py", "shlex.py", "difflib.py", "argparse.py")


@dataclass(frozen=True)
class Source:
    """Where a domain's text comes from and how to turn it into plain text."""

    description: str
    packages: tuple[str, ...]  # Debian packages that must be installed first
    origin: str  # the files it reads, for the manifest
    pieces: Callable[[], Iterator[str]]  # cleaned text, one file or section at a time
    anchor: str | None = None  # the slice starts at the first line holding this


def cut_at_line(text: str, max_bytes: int) -> str:
    """The longest prefix of `text` of at most `max_bytes` UTF-8 bytes that ends at a line end.

    Falls back to a character boundary when the first line alone is longer than the limit.
    """
    data = text.encode("utf-8")
    if len(data) <= max_bytes:
        return text
    head = data[:max_bytes]
    newline = head.rfind(b"\n")
    if newline >= 0:
        return head[: newline + 1].decode("utf-8")
    return head.decode("utf-8", errors="ignore")


def collapse_blank_lines(text: str) -> str:
    """Trailing spaces removed, runs of blank lines reduced to one, one final newline."""
    lines = [line.rstrip() for line in text.splitlines()]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip("\n") + "\n"


class _HtmlText(HTMLParser):
    """Visible text of a DocBook HTML page, without navigation, tables of contents or data tables."""

    SKIP_TAGS = {"head", "script", "style"}
    # navheader/navfooter/toc are navigation; "table" divs hold package lists, not prose.
    SKIP_CLASSES = {"navheader", "navfooter", "toc", "list-of-tables", "table"}
    VOID = {"br", "img", "hr", "meta", "link", "input", "col", "area", "base", "wbr"}
    BLOCKS = set("p div pre h1 h2 h3 h4 h5 h6 li dt dd tr table ul ol dl blockquote title".split())

    def __init__(self, keep_paragraph: Callable[[str], bool] | None) -> None:
        super().__init__(convert_charrefs=True)
        self.keep_paragraph = keep_paragraph
        self.parts: list[str] = []
        self.skip_depth = 0  # open elements inside the element being skipped
        self.pre_depth = 0
        self.paragraph_start = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self.VOID:
            if tag == "br" and not self.skip_depth:
                self._newline()
            return
        if self.skip_depth:
            self.skip_depth += 1
            return
        classes = set((dict(attrs).get("class") or "").split())
        if tag in self.SKIP_TAGS or (tag == "div" and classes & self.SKIP_CLASSES):
            self.skip_depth = 1
            return
        if tag == "pre":
            self.pre_depth += 1
        if tag in self.BLOCKS:
            self._newline()
        if tag == "p":
            self.paragraph_start = len(self.parts)

    def handle_endtag(self, tag: str) -> None:
        if tag in self.VOID:
            return
        if self.skip_depth:
            self.skip_depth -= 1
            return
        if tag == "pre":
            self.pre_depth -= 1
        if tag == "p" and self.keep_paragraph and not self.keep_paragraph("".join(self.parts[self.paragraph_start :])):
            del self.parts[self.paragraph_start :]
        if tag in self.BLOCKS:
            self._newline()
        elif tag in ("td", "th"):
            self._append(" ")

    def handle_data(self, data: str) -> None:
        if not self.skip_depth:
            self._append(data if self.pre_depth else re.sub(r"\s+", " ", data))

    def _append(self, text: str) -> None:
        # outside <pre>, spacing after a line start or another space is layout, not text
        if not self.pre_depth and (not self.parts or self.parts[-1][-1] in " \n"):
            text = text.lstrip(" ")
        if text:
            self.parts.append(text)

    def _newline(self) -> None:
        while self.parts and not self.parts[-1].strip(" "):
            self.parts.pop()
        if self.parts:
            self.parts[-1] = self.parts[-1].rstrip(" ")
        self.parts.append("\n")


def html_to_text(html: str, keep_paragraph: Callable[[str], bool] | None = None) -> str:
    """Plain text of an HTML page: tags, scripts, styles and navigation dropped, entities unescaped.

    `keep_paragraph`, when given, decides from its text whether each `<p>` stays.
    """
    parser = _HtmlText(keep_paragraph)
    parser.feed(html)
    parser.close()
    return collapse_blank_lines("".join(parser.parts))


def info_to_text(info: str) -> Iterator[str]:
    """Each node of a GNU info file, without its header line, menu or the trailing tag tables."""
    for node in info.split("\x1f\n"):
        header, _, body = node.partition("\n")
        if not header.startswith("File:"):
            continue
        body = body.split("\n* Menu:", 1)[0]
        if body.strip():
            yield collapse_blank_lines(body)


def fortunes_to_text(fortunes: str) -> str:
    """A fortune file as paragraphs: `%` separators become blank lines, indentation goes."""
    lines = ("" if line.strip() == "%" else line.strip() for line in fortunes.splitlines())
    return collapse_blank_lines("\n".join(lines))


def bible_to_text(verses: str) -> Iterator[str]:
    """`bible -f` output (`Ge1:1 In the beginning...`) as one verse a line, one chapter a paragraph."""
    chapter, lines = None, []
    for line in verses.splitlines():
        match = re.match(r"(\d?[A-Za-z]+\d+):\d+ (.*)", line)
        if not match:
            continue
        if match[1] != chapter and lines:
            yield "\n".join(lines) + "\n"
            lines = []
        chapter = match[1]
        lines.append(match[2].rstrip())
    if lines:
        yield "\n".join(lines) + "\n"


def _kjv() -> Iterator[str]:
    verses = subprocess.run(["bible", "-f", "Gen1:1-Rev22:21"], capture_output=True, text=True, check=True).stdout
    yield from bible_to_text(verses)


def _python_docs() -> Iterator[str]:
    with gzip.open(PYTHON_INFO, "rt", encoding="utf-8") as f:
        yield from info_to_text(f.read())


def _stdlib() -> Iterator[str]:
    lib = Path(sysconfig.get_paths()["stdlib"])
    for name in CODE_FILES:
        yield (lib / name).read_text(encoding="utf-8")


# Common function words, to tell a paragraph left in English from a translated one.
FUNCTION_WORDS = {
    "en": set("the and of to is are you your with this that which can be it for from by".split()),
    "de": set("der die das und ist sind sie ihr mit diese dieser kann für von ein eine im den zu nicht".split()),
    "fr": set("le la les et est sont vous votre avec ce cette qui peut pour dans des du une un pas".split()),
    "es": set("el la los las y es son usted su con este esta que puede para en del una un no".split()),
}


def has_cjk(text: str) -> bool:
    """Whether the text holds a kana, CJK ideograph or full-width character."""
    return re.search(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uff00-\uffef]", text) is not None


def translated(lang: str) -> Callable[[str], bool]:
    """Whether a paragraph of the `lang` translation is really in that language, not left in English.

    English is at least two English function words and more of them than of the language's own;
    in Japanese and Chinese any kana or ideograph counts as translated.
    """
    own, english = FUNCTION_WORDS.get(lang, set()), FUNCTION_WORDS["en"]
    cjk = lang in ("ja", "zh-cn")

    def is_translated(text: str) -> bool:
        if cjk and has_cjk(text):
            return True
        words = re.findall(r"\w+", text.lower())
        n_english = sum(word in english for word in words)
        return n_english < 2 or sum(word in own for word in words) >= n_english

    return is_translated


def _debian_reference(lang: str) -> Callable[[], Iterator[str]]:
    # Every translation leaves some paragraphs in English (a fifth of them in ja and zh); those would
    # measure English, so they go. Commands and screen output in <pre> blocks stay in every language.
    keep = translated(lang)

    def pieces() -> Iterator[str]:
        for chapter in range(1, 13):
            html = (DEBIAN_REFERENCE / f"ch{chapter:02d}.{lang}.html").read_text(encoding="utf-8")
            yield html_to_text(html, keep)

    return pieces


def _fortunes_ru() -> Iterator[str]:
    # quotations and sayings: the longest prose files of the package, in a fixed order
    for name in ("knowledge", "book", "education", "life"):
        yield fortunes_to_text((FORTUNES_RU / name).read_text(encoding="utf-8"))


def _reference_source(lang: str, language: str) -> Source:
    return Source(
        description=f"{language} technical prose: Debian Reference, HTML chapters as plain text",
        packages=(f"debian-reference-{lang}",),
        origin=f"{DEBIAN_REFERENCE}/ch01..ch12.{lang}.html",
        pieces=_debian_reference(lang),
    )


SOURCES: dict[str, Source] = {
    "en": Source(
        "English prose: King James Bible from Genesis 1",
        ("bible-kjv", "bible-kjv-text"),
        "/usr/lib/bible.data via `bible -f Gen1:1-Rev22:21`",
        _kjv,
    ),
    "tech": Source(
        "English technical prose: Python 3.11 docs (info), from the Python Tutorial",
        ("python3.11-doc",),
        str(PYTHON_INFO),
        _python_docs,
        anchor="2 The Python Tutorial",
    ),
    "code": Source(
        "Python code: standard library modules of the running CPython",
        (),
        "Lib/" + ",".join(CODE_FILES),
        _stdlib,
    ),
    "de": _reference_source("de", "German"),
    "fr": _reference_source("fr", "French"),
    "es": _reference_source("es", "Spanish"),
    "ja": _reference_source("ja", "Japanese"),
    "zh": _reference_source("zh-cn", "Chinese (simplified)"),
    "ru": Source(
        "Russian prose: quotations and sayings from fortunes-ru",
        ("fortunes-ru",),
        f"{FORTUNES_RU}/knowledge,book,education,life",
        _fortunes_ru,
    ),
}
DOMAINS: dict[str, str] = {name: source.description for name, source in SOURCES.items()}


def check_names(names: list[str] | None) -> list[str]:
    """The requested domain names (all when None); a UserError names the unknown ones."""
    if names is None:
        return list(DOMAINS)
    unknown = [name for name in names if name not in DOMAINS]
    if unknown:
        raise UserError(f"unknown domain(s) {', '.join(unknown)}; known: {', '.join(DOMAINS)}")
    return list(names)


def load_domains(names: list[str] | None = None, max_bytes: int | None = None) -> dict[str, str]:
    """Text of each domain, building missing files first (may apt-get install their packages).

    `max_bytes` cuts each built text at a line end to at most that many UTF-8 bytes.
    """
    # build_domains imports this module's catalogue, so it is imported here, not at the top
    from transplant.eval.build_domains import build_domains

    names = check_names(names)
    folder = cache_dir("domains")
    missing = [name for name in names if not (folder / f"{name}.txt").exists()]
    if missing:
        build_domains(missing, folder)
    texts = {name: (folder / f"{name}.txt").read_bytes().decode("utf-8") for name in names}
    if max_bytes is not None:
        texts = {name: cut_at_line(text, max_bytes) for name, text in texts.items()}
    return texts
