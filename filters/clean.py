"""Cleaning: unicode repair, HTML to text, whitespace, QA-site boilerplate, PDF artefacts.

One registered step per concern, so a recipe says exactly what it does to the text:

* ``normalize_text`` – NFKC, HTML to text, control characters, whitespace (the quickstart step),
* ``fix_unicode`` – ftfy mojibake repair (``donâ€™t`` -> ``don't``) then NFKC,
* ``html_to_text`` – real HTML to text (blocks and list items become lines, scripts go),
* ``strip_boilerplate`` – greetings, sign-offs, site names and links of QA sites, from a
  pattern file (``filters/data/boilerplate_qa_sites.yaml`` or your own),
* ``fix_pdf_artifacts`` – page headers/footers repeated across pages, page numbers,
  hyphenation across line breaks, lines wrapped inside a sentence.

Superscripts survive NFKC as ``^``: ``10⁹/L`` becomes ``10^9/L``, not ``109/L``.
"""

from __future__ import annotations

import html
import re
import unicodedata
from collections import Counter
from collections.abc import Mapping
from functools import lru_cache
from html.parser import HTMLParser
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from meddata.params import InputPath
from meddata.records import MESSAGE_COLUMNS, map_text
from meddata.registry import register
from meddata.steps import Drop, Mapper, Outcome, StepContext, StepParams
from meddata.yamlfile import read_yaml

DATA = Path(__file__).parent / "data"
DEFAULT_BOILERPLATE = DATA / "boilerplate_qa_sites.yaml"

UnicodeForm = Literal["NFC", "NFKC", "NFD", "NFKD"]

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\u200b-\u200d\u2060\ufeff]")
_SPACES = re.compile(r"[ \t\u00a0\u2000-\u200a\u202f\u205f\u3000]+")
_BLANKS = re.compile(r"\n{3,}")
# A real tag starts with a letter: "BP < 120 and HR > 60" is text, "<p class=x>" is a tag.
_HTML_TAG = re.compile(r"</?[A-Za-z][A-Za-z0-9-]*(?:\s[^<>]{0,500})?/?>")
_ENTITY = re.compile(r"&(?:[A-Za-z][A-Za-z0-9]{1,31}|#[0-9]{1,7}|#[xX][0-9a-fA-F]{1,6});")
_SUPERSCRIPTS = str.maketrans("⁰¹²³⁴⁵⁶⁷⁸⁹⁺⁻", "0123456789+-")
_SUPERSCRIPT_RUN = re.compile(r"[⁰¹²³⁴⁵⁶⁷⁸⁹⁺⁻]+")


# -- unicode ----------------------------------------------------------------------------------
def protect_superscripts(text: str) -> str:
    """``10⁹/L`` -> ``10^9/L``, ``m²`` -> ``m^2``: NFKC would silently turn them into ``109/L``."""
    return _SUPERSCRIPT_RUN.sub(lambda m: "^" + m.group().translate(_SUPERSCRIPTS), text)


def unicode_normalize(text: str, form: str = "NFKC") -> str:
    if form.startswith("NFK"):
        text = protect_superscripts(text)
    return unicodedata.normalize(form, text)


def fix_unicode(text: str, form: str = "NFKC") -> str:
    """Repair mojibake and broken entities with ftfy, then normalise and drop control characters."""
    import ftfy  # light, but only the steps that need it pay for the import

    text = ftfy.fix_text(text, normalization="NFC", uncurl_quotes=False)
    return _CONTROL.sub("", unicode_normalize(text, form))


# -- HTML -------------------------------------------------------------------------------------
_BLOCK_TAGS = frozenset(
    "p div br hr ul ol dl dt dd table tr thead tbody tfoot caption section article header footer "
    "aside nav main blockquote pre figure figcaption h1 h2 h3 h4 h5 h6 address form fieldset".split()
)
_SKIP_TAGS = frozenset({"script", "style", "head", "noscript", "template", "svg", "iframe", "object"})


class _TextExtractor(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs) -> None:
        if tag in _SKIP_TAGS:
            self._skip += 1
        elif tag == "li":
            self.parts.append("\n- ")
        elif tag in ("td", "th"):
            self.parts.append(" ")
        elif tag in _BLOCK_TAGS:
            self.parts.append("\n")

    def handle_startendtag(self, tag: str, attrs) -> None:
        if tag in ("br", "hr"):
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIP_TAGS:
            self._skip = max(0, self._skip - 1)
        elif tag in _BLOCK_TAGS or tag == "li":
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.parts.append(data)


