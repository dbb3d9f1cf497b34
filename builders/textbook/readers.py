"""Readers: one document (plain text, Markdown, HTML, PDF) -> a stream of headings and paragraphs."""

from __future__ import annotations

import codecs
import re
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

from meddata.builders.ehr import looks_binary
from meddata.builders.textbook.blocks import MAX_PARAGRAPH_CHARS, Block, Heading, PageDrop, Para

from meddata import io
from meddata.steps import Quarantine

_MD_ATX = re.compile(r"^\s{0,3}(#{1,6})\s+(.+?)\s*#*\s*$")
_MD_SETEXT = re.compile(r"^\s{0,3}(=+|-+)\s*$")
_FENCE = re.compile(r"^\s{0,3}(```|~~~)")
_CHAPTER = re.compile(r"^(part|unit|chapter|appendix|section)\s+([0-9]+|[ivxlcdm]+|[a-z])\b[\s.:\u2014\u2013-]*(.{0,120})$", re.I)
_NUMBERED = re.compile(r"^(\d{1,2}(?:\.\d{1,2}){0,3})\.?\s+([A-Z][^.!?:;]{1,100})$")
_TOC_LINE = re.compile(r"(\.{2,}|\s{3,}|\t|(\s\.){2,})\s*\d{1,4}\s*$|\s\d{1,4}$")
_MATTER_LINE = re.compile(r"^(contents|table of contents|index|preface|foreword|copyright|acknowledge?ments|"
                          r"bibliography|references|dedication|glossary)$", re.I)
_CHAPTER_LEVEL = {"part": 1, "unit": 1, "chapter": 2, "appendix": 2, "section": 3}


def plain_heading(line: str, outline: dict[str, int] | None = None) -> tuple[int, str] | None:
    """(level, title) when a plain-text (or PDF) line looks like a heading."""
    s = re.sub(r"\s+", " ", line.strip())
    if not s or len(s) > 120:
        return None
    if outline:
        level = outline.get(s.lower())
        if level is not None:
            return level, s
    m = _CHAPTER.match(s)
    if m and not _TOC_LINE.search(s) or (m and not m.group(3)):
        return _CHAPTER_LEVEL[m.group(1).lower()], s
    if _MATTER_LINE.match(s):
        return 2, s  # a sibling of chapters, so the chapters that follow do not nest under it
    if _TOC_LINE.search(s):
        return None
    m = _NUMBERED.match(s)
    if m and len(s.split()) <= 12:
        return 2 + m.group(1).count("."), s
    letters = [c for c in s if c.isalpha()]
    if (len(letters) >= 4 and s.upper() == s and 1 <= len(s.split()) <= 10 and s[-1] not in ".,;:"
            and not any(c.isdigit() for c in s[:1])):
        return 3, s
    return None


def line_blocks(lines: Iterator[tuple[int, str] | Quarantine], display: str, markdown: bool,
                 locator_word: str = "line") -> Iterator[Block]:
    """Text lines -> headings and paragraphs (blank lines end paragraphs)."""
    para: list[str] = []
    para_start = ""
    fenced = False
    prev_line: str | None = None
    size = 0

    def flush() -> Iterator[Para]:
        nonlocal para, size
        if para:
            yield Para(join_lines(para), para_start)
        para, size = [], 0

    for item in lines:
        if isinstance(item, Quarantine):
            yield Quarantine(item.error, display, item.locator)
            continue
        n, line = item
        if looks_binary(line):
            yield Quarantine("binary content (control characters) in a text line", display, f"{locator_word} {n}")
            continue
        loc = f"{locator_word} {n}"
        if len(line) > MAX_PARAGRAPH_CHARS:
            yield Quarantine(f"line is {len(line):,} characters, over {MAX_PARAGRAPH_CHARS:,} (not prose)", display, loc)
            continue
        if markdown and _FENCE.match(line):
            fenced = not fenced
            continue
        if not line.strip():
            yield from flush()
            prev_line = None
            continue
        head: tuple[int, str] | None = None
        if markdown and not fenced:
            m = _MD_ATX.match(line)
            if m:
                head = len(m.group(1)), m.group(2).strip()
            elif _MD_SETEXT.match(line) and len(para) == 1 and prev_line is not None:
                title = para.pop()
                yield from flush()
                yield Heading(1 if line.strip()[0] == "=" else 2, title.strip(), loc)
                prev_line = None
                continue
        elif not markdown and not para:
            head = plain_heading(line)
        if head is not None:
            yield from flush()
            yield Heading(head[0], head[1], loc)
            prev_line = None
            continue
        if not para:
            para_start = loc
        para.append(line)
        size += len(line)
        prev_line = line
        if size > MAX_PARAGRAPH_CHARS:
            yield from flush()
    yield from flush()


