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
    fold: str  # lower case, curly apostrophe straightened, possessive "'s" removed
    is_word: bool  # starts with a letter (not a number or punctuation)
    is_initial: bool  # a single capital letter
    line_first: bool = False  # first token of its line: no name or place runs on from the line above


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
    unless they are clearly ALL CAPS inside a mixed document.

    Hot path (every note, every token): attributes are computed once here, not as properties."""
    doc_mode = document_mode(text)
    out: list[Token] = []
    append = out.append
    pos = 0
    for line in text.split("\n"):
        mode = line_mode(line)
        if mode == "short":
            n_upper = len(_UPPER.findall(line))
            if doc_mode == "mixed" and n_upper >= 4 and not _LOWER.search(line):
                mode = "caps"
            else:
                mode = doc_mode
        line_start = pos + (len(line) - len(line.lstrip()))
        prev: Token | None = None
        prev2: Token | None = None
        prev3: Token | None = None
        for m in _TOKEN.finditer(line):
            t = m.group()
            a, b = m.span()
            if prev is None:
                initial = True
            else:
                p = prev.text
                initial = p in _SENT_END or (prev.start == line_start and _LIST_MARK.match(p) is not None)
                if p == "." and prev2 is not None and prev2.lower in _ABBREV_DOT:
                    initial = False
                elif p == ")" and prev3 is not None and prev3.text == "(":
                    initial = True  # "(1) Follow up"
            low = t.lower()
            fold = low.replace("\u2019", "'") if "\u2019" in low else low
            if fold.endswith("'s"):
                fold = fold[:-2]
            tok = Token(t, pos + a, pos + b, low, mode, initial, fold, t[0].isalpha(),
                        len(t) == 1 and t.isupper(), prev is None)
            append(tok)
            prev3, prev2, prev = prev2, prev, tok
        pos += len(line) + 1
    return out


# Abbreviations whose period does not end a sentence (so the next word is not sentence-initial).
_ABBREV_DOT = frozenset(
    "dr mr mrs ms st mt prof sr jr vs pt pts no approx e.g i.e etc fig dept univ ave rd blvd hosp a b c d e f g h "
    "i j k l m n o p q r s t u v w x y z".split()
)