def looks_like_html(text: str) -> bool:
    return bool(_HTML_TAG.search(text))


def html_to_text(text: str) -> str:
    """HTML to plain text; text without tags only gets its entities unescaped."""
    if not looks_like_html(text):
        return html.unescape(text) if _ENTITY.search(text) else text
    parser = _TextExtractor()
    parser.feed(text)
    parser.close()
    return "".join(parser.parts)


def tidy_whitespace(text: str) -> str:
    """Unify newlines, drop control characters, one space between words, at most one blank line."""
    text = _CONTROL.sub("", text.replace("\r\n", "\n").replace("\r", "\n"))
    text = _SPACES.sub(" ", text)
    text = "\n".join(line.strip() for line in text.split("\n"))
    return _BLANKS.sub("\n\n", text).strip()


def normalize(text: str, *, form: str = "NFKC", strip_html: bool = True, collapse: bool = True) -> str:
    """NFKC, HTML to text, control characters out, whitespace tidied."""
    if strip_html:
        text = html_to_text(text)
    text = unicode_normalize(text, form)
    if collapse:
        return tidy_whitespace(text)
    return _CONTROL.sub("", text.replace("\r\n", "\n").replace("\r", "\n")).strip()


# -- shared step plumbing -----------------------------------------------------------------------
class TextParams(StepParams):
    #: Content columns to clean (default: every content column).
    fields: list[str] | None = None


def _empty_content(row: Mapping) -> str | None:
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
        if _empty_content(row) is not None:
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


# -- strip_boilerplate ------------------------------------------------------------------------------
SECTIONS = ("leading", "trailing", "trailing_inline", "sentences", "inline")
DOCTOR = r"(?:[\s,]*dr(?:\.\s*|\s+)(?:[a-z][a-z'\-]*\.?\s*){1,3}(?:,\s*[a-z][a-z &]{0,40})?)"
# Words after which a period does not end a sentence ("Dr. S. R. Raveendran").
_ABBREV = frozenset("dr mr mrs ms st vs etc eg ie no fig approx prof sr jr dept inc ltd".split())
# "end. Next", a newline, or the QA-site habit "end .next" (space before the stop, none after).
_BOUNDARY = re.compile(r"[.!?]+[\"')\]]*[ \t]+|\s*\n\s*|(?<=\s)[.!?]+(?=[A-Za-z])")
_GLUED_STOP = re.compile(r"(?<=[a-z]{2})([.!?])(?=[A-Z])")
_GLUED_BANG = re.compile(r"(?<=[A-Za-z])([!?])(?=[A-Z])")
_GLUED_CLOSER = re.compile(
    r"(?<=[a-z])(?=(?:Hope|Thanks|Thank you|Regards|Wish|Wishing|Kind regards|Best regards|Take care"
    r"|Get well|Dr\.)(?![a-z]))"
)
_EDGE_JUNK = " \t\n.,;:!?-"