def join_lines(lines: list[str]) -> str:
    """Re-join wrapped lines; undo end-of-line hyphenation (``physio-`` + ``logy``)."""
    out = ""
    for line in lines:
        s = line.strip()
        if not out:
            out = s
        elif re.search(r"[a-z]-$", out) and s[:1].islower():
            out = out[:-1] + s
        else:
            out += " " + s
    return out


class _HtmlBlocks(HTMLParser):
    """HTML -> blocks, fed in chunks; headings h1-h6, paragraphs from block elements."""

    SKIP = {"script", "style", "nav", "header", "footer", "aside", "noscript", "head", "svg", "button", "form"}
    BLOCK = {"p", "li", "td", "th", "div", "blockquote", "pre", "dd", "dt", "figcaption", "section",
             "article", "tr", "br", "table", "ul", "ol", "main", "body", "caption"}

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.blocks: list[Block] = []
        self.text: list[str] = []
        self.size = 0
        self.skip = 0
        self.heading: int | None = None
        self.start = "line 1"
        self.oversize = False
        self.display = ""

    def _flush(self) -> None:
        if self.oversize:
            self.blocks.append(Quarantine(f"a text block over {MAX_PARAGRAPH_CHARS:,} characters without markup "
                                          "(not prose); skipped", self.display, self.start))
            self.text, self.size, self.oversize = [], 0, False
            return
        text = re.sub(r"\s+", " ", "".join(self.text)).strip()
        self.text, self.size = [], 0
        if not text:
            return
        if self.heading is not None:
            self.blocks.append(Heading(self.heading, text, self.start))
        else:
            self.blocks.append(Para(text, self.start))

    def handle_starttag(self, tag: str, attrs: list) -> None:
        if tag in self.SKIP:
            self.skip += 1
        elif re.fullmatch(r"h[1-6]", tag):
            self._flush()
            self.heading = int(tag[1])
            self.start = f"line {self.getpos()[0]}"
        elif tag in self.BLOCK:
            self._flush()

    def handle_endtag(self, tag: str) -> None:
        if tag in self.SKIP:
            self.skip = max(self.skip - 1, 0)
        elif re.fullmatch(r"h[1-6]", tag):
            self._flush()
            self.heading = None
        elif tag in self.BLOCK:
            self._flush()

    def handle_data(self, data: str) -> None:
        if self.skip:
            return
        if not self.text and not self.oversize:
            self.start = f"line {self.getpos()[0]}"
        if self.oversize:
            return
        self.text.append(data)
        self.size += len(data)
        if self.size > MAX_PARAGRAPH_CHARS:
            self.text, self.size, self.oversize = [], 0, True


def html_blocks(path: Path, display: str, encoding: str) -> Iterator[Block]:
    parser = _HtmlBlocks()
    parser.display = display
    decoder = codecs.getincrementaldecoder(encoding)()
    with io.open_binary(path) as fh:
        while True:
            raw = fh.read(1 << 20)
            try:
                text = decoder.decode(raw, final=not raw)
            except UnicodeDecodeError as exc:
                yield Quarantine(f"not valid {encoding} near byte {exc.start} of a read block; the rest of the file "
                                 f"is skipped; {io.ENCODING_HINT}", display, f"line {parser.getpos()[0]}")
                return
            if "\x00" in text:
                yield Quarantine("binary content (NUL bytes) in an HTML file; the rest is skipped", display,
                                 f"line {parser.getpos()[0]}")
                return
            parser.feed(text)
            if not raw:
                parser.close()
                parser._flush()
            yield from parser.blocks
            parser.blocks = []
            if not raw:
                return


