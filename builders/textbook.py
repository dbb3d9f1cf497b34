"""Textbooks and guidelines -> ``text`` chunks for continued pretraining.

Documents (.txt, .md, .html, .pdf, or a JSONL of sections such as the OpenStax export) are read
as a stream of headings and paragraphs, grouped into sections by heading, and each section is
cut into chunks of at most ``chunk_size`` characters (or whitespace tokens, ``unit: tokens``)
that overlap by up to ``chunk_overlap``, breaking at paragraph and sentence ends where possible.
Each chunk keeps its heading path (``["Chapter 1 Heart Failure", "1.1 Definition"]``) in
``meta.annotations["heading_path"]``; ``heading_prefix`` puts the section title (or the whole
path) at the top of the chunk text.

Front and back matter (cover, copyright, contents, preface, index, references...) and
end-of-chapter exercises (which would leak benchmark questions into pretraining data) are
dropped with a reason (``front_matter``, ``back_matter``, ``exercises``): by heading, for any
section under a matching heading, and for PDF pages by their look (a cover page, a copyright
page, a table of contents, an index). ``drop_headings`` overrides the patterns.

Rows are ``meta.phi_status = not_applicable`` (books are not patient records).
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Any, ClassVar, Literal

from meddata.builders import source_io
from meddata.builders.ehr import looks_binary
from meddata.builders.rows_out import checked_rows
from pydantic import field_validator

from meddata import io
from meddata.records import make_id, new_meta, new_row
from meddata.registry import register
from meddata.steps import Builder, Drop, Quarantine, StepContext

DEFAULT_DROP_HEADINGS: dict[str, list[str]] = {
    "front_matter": [
        r"cover", r"title page", r"half[- ]title", r"copyright( page)?", r"(table of )?contents",
        r"preface", r"foreword", r"dedication", r"acknowledge?ments?", r"about (the|this) (book|authors?|editors?)",
        r"list of (figures|tables|abbreviations|contributors)", r"contributors", r"how to use this book",
    ],
    "back_matter": [
        r"index", r"(subject|general) index", r"bibliography", r"references", r"further reading",
        r"suggested readings?", r"colophon", r"credits", r"permissions",
    ],
    "exercises": [
        r"review questions", r"critical thinking questions?", r"interactive link questions?",
        r"multiple choice( questions)?", r"self[- ]check( questions)?", r"practice questions",
        r"check your understanding", r"answer key", r"answers to .*questions",
    ],
}
_NUMBER_PREFIX = re.compile(r"^((part|unit|chapter|section|appendix)\s+)?([0-9]+(\.[0-9]+)*|[ivxlcdm]+)[.:)\s-]+",
                            re.I)
#: Text kept in the drop log for a dropped section (enough to audit the decision).
DROPPED_TEXT_CHARS = 5000
#: A paragraph longer than this is handed to the chunker in pieces; a single line (or HTML text
#: block) longer than this is quarantined: it is a dump, not prose.
MAX_PARAGRAPH_CHARS = 256 * 1024
_JSON_START = re.compile(r"\s*(\{\s*\"|\[\s*[\[{\"\]])")


class TextbookParams(source_io.SourceParams):
    chunk_size: int = 2000
    chunk_overlap: int = 200
    unit: Literal["chars", "tokens"] = "chars"
    heading_prefix: Literal["none", "title", "path"] = "title"
    #: reason -> regexes matched (whole, case-insensitive) against heading titles.
    drop_headings: dict[str, list[str]] = DEFAULT_DROP_HEADINGS
    phi_status: source_io.PhiStatus = "not_applicable"

    @field_validator("chunk_overlap")
    @classmethod
    def _overlap(cls, v: int, info: Any) -> int:
        size = info.data.get("chunk_size", 2000)
        if v < 0 or v >= size:
            raise ValueError(f"must be at least 0 and smaller than chunk_size ({size})")
        return v

    @field_validator("chunk_size")
    @classmethod
    def _size(cls, v: int) -> int:
        if v < 50:
            raise ValueError("must be at least 50")
        return v

    @field_validator("drop_headings")
    @classmethod
    def _patterns(cls, v: dict[str, list[str]]) -> dict[str, list[str]]:
        for reason, patterns in v.items():
            if not re.fullmatch(r"[a-z][a-z0-9_]*", reason):
                raise ValueError(f"reason {reason!r} must be snake_case")
            for pat in patterns:
                try:
                    re.compile(pat)
                except re.error as exc:
                    raise ValueError(f"{reason}: {pat!r} is not a valid regular expression ({exc})") from None
        return v


# -- chunking ---------------------------------------------------------------------------------------------

_SENTENCE_END = re.compile(r"(?<=[.!?])[\"')\]]*\s+(?=[\"'(\[]?[A-Z0-9])")


class Chunker:
    """Packs paragraphs into chunks of at most ``size`` (chars or whitespace tokens) with overlap.

    Incremental: :meth:`add` returns the chunks that are complete, so a long section never
    sits in memory whole. Units are sentences (words, or slices of a word, when a sentence
    alone is over budget); chunks break between units, preferring paragraph ends.
    """

    def __init__(self, size: int, overlap: int, unit: str = "chars"):
        self.size, self.overlap = size, overlap
        self.tokens = unit == "tokens"
        self.units: list[tuple[str, bool]] = []  # (text, ends a paragraph)
        self.pending = 0

    def measure(self, text: str) -> int:
        return len(text.split()) if self.tokens else len(text)

    def _span(self, units: Sequence[tuple[str, bool]]) -> int:
        if self.tokens:
            return sum(self.measure(u) for u, _ in units)
        return sum(len(u) for u, _ in units) + max(len(units) - 1, 0) * 2

    def _split(self, text: str) -> Iterator[str]:
        for sentence in _SENTENCE_END.split(text):
            sentence = sentence.strip()
            if not sentence:
                continue
            if self.measure(sentence) <= self.size:
                yield sentence
                continue
            piece: list[str] = []
            for word in sentence.split():
                if not self.tokens and len(word) > self.size:
                    if piece:
                        yield " ".join(piece)
                        piece = []
                    yield from (word[i:i + self.size] for i in range(0, len(word), self.size))
                    continue
                if piece and self.measure(" ".join([*piece, word])) > self.size:
                    yield " ".join(piece)
                    piece = []
                piece.append(word)
            if piece:
                yield " ".join(piece)

    def add(self, paragraph: str) -> list[str]:
        units = list(self._split(paragraph))
        if not units:
            return []
        self.units.extend((u, False) for u in units[:-1])
        self.units.append((units[-1], True))
        self.pending += self.measure(paragraph)
        return self._emit(final=False) if self.pending > 4 * self.size else []

    def finish(self) -> list[str]:
        out = self._emit(final=True)
        self.units, self.pending = [], 0
        return out

    def _emit(self, final: bool) -> list[str]:
        out, units, i = [], self.units, 0
        while i < len(units):
            j, end = i, i
            while j < len(units) and self._span(units[i:j + 1]) <= self.size:
                j += 1
                if units[j - 1][1]:
                    end = j  # last paragraph end inside the window
            if j == i:
                j = i + 1
            if j >= len(units) and not final:
                break  # the window reaches the buffer's end: wait for more text
            if j < len(units) and end > i and self._span(units[i:end]) >= self.size // 2:
                j = end  # break at a paragraph end when that keeps the chunk at least half full
            out.append(self._join(units[i:j]))
            if j >= len(units):
                i = j
                break
            k = j
            while k - 1 > i and self._span(units[k - 1:j]) <= self.overlap:
                k -= 1
            if k == j and self.overlap:  # no whole sentence fits the overlap: carry the last words
                room = min(self.overlap, self.size - self.measure(units[j][0]) - 2)
                tail = self._tail(units[j - 1][0], room)
                if tail:
                    units.insert(j, (tail, units[j - 1][1]))
            i = k
        self.units = units[i:]
        self.pending = self._span(self.units)
        return out

    def _tail(self, text: str, budget: int) -> str:
        """The longest run of whole words ending ``text`` that fits ``budget``."""
        words = text.split()
        n = 0
        while n < len(words) and self.measure(" ".join(words[-(n + 1):])) <= budget:
            n += 1
        return " ".join(words[-n:]) if n else ""

    @staticmethod
    def _join(units: Sequence[tuple[str, bool]]) -> str:
        parts = []
        for n, (text, para_end) in enumerate(units):
            parts.append(text)
            if n < len(units) - 1:
                parts.append("\n\n" if para_end else " ")
        return "".join(parts)


# -- the section assembler ------------------------------------------------------------------------------


class MatterRules:
    """Which headings mark front/back matter or exercises: one regex per reason, results cached
    per title (a book repeats its section names)."""

    def __init__(self, spec: dict[str, list[str]]):
        self.rules = [(reason, re.compile("|".join(f"(?:{p})" for p in pats), re.I)) for reason, pats in spec.items()
                      if pats]
        self._cache: dict[str, str | None] = {}

    def title_reason(self, title: str) -> str | None:
        if title not in self._cache:
            low = title.strip().lower()
            bare = _NUMBER_PREFIX.sub("", low).strip(" .:") or low
            self._cache[title] = next((reason for reason, pat in self.rules
                                       if pat.fullmatch(bare) or pat.fullmatch(low)), None)
        return self._cache[title]

    def reason(self, path: Sequence[str]) -> str | None:
        """The drop reason when any heading on the path matches."""
        return next((r for r in map(self.title_reason, path) if r), None)


@dataclass
class Heading:
    level: int
    title: str
    locator: str


@dataclass
class Para:
    text: str
    locator: str


@dataclass
class PageDrop:
    reason: str
    text: str
    locator: str


Block = Heading | Para | PageDrop | Quarantine


class Assembler:
    """Turns a block stream into chunk rows and Drops, tracking the heading path."""

    def __init__(self, builder: Builder, rules: MatterRules, source: str, display: str,
                 base_path: Sequence[str] = (), locator_prefix: str = ""):
        self.b = builder
        self.p: TextbookParams = builder.params
        self.source, self.display = source, display
        self.rules = rules
        self.stack: list[tuple[int, str]] = [(0, t) for t in base_path]
        self.prefix = locator_prefix
        self.section_locator = locator_prefix.strip() or "start"
        self.section_no = 0
        self.outcomes = 0  # rows and drops emitted; 0 at the end means the document had no text
        self._open()

    def _open(self) -> None:
        self.path = [t for _, t in self.stack]
        self.reason = self.rules.reason(self.path)
        prefix = self._prefix_text()
        budget = max(self.p.chunk_size - (len(prefix.split()) if self.p.unit == "tokens" else len(prefix)),
                     self.p.chunk_size // 2)
        self.chunker = Chunker(budget, min(self.p.chunk_overlap, budget // 2), self.p.unit)
        self.dropped: list[str] = []
        self.dropped_chars = 0
        self.chunk_no = 0
        self.has_text = False

    def _prefix_text(self) -> str:
        if self.p.heading_prefix == "none" or not self.path:
            return ""
        return (self.path[-1] if self.p.heading_prefix == "title" else " > ".join(self.path)) + "\n\n"

    def feed(self, block: Block) -> Iterator[dict | Drop | Quarantine]:
        if isinstance(block, Quarantine):
            yield block
        elif isinstance(block, PageDrop):
            yield self._drop(block.reason, block.text, block.locator, self.path)
        elif isinstance(block, Heading):
            yield from self.close()
            while self.stack and self.stack[-1][0] >= block.level:
                self.stack.pop()
            self.stack.append((block.level, block.title))
            self.section_no += 1
            self.section_locator = f"{self.prefix}{block.locator} section {self.section_no}"
            self._open()
        elif block.text.strip():
            self.has_text = True
            if self.reason:
                if self.dropped_chars < DROPPED_TEXT_CHARS:
                    self.dropped.append(block.text)
                self.dropped_chars += len(block.text)
            else:
                for chunk in self.chunker.add(block.text):
                    yield self._row(chunk)

    def close(self) -> Iterator[dict | Drop]:
        """End the current section (before a heading, at the end of a document)."""
        if self.reason:
            if self.has_text:
                yield self._drop(self.reason, "\n\n".join(self.dropped), self.section_locator, self.path)
        else:
            for chunk in self.chunker.finish():
                yield self._row(chunk)
        self.has_text = False
        self.dropped = []

    def _meta(self, locator: str, path: Sequence[str], **extra: Any) -> dict[str, Any]:
        return new_meta(builder=self.b.name, file=self.display, locator=locator, licence=self.p.licence,
                        phi_status=self.p.phi_status, annotations={"heading_path": list(path), **extra})

    def _row(self, chunk: str) -> dict:
        self.outcomes += 1
        locator = f"{self.section_locator} chunk {self.chunk_no}"
        self.chunk_no += 1
        self.b.stat_update("chunks")
        return new_row(source=self.source, meta=self._meta(locator, self.path, chunk=self.chunk_no - 1),
                       text=self._prefix_text() + chunk)

    def _drop(self, reason: str, text: str, locator: str, path: Sequence[str]) -> Drop:
        self.outcomes += 1
        self.b.stat_update(f"dropped_sections.{reason}")
        meta = self._meta(locator, path)
        row = new_row(source=self.source, meta=meta, text=text[:DROPPED_TEXT_CHARS] or "(empty)")
        return Drop(row, reason)


# -- readers: each turns one document into blocks --------------------------------------------------------

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


def _line_blocks(lines: Iterator[tuple[int, str] | Quarantine], display: str, markdown: bool,
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
            yield Para(_join_lines(para), para_start)
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


def _join_lines(lines: list[str]) -> str:
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
                yield Para(_join_lines(para), para_start)
                para = []
            yield PageDrop(reason, text, loc)
            continue
        for line in text.splitlines():
            if not line.strip() or _PAGE_NUMBER.match(line):
                continue
            head = plain_heading(line, outline)
            if head is not None:
                if para:
                    yield Para(_join_lines(para), para_start)
                    para = []
                yield Heading(head[0], head[1], loc)
                continue
            if not para:
                para_start = loc
            para.append(line)
            if line.rstrip().endswith((".", "?", "!", ":")) and len(line.strip()) < 60:
                yield Para(_join_lines(para), para_start)  # a short line ending a sentence ends a paragraph
                para = []
    if para:
        yield Para(_join_lines(para), para_start)


# -- the builders -------------------------------------------------------------------------------------------

def _starts_like_json(path: Path) -> bool:
    with io.open_binary(path) as fh:
        head = fh.read(64)
    return _JSON_START.match(head.decode("latin-1")) is not None


_FORMATS = {".txt": "text", ".text": "text", ".md": "markdown", ".markdown": "markdown", ".html": "html",
            ".htm": "html", ".xhtml": "html", ".pdf": "pdf"}


class _BookBuilder(Builder):
    """Shared reader: the front/back matter rules for the whole input, then each file in turn."""

    output_columns = ("text",)
    default_patterns: ClassVar[tuple[str, ...]] = ()

    @checked_rows
    def read(self, ctx: StepContext) -> Iterator[dict | Drop | Quarantine]:
        p: TextbookParams = self.params
        source = source_io.source_name(p)
        rules = MatterRules(p.drop_headings)
        for path in source_io.input_files(p, self.default_patterns):
            yield from self.read_file(path, ctx.display_path(path), source, rules)

    def read_file(self, path: Path, display: str, source: str,
                  rules: MatterRules) -> Iterator[dict | Drop | Quarantine]:
        raise NotImplementedError


@register
class Textbook(_BookBuilder):
    name = "textbook"
    description = ("Books and guidelines (.txt, .md, .html, .pdf) -> text chunks on headings with overlap; "
                   "front/back matter and exercises dropped with a reason.")
    Params = TextbookParams
    default_patterns = (tuple(f"*{ext}" for ext in _FORMATS)
                        + tuple(f"*{ext}.gz" for ext in _FORMATS if ext != ".pdf"))

    def read_file(self, path: Path, display: str, source: str,
                  rules: MatterRules) -> Iterator[dict | Drop | Quarantine]:
        p: TextbookParams = self.params
        if (q := source_io.empty_file(path, display)) is not None:
            yield q
            return
        kind = _FORMATS.get(io.base_suffix(path))
        if kind is None:
            yield Quarantine("unknown file type; expected .txt, .md, .html or .pdf", display, "file")
            return
        if kind != "pdf" and _starts_like_json(path):
            yield Quarantine("file holds JSON, not book text (read JSON/JSONL sections with textbook_jsonl)",
                             display, "file")
            return
        if kind == "pdf":
            blocks: Iterator[Block] = pdf_blocks(path, display)
        elif kind == "html":
            blocks = html_blocks(path, display, p.encoding)
        else:
            blocks = _line_blocks(io.iter_lines(path, p.encoding), display, markdown=kind == "markdown")
        asm = Assembler(self, rules, source, display)
        quarantined = False
        for block in blocks:
            quarantined = quarantined or isinstance(block, Quarantine)
            yield from asm.feed(block)
        yield from asm.close()
        if asm.outcomes == 0 and not quarantined:
            yield Quarantine("no text found in the document", display, "file")


class TextbookJsonlParams(TextbookParams):
    text_field: str = "text"
    #: Fields that form the top of the heading path, outermost first (OpenStax: unit > chapter > title).
    path_fields: list[str] = ["unit", "chapter", "title"]
    format: Literal["jsonl", "json"] | None = None


@register
class TextbookJsonl(_BookBuilder):
    name = "textbook_jsonl"
    description = ("Book sections as JSONL records (OpenStax layout: unit, chapter, title, markdown text) -> "
                   "text chunks with the heading path; front/back matter and exercises dropped.")
    Params = TextbookJsonlParams
    default_patterns = ("*.jsonl", "*.jsonl.gz", "*.json")

    def read_file(self, path: Path, display: str, source: str,
                  rules: MatterRules) -> Iterator[dict | Drop | Quarantine]:
        p: TextbookJsonlParams = self.params
        for item in source_io.iter_records(path, display, p.format, p.encoding):
            if isinstance(item, Quarantine):
                yield item
                continue
            locator, record = item
            text = record.get(p.text_field)
            if not isinstance(text, str):
                yield Quarantine(f"field '{p.text_field}' is missing or not a string", display, locator)
                continue
            base = [str(record[f]).strip() for f in p.path_fields if record.get(f) not in (None, "")]
            asm = Assembler(self, rules, source, display, base_path=base, locator_prefix=f"{locator} ")
            lines = enumerate(text.split("\n"), start=1)
            for block in _line_blocks(lines, display, markdown=True, locator_word="text line"):
                yield from asm.feed(block)
            yield from asm.close()
            if asm.outcomes == 0:  # nothing but whitespace and headings: account for the record
                meta = new_meta(builder=self.name, file=display, locator=locator, licence=p.licence,
                                phi_status=p.phi_status, annotations={"heading_path": base})
                yield Drop({"id": make_id(source, f"{path.name}:{locator}"), "source": source, "meta": meta},
                           "empty_text")