class BoilerplatePatterns:
    """Compiled boilerplate patterns (see ``filters/data/boilerplate_qa_sites.yaml`` for the format)."""

    def __init__(self, spec: Mapping[str, list[str]]):
        sites = "|".join(spec.get("site_names") or []) or r"(?!x)x"
        domains = "|".join(spec.get("site_domains") or []) or r"(?!x)x"
        self.compiled: dict[str, list[re.Pattern]] = {}
        for section in SECTIONS:
            pats = []
            for raw in spec.get(section) or []:
                expanded = raw.replace("{site}", sites).replace("{domain}", domains).replace("{doctor}", DOCTOR)
                pats.append(re.compile(expanded, re.IGNORECASE))
            self.compiled[section] = pats
        self.trailing_inline = [re.compile(p.pattern + r"[\s.!,]*$", re.IGNORECASE)
                                for p in self.compiled["trailing_inline"]]

    @classmethod
    def load(cls, files: list[Path], extra: Mapping[str, list[str]] | None = None) -> BoilerplatePatterns:
        merged: dict[str, list[str]] = {}
        for f in files:
            for key, values in read_pattern_file(f).items():
                merged.setdefault(key, []).extend(values)
        for key, values in (extra or {}).items():
            merged.setdefault(key, []).extend(values)
        return cls(merged)

    def strip(self, text: str, *, deglue: bool = True, capitalize: bool = True) -> tuple[str, Counter]:
        """Remove boilerplate; returns the text and how many pieces each section removed."""
        counts: Counter[str] = Counter()
        for pat in self.compiled["inline"]:
            text, n = pat.subn("", text)
            if n:
                counts["inline"] += n
        if deglue:
            text = _GLUED_CLOSER.sub(". ", _GLUED_BANG.sub(r"\1 ", _GLUED_STOP.sub(r"\1 ", text)))
        text = self._strip_leading(text, counts)
        text = self._strip_trailing(text, counts)
        if self.compiled["sentences"]:
            kept = []
            for piece in split_sentences(text):
                core = piece.strip(_EDGE_JUNK)
                if core and any(p.fullmatch(core) for p in self.compiled["sentences"]):
                    counts["sentences"] += 1
                else:
                    kept.append(piece)
            text = self._strip_trailing("".join(kept), counts)  # a removed site sentence may expose a sign-off
        text = text.strip()
        if capitalize and counts["leading"] and text[:1].islower():
            text = text[0].upper() + text[1:]
        return text, counts

    def _strip_leading(self, text: str, counts: Counter) -> str:
        for _ in range(20):
            rest = text.lstrip(_EDGE_JUNK)
            for pat in self.compiled["leading"]:
                m = pat.match(rest)
                if m and m.end() > 0:
                    text = rest[m.end():]
                    counts["leading"] += 1
                    break
            else:
                return text.lstrip(_EDGE_JUNK) if counts["leading"] else text
        return text

    def _strip_trailing(self, text: str, counts: Counter) -> str:
        for _ in range(20):
            text = text.rstrip()
            for pat in self.trailing_inline:
                m = pat.search(text)
                if m:
                    text = text[:m.start()].rstrip()
                    counts["trailing"] += 1
                    break
            pieces = split_sentences(text)
            if not pieces:
                return text
            last = pieces[-1].strip(_EDGE_JUNK)
            if last and any(p.fullmatch(last) for p in self.compiled["trailing"]):
                text = "".join(pieces[:-1])
                counts["trailing"] += 1
            elif not last and len(pieces) > 1:
                text = "".join(pieces[:-1])
            else:
                return text
        return text


def split_sentences(text: str) -> list[str]:
    """Sentences with their trailing whitespace, so ``"".join(result) == text``.
    A period after an abbreviation or an initial ("Dr.", "S.") does not end a sentence."""
    pieces, start = [], 0
    for m in _BOUNDARY.finditer(text):
        if "\n" not in m.group():
            word = re.search(r"([A-Za-z]+)$", text[start:m.start()])
            if word and m.group().startswith(".") and (
                len(word.group(1)) == 1 or word.group(1).lower() in _ABBREV
            ):
                continue
        pieces.append(text[start:m.end()])
        start = m.end()
    if start < len(text):
        pieces.append(text[start:])
    return pieces


def file_stamps(paths) -> str:
    """Size and modification time of files, for step fingerprints."""
    stamps = []
    for f in map(Path, paths):
        st = f.stat() if f.exists() else None
        stamps.append(f"{f}:{st.st_size}:{st.st_mtime_ns}" if st else f"{f}:missing")
    return "|".join(stamps)


def read_pattern_file(path: Path) -> dict[str, list[str]]:
    """Read and check a boilerplate pattern file; errors name the file, section and entry."""
    data = read_yaml(path, ValueError, "pattern") or {}
    if not isinstance(data, Mapping):
        raise ValueError(f"{path}: expected a mapping of sections ({', '.join(SECTIONS)}, site_names, site_domains)")
    allowed = {*SECTIONS, "site_names", "site_domains"}
    unknown = set(data) - allowed
    if unknown:
        raise ValueError(f"{path}: unknown section(s) {sorted(unknown)}; allowed: {sorted(allowed)}")
    out: dict[str, list[str]] = {}
    for key, values in data.items():
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            raise ValueError(f"{path}: section '{key}' must be a list of strings")
        for i, v in enumerate(values):
            _check_regex(v, f"{path}: {key}[{i}]")
        out[key] = values
    return out


