"""Cleaning: unicode repair, HTML to text, whitespace, QA-site boilerplate, PDF artefacts.

One registered step per concern, so a recipe says exactly what it does to the text:

* ``normalize_text`` – NFKC, HTML to text, control characters, whitespace (the quickstart step),
* ``fix_unicode`` – ftfy mojibake repair (``donâ€™t`` -> ``don't``) then NFKC,
* ``html_to_text`` – real HTML to text (blocks and list items become lines, scripts go),
* ``strip_boilerplate`` – greetings, sign-offs, site names and links of QA sites (in
  :mod:`meddata.filters.boilerplate`),
* ``fix_pdf_artifacts`` – page headers/footers repeated across pages, page numbers,
  hyphenation across line breaks, lines wrapped inside a sentence.

The text functions themselves live in :mod:`meddata.text`, which builders call too.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping
from typing import Literal

from pydantic import Field

from meddata.io import file_stamps as file_stamps  # re-exported: filters.quality imports it from here
from meddata.records import MESSAGE_COLUMNS, map_text
from meddata.registry import register
from meddata.steps import Drop, Mapper, Outcome, StepContext, StepParams
from meddata.text import fix_unicode, html_to_text, normalize, tidy_whitespace

UnicodeForm = Literal["NFC", "NFKC", "NFD", "NFKD"]


# -- shared step plumbing -----------------------------------------------------------------------
class TextParams(StepParams):
    #: Content columns to clean (default: every content column).
    fields: list[str] | None = None


def empty_field(row: Mapping) -> str | None:
    """The first content field a cleaning step emptied, or None."""
    if isinstance(row.get("text"), str) and not row["text"].strip():
        return "text"
    for col in MESSAGE_COLUMNS:
        for i, msg in enumerate(row.get(col) or []):
            if not (msg.get("content") or "").strip():
                return f"{col}[{i}]"
    return None


class _TextMapper(Mapper):
    """A mapper applying ``clean(text) -> text`` to content fields; a row left with an empty
    field is dropped with ``empty_reason`` instead of breaking the Record contract."""

    empty_reason = "empty_after_cleaning"

    def clean(self, text: str) -> str:
        raise NotImplementedError

    def process(self, row: dict, ctx: StepContext) -> Outcome:
        changed = False

        def fn(text: str) -> str:
            nonlocal changed
            out = self.clean(text)
            changed |= out != text
            return out

        map_text(row, fn, self.params.fields)
        if changed:
            self.stat_update(f"{self.name}.rows_changed")
        if empty_field(row) is not None:
            return Drop(row, self.empty_reason)
        return row


# -- normalize_text / fix_unicode / html_to_text ---------------------------------------------------
class NormalizeParams(TextParams):
    unicode_form: UnicodeForm = "NFKC"
    html: bool = True
    collapse_whitespace: bool = True


@register
class NormalizeText(_TextMapper):
    name = "normalize_text"
    description = ("Unicode NFKC (superscripts kept as ^), HTML to text, control characters, "
                   "whitespace.")
    Params = NormalizeParams

    def clean(self, text: str) -> str:
        p: NormalizeParams = self.params
        return normalize(text, form=p.unicode_form, strip_html=p.html, collapse=p.collapse_whitespace)


class FixUnicodeParams(TextParams):
    unicode_form: UnicodeForm = "NFKC"


@register
class FixUnicode(_TextMapper):
    name = "fix_unicode"
    description = "Repair mojibake and broken unicode with ftfy, then NFKC (superscripts kept as ^)."
    Params = FixUnicodeParams

    def clean(self, text: str) -> str:
        return fix_unicode(text, self.params.unicode_form)


@register
class HtmlToText(_TextMapper):
    name = "html_to_text"
    description = "HTML to plain text: blocks and list items become lines, scripts and styles go."
    Params = TextParams

    def clean(self, text: str) -> str:
        return tidy_whitespace(html_to_text(text))


# -- fix_pdf_artifacts ---------------------------------------------------------------------------------
_PAGE_NUMBER = re.compile(
    r"(?:page|p\.|pg\.?)?\s*[-–—(\[]?\s*\d{1,4}\s*(?:(?:of|/)\s*\d{1,4})?\s*[-–—)\]]?", re.IGNORECASE
)
_HYPHEN_BREAK = re.compile(r"(\w+)[-\u00ad]\n[ \t]*([a-z]\w*)")
_WRAPPED = re.compile(r"(?<=[^\s.!?:;])\n(?=[ \t]*[a-z0-9(])")


class PdfParams(TextParams):
    #: What separates pages in the extracted text (pypdf page texts joined with form feeds).
    page_separator: str = "\f"
    #: Lines looked at for headers/footers at the top and bottom of each page.
    edge_lines: int = Field(default=2, ge=1, le=5)
    #: A header/footer must repeat on at least this many pages and this share of them.
    min_repeats: int = Field(default=3, ge=2)
    min_page_fraction: float = Field(default=0.5, gt=0, le=1)
    drop_page_numbers: bool = True
    dehyphenate: bool = True
    join_wrapped_lines: bool = True


def _line_key(line: str) -> str:
    """Headers differ only in their page number: "Chapter 3 · 12" ~ "Chapter 3 · 13"."""
    return re.sub(r"\d+", "#", " ".join(line.lower().split()))


def remove_running_lines(pages: list[str], p: PdfParams) -> tuple[list[str], int]:
    """Drop header/footer lines repeated across pages, and bare page numbers at page edges."""
    edges: list[list[int]] = []
    seen: Counter[str] = Counter()
    split = [page.split("\n") for page in pages]
    for lines in split:
        idx = [i for i, line in enumerate(lines) if line.strip()]
        edge = sorted(set(idx[: p.edge_lines] + idx[-p.edge_lines:]))
        edges.append(edge)
        seen.update({_line_key(lines[i]) for i in edge})
    need = max(p.min_repeats, p.min_page_fraction * len(pages))
    removed = 0
    out = []
    for lines, edge in zip(split, edges):
        drop = set()
        for i in edge:
            if seen[_line_key(lines[i])] >= need or (p.drop_page_numbers and _PAGE_NUMBER.fullmatch(lines[i].strip())):
                drop.add(i)
        removed += len(drop)
        out.append("\n".join(line for i, line in enumerate(lines) if i not in drop))
    return out, removed


def dehyphenate(text: str) -> tuple[str, int]:
    """Join words split across lines. "follow-\\nup" stays hyphenated when the document uses
    "follow-up" elsewhere; "diag-\\nnosis" becomes "diagnosis"."""
    hyphenated = {w.lower() for w in re.findall(r"\b\w+-\w+\b", _HYPHEN_BREAK.sub(" ", text))}
    count = 0

    def join(m: re.Match) -> str:
        nonlocal count
        count += 1
        a, b = m.group(1), m.group(2)
        return f"{a}-{b}" if f"{a}-{b}".lower() in hyphenated else a + b

    return _HYPHEN_BREAK.sub(join, text), count


@register
class FixPdfArtifacts(_TextMapper):
    name = "fix_pdf_artifacts"
    description = ("PDF text artefacts: running headers/footers repeated across pages, page numbers, "
                   "hyphenation across line breaks, lines wrapped mid-sentence.")
    Params = PdfParams

    def clean(self, text: str) -> str:
        p: PdfParams = self.params
        pages = text.split(p.page_separator) if p.page_separator else [text]
        if len(pages) > 1:
            pages, removed = remove_running_lines(pages, p)
            self.stat_update("pdf.header_footer_lines", removed)
            text = "\n".join(page.strip("\n") for page in pages)
        if p.dehyphenate:
            text, n = dehyphenate(text)
            self.stat_update("pdf.hyphens_joined", n)
        if p.join_wrapped_lines:
            text, n = _WRAPPED.subn(" ", text)
            self.stat_update("pdf.lines_joined", n)
        return tidy_whitespace(text)