_INDEX_LINE = re.compile(r"^[^\d]{2,80},?\s+\d{1,4}(\s*[-\u2013]\s*\d{1,4})?(\s*,\s*\d{1,4}(\s*[-\u2013]\s*\d{1,4})?)*$")
_PAGE_NUMBER = re.compile(r"^\s*(page\s+)?\d{1,4}\s*$", re.I)


def classify_page(text: str, index: int, total: int) -> str | None:
    """front_matter / back_matter for a cover, copyright, contents or index page, else None."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    words = len(text.split())
    low = text.lower()
    sentences = sum(1 for ln in lines if len(ln.split()) >= 6 and ln.endswith((".", "?", "!")))
    if index == 0 and words < 40 and not sentences:
        return "front_matter"  # a cover: a few words (title, edition, authors) and no prose
    early = index < max(8, total // 10)
    if early and ("©" in text or "copyright" in low) and any(k in low for k in ("isbn", "all rights reserved",
                                                                               "printed in", "published by")):
        return "front_matter"
    if len(lines) >= 4:
        toc = sum(bool(_TOC_LINE.search(ln)) for ln in lines) / len(lines)
        head = " ".join(lines[:3]).lower()
        if toc >= 0.5 and ("contents" in head or toc >= 0.7) and early:
            return "front_matter"
        idx = sum(bool(_INDEX_LINE.match(ln)) for ln in lines) / len(lines)
        if idx >= 0.6 and (index >= total * 0.7 or "index" in head):
            return "back_matter"
    return None


def _outline_levels(reader: Any) -> dict[str, int]:
    """PDF bookmarks -> {lower-cased title: level}; used to recognise headings in page text."""
    levels: dict[str, int] = {}

    def walk(items: Any, depth: int) -> None:
        for item in items:
            if isinstance(item, list):
                walk(item, depth + 1)
            else:
                title = getattr(item, "title", None)
                if isinstance(title, str) and title.strip():
                    levels.setdefault(re.sub(r"\s+", " ", title.strip()).lower(), depth)

    try:
        walk(reader.outline, 1)
    except Exception:  # a damaged outline only costs us the hint
        return {}
    return levels


def pdf_blocks(path: Path, display: str) -> Iterator[Block]:
    from pypdf import PdfReader
    from pypdf.errors import PyPdfError

    try:
        reader = PdfReader(str(path))
        total = len(reader.pages)
    except (PyPdfError, ValueError, KeyError, TypeError, OSError) as exc:
        yield Quarantine(f"not a readable PDF ({type(exc).__name__})", display, "file")
        return
    if total == 0:
        yield Quarantine("PDF has no pages", display, "file")
        return
    outline = _outline_levels(reader)
    para: list[str] = []
    para_start = ""
    for i in range(total):
        loc = f"page {i + 1}"
        try:
            text = reader.pages[i].extract_text() or ""
        except Exception as exc:  # pypdf raises many types for a broken content stream
            yield Quarantine(f"cannot extract text ({type(exc).__name__})", display, loc)
            continue
        if looks_binary(text):
            yield Quarantine("page text holds binary control characters", display, loc)
            continue
        reason = classify_page(text, i, total)
        if reason:
            if para:
                yield Para(join_lines(para), para_start)
                para = []
            yield PageDrop(reason, text, loc)
            continue
        for line in text.splitlines():
            if not line.strip() or _PAGE_NUMBER.match(line):
                continue
            head = plain_heading(line, outline)
            if head is not None:
                if para:
                    yield Para(join_lines(para), para_start)
                    para = []
                yield Heading(head[0], head[1], loc)
                continue
            if not para:
                para_start = loc
            para.append(line)
            if line.rstrip().endswith((".", "?", "!", ":")) and len(line.strip()) < 60:
                yield Para(join_lines(para), para_start)  # a short line ending a sentence ends a paragraph
                para = []
    if para:
        yield Para(join_lines(para), para_start)
