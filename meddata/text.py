"""Text toolkit of the core: unicode repair, HTML to text, whitespace, QA-site boilerplate.

Builders (QA sites, textbooks) and the cleaning steps of :mod:`meddata.filters` call these
same functions, so an answer cleaned while it is read and one cleaned by a recipe step come
out identical. There is one HTML-to-text conversion and one boilerplate engine, driven by one
pattern file (``meddata/data/boilerplate_qa_sites.yaml``).

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

from meddata.yamlfile import read_yaml

DEFAULT_BOILERPLATE = Path(__file__).parent / "data" / "boilerplate_qa_sites.yaml"

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\u200b-\u200d\u2060\ufeff]")
_SPACES = re.compile(r"[ \t\u00a0\u2000-\u200a\u202f\u205f\u3000]+")
_BLANKS = re.compile(r"\n{3,}")
_LIST_GAP = re.compile(r"\n{2,}(?=- )")  # a blank line before a list item
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
    """Text of an HTML document; blocks and list items start lines, scripts and styles go."""

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
    """HTML to plain text: blocks and list items become lines (the items of one list stay
    together, paragraphs keep one blank line between them), scripts and styles go, whitespace
    is tidied. Text without tags only gets its entities unescaped, nothing else."""
    if not looks_like_html(text):
        return html.unescape(text) if _ENTITY.search(text) else text
    parser = _TextExtractor()
    parser.feed(text)
    parser.close()
    return _LIST_GAP.sub("\n", tidy_whitespace("".join(parser.parts)))


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


# -- QA-site boilerplate ------------------------------------------------------------------------
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
    """Compiled boilerplate patterns (see ``meddata/data/boilerplate_qa_sites.yaml`` for the format)."""

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
            check_regex(v, f"{path}: {key}[{i}]")
        out[key] = values
    return out


def check_regex(pattern: str, where: str) -> None:
    probe = pattern.replace("{site}", "x").replace("{domain}", "x").replace("{doctor}", DOCTOR)
    try:
        re.compile(probe)
    except re.error as exc:
        raise ValueError(f"{where}: not a valid regular expression ({exc})") from None


@lru_cache(maxsize=8)
def _load_patterns(files: tuple[str, ...], extra: tuple[tuple[str, tuple[str, ...]], ...]) -> BoilerplatePatterns:
    return BoilerplatePatterns.load([Path(f) for f in files], {k: list(v) for k, v in extra})



def load_patterns(files: list[Path | str], extra: Mapping[str, list[str]] | None = None) -> BoilerplatePatterns:
    """The compiled patterns of some pattern files plus inline extras (cached per process)."""
    frozen = tuple(sorted((k, tuple(v)) for k, v in (extra or {}).items()))
    return _load_patterns(tuple(str(f) for f in files), frozen)


def strip_boilerplate(text: str, patterns: BoilerplatePatterns | None = None) -> str:
    """``text`` without QA-site greetings, thank-yous, sign-offs and site links, with the
    shipped pattern list and the ``strip_boilerplate`` step's default options."""
    patterns = patterns or load_patterns([DEFAULT_BOILERPLATE])
    return patterns.strip(text)[0]