def _check_regex(pattern: str, where: str) -> None:
    probe = pattern.replace("{site}", "x").replace("{domain}", "x").replace("{doctor}", DOCTOR)
    try:
        re.compile(probe)
    except re.error as exc:
        raise ValueError(f"{where}: not a valid regular expression ({exc})") from None


@lru_cache(maxsize=8)
def _load_patterns(files: tuple[str, ...], extra: tuple[tuple[str, tuple[str, ...]], ...]) -> BoilerplatePatterns:
    return BoilerplatePatterns.load([Path(f) for f in files], {k: list(v) for k, v in extra})


class BoilerplateParams(TextParams):
    #: Your own pattern file (same format as the shipped one), added to it.
    patterns: InputPath | None = None
    #: Use the shipped QA-site list (filters/data/boilerplate_qa_sites.yaml).
    use_default: bool = True
    #: Extra patterns inline, by section: {leading: [...], trailing: [...], site_names: [...]}.
    extra_patterns: dict[str, list[str]] = Field(default_factory=dict)
    #: Roles of message columns to clean: site boilerplate lives in the doctors' answers, and a
    #: patient's "Thank you doctor!" turn should not empty a conversation. null: every role.
    roles: list[Literal["system", "user", "assistant"]] | None = Field(default_factory=lambda: ["assistant"])
    #: Split "healthy.Nothing" and "enzymesHope" so sentences can be recognised.
    fix_glued_sentences: bool = True
    capitalize: bool = True

    @field_validator("extra_patterns")
    @classmethod
    def _valid_patterns(cls, v: dict[str, list[str]]) -> dict[str, list[str]]:
        allowed = {*SECTIONS, "site_names", "site_domains"}
        for key, values in v.items():
            if key not in allowed:
                raise ValueError(f"unknown section {key!r}; allowed: {sorted(allowed)}")
            for i, pattern in enumerate(values):
                _check_regex(pattern, f"{key}[{i}]")
        return v

    @model_validator(mode="after")
    def _some_patterns(self):
        if not self.use_default and not self.patterns and not self.extra_patterns:
            raise ValueError("use_default is false and neither 'patterns' nor 'extra_patterns' is set")
        if self.patterns:
            read_pattern_file(Path(self.patterns))  # fail when the recipe loads, naming the entry
        return self


@register
class StripBoilerplate(Mapper):
    name = "strip_boilerplate"
    description = ("Remove QA-site boilerplate (greetings, sign-offs, site names, links to the site) "
                   "with configurable patterns; rows left empty are dropped.")
    Params = BoilerplateParams

    def setup(self, ctx: StepContext) -> None:
        p: BoilerplateParams = self.params
        files = ([str(DEFAULT_BOILERPLATE)] if p.use_default else []) + ([p.patterns] if p.patterns else [])
        extra = tuple(sorted((k, tuple(v)) for k, v in p.extra_patterns.items()))
        self._model_patterns = _load_patterns(tuple(files), extra)

    def fingerprint_extra(self, ctx: StepContext) -> str:
        """Edited pattern files invalidate the checkpoint."""
        p: BoilerplateParams = self.params
        return file_stamps([DEFAULT_BOILERPLATE, *([p.patterns] if p.patterns else [])])

    def _clean(self, text: str) -> str:
        p: BoilerplateParams = self.params
        out, counts = self._model_patterns.strip(text, deglue=p.fix_glued_sentences, capitalize=p.capitalize)
        for section, n in counts.items():
            self.stat_update(f"boilerplate.{section}", n)
        return out

    def process(self, row: dict, ctx: StepContext) -> Outcome:
        p: BoilerplateParams = self.params
        before = {c: row.get(c) for c in ("text", *MESSAGE_COLUMNS)}
        if p.roles is None:
            map_text(row, self._clean, p.fields)
        else:
            plain = [f for f in (p.fields or ("text", "question", "answer")) if f not in MESSAGE_COLUMNS]
            map_text(row, self._clean, plain)
            for col in MESSAGE_COLUMNS:
                if (p.fields is None or col in p.fields) and row.get(col):
                    row[col] = [
                        {**m, "content": self._clean(m["content"])}
                        if m["role"] in p.roles and m["content"] else m
                        for m in row[col]
                    ]
        if any(row.get(c) != v for c, v in before.items()):
            self.stat_update("boilerplate.rows_changed")
        if _empty_content(row) is not None:
            return Drop(row, "empty_after_boilerplate")
        return row


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

