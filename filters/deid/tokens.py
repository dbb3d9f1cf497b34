"""A light tokenizer with the facts the name and place rules need.

Clinical text comes in three shapes: mixed case (capitals mean something), ALL CAPS
(nursing shorthand: capitals mean nothing) and all lower case (texting style, some
transcriptions). Each line gets a ``mode`` so the rules know whether a capital letter is
evidence. Tokens are words (letters, digits, inner apostrophes) or single punctuation marks.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_TOKEN = re.compile(r"[^\W_]+(?:['\u2019][^\W_]+)*|[^\w\s]")
_SENT_END = frozenset(".!?:;•*>")
_LIST_MARK = re.compile(r"^(?:\d{1,2}|[a-z])$", re.I)


@dataclass(slots=True)
class Token:
    text: str
    start: int
    end: int
    lower: str
    mode: str  # mixed | caps | lower (of its line)
    initial_pos: bool  # first word of a sentence, line or list item
    fold: str = ""  # lower case, curly apostrophe straightened, possessive "'s" removed

    @property
    def is_word(self) -> bool:
        return self.text[0].isalpha()

    @property
    def is_cap(self) -> bool:
        """Capitalized like a proper noun: ``Smith``, ``McDonald``, ``O'Brien``, or ``SMITH`` in a mixed line."""
        t = self.text
        return t[0].isupper() and (len(t) == 1 or not t[1:].islower() or t[1:].islower())

    @property
    def is_initial(self) -> bool:
        return len(self.text) == 1 and self.text.isupper()



_UPPER = re.compile(r"[A-Z]")
_LOWER = re.compile(r"[a-z]")


def line_mode(line: str) -> str:
    upper = len(_UPPER.findall(line))
    letters = upper + len(_LOWER.findall(line))
    if letters < 12:
        return "short"
    if upper / letters > 0.8:
        return "caps"
    first = _UPPER.search(line) or _LOWER.search(line)
    if upper / letters < 0.015 and first is not None and first.group().islower():
        return "lower"  # texting style: even sentences start lower-case
    return "mixed"


def document_mode(text: str) -> str:
    mode = line_mode(text[:20000])
    return "mixed" if mode == "short" else mode


def tokenize(text: str) -> list[Token]:
    """Tokens with per-line case mode; short lines (headers) inherit the document's mode
    unless they are clearly ALL CAPS inside a mixed document."""
    doc_mode = document_mode(text)
    out: list[Token] = []
    pos = 0
    for line in text.split("\n"):
        mode = line_mode(line)
        if mode == "short":
            n_upper = len(_UPPER.findall(line))
            if doc_mode == "mixed" and n_upper >= 4 and not _LOWER.search(line):
                mode = "caps"
            else:
                mode = doc_mode
        prev: Token | None = None
        for m in _TOKEN.finditer(line):
            t = m.group()
            initial = prev is None or prev.text in _SENT_END or (
                _LIST_MARK.match(prev.text) is not None and prev.start == pos + (len(line) - len(line.lstrip())))
            if prev is not None and prev.text == "." and len(out) >= 2 and out[-2].text.lower() in _ABBREV_DOT:
                initial = False
            if prev is not None and prev.text == ")" and len(out) >= 3 and out[-3].text == "(":
                initial = True  # "(1) Follow up"
            low = t.lower()
            fold = low.replace("\u2019", "'") if "\u2019" in low else low
            if fold.endswith("'s"):
                fold = fold[:-2]
            tok = Token(t, pos + m.start(), pos + m.end(), low, mode, initial, fold)
            out.append(tok)
            prev = tok
        pos += len(line) + 1
    return out


# Abbreviations whose period does not end a sentence (so the next word is not sentence-initial).
_ABBREV_DOT = frozenset(
    "dr mr mrs ms st mt prof sr jr vs pt pts no approx e.g i.e etc fig dept univ ave rd blvd hosp a b c d e f g h "
    "i j k l m n o p q r s t u v w x y z".split()
)
