"""Split clinical notes into titled sections, so task makers can pick one ("Brief Hospital Course").

Notes mark sections in a handful of ways, all handled by one line-based splitter:

* Markdown headings (Synthea notes): ``# Chief Complaint``
* upper-case headings on their own line, with or without a colon: ``ASSESSMENT AND PLAN``
* upper-case or title-case headings followed by text on the same line, when the title is a
  known clinical section name: ``HISTORY OF PRESENT ILLNESS: The patient is ...``
* title-case headings alone on a line ending in a colon (MIMIC discharge summaries):
  ``Brief Hospital Course:``
* MTSamples' flattened scrape, where line breaks became commas: ``SUBJECTIVE:,  This 23-year-old
  ...effectiveness.,MEDICATIONS: , Her only ...`` – :func:`unflatten_mtsamples` restores the lines
  first (``style="auto"`` does this when it sees the pattern).

Inline sub-headings that are not section names (``HEENT: normal``, ``NEURO: alert``) stay in the
text of their section. Notes written mostly in capitals (nursing shorthand) only split on known
section names, so every shouted sentence does not become a heading.

The result is the ``sections`` column: ``[{"title": ..., "text": ...}]`` in note order; text
before the first heading is a section with the empty title.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Literal

# Canonical section names, with the aliases notes use for them (MIMIC, MTSamples, MTS-Dialog codes).
_CANONICAL: dict[str, tuple[str, ...]] = {
    "chief complaint": ("cc", "reason for visit", "reason for consultation", "reason for consult",
                        "reason for admission", "reason for referral", "presenting complaint"),
    "history of present illness": ("hpi", "genhx", "history of the present illness", "present illness",
                                   "brief history", "history", "interval history", "clinical history",
                                   "history of present illness/subjective"),
    "past medical history": ("pmh", "pmhx", "pastmedicalhx", "medical history", "past history",
                             "past medical and surgical history"),
    "past surgical history": ("psh", "pastsurgical", "surgical history", "previous surgeries"),
    "family history": ("fh", "fhx", "family hx"),
    "social history": ("sh", "shx", "social hx", "fam/sochx", "family and social history",
                       "social and family history"),
    "other history": ("other_history",),
    "gynecologic history": ("gynhx", "obstetric history", "ob/gyn history", "gyn history"),
    "medications": ("meds", "current medications", "medications on admission", "home medications",
                    "outpatient medications", "admission medications", "current meds", "medication"),
    "discharge medications": ("discharge meds", "medications on discharge"),
    "allergies": ("allergy", "drug allergies", "medication allergies", "nkda"),
    "immunizations": ("immunization history", "vaccinations"),
    "review of systems": ("ros", "systems review"),
    "physical examination": ("physical exam", "exam", "examination", "pe", "physical", "objective",
                             "admission exam", "discharge exam"),
    "subjective": (),
    "pertinent results": ("results", "laboratory data", "labs", "laboratory", "lab data",
                          "laboratory studies", "diagnostic data", "data"),
    "imaging": ("radiology", "imaging studies", "studies"),
    "findings": ("finding",),
    "impression": ("impressions", "clinical impression"),
    "assessment": ("assessment/impression",),
    "plan": ("recommendations", "recommendation", "treatment plan", "plan of care"),
    "assessment and plan": ("a/p", "a&p", "assessment/plan", "assessment & plan", "impression and plan",
                            "impression/plan", "assessment and recommendations"),
    "diagnosis": ("diagnoses", "final diagnosis", "final diagnoses", "primary diagnosis",
                  "admitting diagnosis", "admission diagnosis", "discharge diagnosis",
                  "discharge diagnoses", "preoperative diagnosis", "postoperative diagnosis",
                  "preoperative diagnoses", "postoperative diagnoses", "diagnoses/problems", "problem list",
                  "problems", "active problems"),
    "hospital course": ("brief hospital course", "course", "ed course", "edcourse",
                        "emergency department course", "clinical course", "hospital course by problem"),
    "procedure": ("procedures", "procedure performed", "procedures performed", "operation",
                  "operation performed", "operations", "title of operation", "operative procedure",
                  "name of procedure", "description of procedure", "procedure in detail",
                  "procedure details", "details of procedure", "technique",
                  "major surgical or invasive procedure"),
    "indications": ("indication", "indications for procedure", "indication for procedure",
                    "indications for surgery", "reason for exam", "reason for study"),
    "anesthesia": ("anesthetic",),
    "complications": (),
    "estimated blood loss": ("ebl", "blood loss"),
    "specimens": ("specimen", "specimens removed", "pathology"),
    "fluids": ("iv fluids",),
    "drains": (),
    "disposition": ("discharge disposition", "discharge condition", "condition on discharge",
                    "condition at discharge"),
    "discharge instructions": ("instructions", "patient instructions", "followup instructions",
                               "follow-up instructions", "follow up", "follow-up", "followup"),
    "service": (),
    "attending": ("attending physician",),
}
_ALIASES: dict[str, str] = {
    alias: canonical for canonical, aliases in _CANONICAL.items() for alias in (canonical, *aliases)
}

_MD_HEADING = re.compile(r"^\s{0,3}(#{1,6})\s+(.+?)\s*#*\s*$")
# A heading at the start of a line, then a colon and possibly text: "HPI: ...", "Brief Hospital Course:"
_COLON_HEADING = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9 ,/&()'\-]{0,79}?)\s*:\s*(.*)$")
# An upper-case line on its own: "ASSESSMENT AND PLAN"
_CAPS_LINE = re.compile(r"^\s*([A-Z][A-Z0-9 ,/&()'\-]{1,79}?)\s*$")
_SMALL_WORDS = {"of", "and", "or", "the", "on", "at", "in", "for", "to", "by", "with", "a", "an"}
_MAX_TITLE_WORDS = 8

# MTSamples: "...obesity.,POSTOPERATIVE DIAGNOSIS:  ,Morbid obesity." (line breaks became commas)
_FLAT_HEADING = re.compile(r"(?:^|,)\s*([A-Z][A-Z0-9 /&()'\-]*[A-Z)])\s*:\s*,[\s,:]*")
# ... or with no colon, at the start or after a sentence: "trachea.,POSTOPERATIVE DIAGNOSES,Airway ..."
_FLAT_CAPS = re.compile(r"(?:^|(?<=[.:;]),)\s*([A-Z0-9][A-Z0-9 /&()'\-]*[A-Z)]),(?=\s*\S)")
_FLAT_BREAK = re.compile(r"([.:;!?])[ \t]?,(?=[^\s,]|[ \t]+[A-Z0-9])")


def normalize_title(title: str) -> str:
    """``"  Brief Hospital-Course: "`` -> ``"brief hospital-course"`` (case and spacing only)."""
    return re.sub(r"\s+", " ", title.strip().strip(":#").strip()).lower()


def canonical_title(title: str) -> str | None:
    """The canonical name of a section title (``"HPI"`` -> ``"history of present illness"``),
    or None when the title is not a known clinical section name."""
    return _ALIASES.get(normalize_title(title))


def find_section(sections: Iterable[Mapping[str, str]] | None, *names: str) -> Mapping[str, str] | None:
    """The first section titled like one of ``names``; failing that, the first whose canonical
    name matches (``"HPI"`` finds "HISTORY OF PRESENT ILLNESS").

    ``find_section(row["sections"], "brief hospital course", "hospital course")``
    """
    sections = list(sections or ())
    exact = {normalize_title(n) for n in names}
    for section in sections:
        if normalize_title(section.get("title") or "") in exact:
            return section
    canonical = {c for n in names if (c := canonical_title(n))}
    for section in sections:
        if canonical_title(section.get("title") or "") in canonical:
            return section
    return None


def is_flattened(text: str) -> bool:
    """True for MTSamples-style text: headings like ``SUBJECTIVE:,`` and (almost) no line breaks."""
    if text.count("\n") >= 3:
        return False
    return _FLAT_HEADING.search(text) is not None or any(_is_upper(m.group(1)) for m in _FLAT_CAPS.finditer(text))


def unflatten_mtsamples(text: str) -> str:
    """Turn the MTSamples scrape's comma line-breaks back into lines.

    ``"SUBJECTIVE:,  This ... effectiveness.,MEDICATIONS: , Her only ..."`` ->
    ``"SUBJECTIVE:\\nThis ... effectiveness.\\nMEDICATIONS:\\nHer only ..."``
    """
    text = _FLAT_HEADING.sub(lambda m: f"\n{m.group(1).strip()}:\n", text)
    text = _FLAT_CAPS.sub(lambda m: f"\n{m.group(1).strip()}:\n" if _is_upper(m.group(1)) else m.group(0), text)
    text = _FLAT_BREAK.sub(r"\1\n", text)
    return "\n".join(line.strip() for line in text.split("\n")).strip()


def _mostly_upper(text: str) -> bool:
    letters = [c for c in text[:20000] if c.isalpha()]
    return len(letters) > 40 and sum(c.isupper() for c in letters) / len(letters) > 0.7


def _title_like(title: str) -> bool:
    """A short phrase whose words are capitalised (``Brief Hospital Course``, ``HPI``)."""
    words = title.split()
    if not words or len(words) > _MAX_TITLE_WORDS or sum(c.isalpha() for c in title) < 2:
        return False
    return all(w[0].isupper() or not w[0].isalpha() or w.lower() in _SMALL_WORDS for w in words)


def _is_upper(title: str) -> bool:
    return sum(c.isalpha() for c in title) >= 3 and title.upper() == title


def _heading(line: str, upper_note: bool) -> tuple[str, str] | None:
    """(title, rest of the line) when ``line`` opens a section, else None."""
    m = _MD_HEADING.match(line)
    if m:
        return m.group(2).strip(), ""
    m = _COLON_HEADING.match(line)
    if m:
        title, rest = m.group(1).strip(), m.group(2).strip()
        known = canonical_title(title) is not None
        if known and (_title_like(title) or _is_upper(title)):
            return title, rest
        if not rest and not upper_note and (_is_upper(title) or _title_like(title)) and len(title.split()) <= _MAX_TITLE_WORDS:
            return title, ""
        return None
    m = _CAPS_LINE.match(line)
    if m:
        title = m.group(1).strip().rstrip(",")
        if canonical_title(title) is not None:
            return title, ""
        if not upper_note and _is_upper(title) and len(title.split()) <= _MAX_TITLE_WORDS:
            return title, ""
    return None


def split_sections(text: str | None, style: Literal["auto", "lines", "mtsamples"] = "auto") -> list[dict[str, str]]:
    """Sections of a note as ``[{"title", "text"}]``; ``[]`` when the note has no headings.

    ``style="mtsamples"`` (or ``"auto"`` on flattened text) restores MTSamples' line breaks first.
    Sections whose text is empty (a heading directly followed by another) are left out.
    """
    if not text or not text.strip():
        return []
    if style == "mtsamples" or (style == "auto" and is_flattened(text)):
        text = unflatten_mtsamples(text)
    upper_note = _mostly_upper(text)
    sections: list[dict[str, str]] = []
    title, lines, found = "", [], False
    for line in text.splitlines():
        head = _heading(line, upper_note)
        # "OBJECTIVE:" then "Vitals: 130 lb" on the next line: a sub-heading opens the body.
        if head is None or (found and head[1] and not any(x.strip() for x in lines)):
            lines.append(line)
            continue
        found = True
        _close(sections, title, lines)
        title, rest = head
        lines = [rest] if rest else []
    _close(sections, title, lines)
    return sections if found else []


def _close(sections: list[dict[str, str]], title: str, lines: list[str]) -> None:
    body = "\n".join(lines).strip()
    if body:
        sections.append({"title": title, "text": body})
