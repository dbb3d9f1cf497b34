"""PHI spans and the rules for merging spans found by different detectors.

A span is a half-open character range ``[start, end)`` into the original text with one of
:data:`PHI_TYPES`. Detectors overlap (a rule and spaCy both see a name); merging keeps the
union of characters, because for de-identification a character flagged by anyone is PHI.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

#: The Safe Harbor identifiers grouped into the types meddata reports and replaces.
PHI_TYPES: tuple[str, ...] = (
    "NAME",       # patients, relatives, clinicians, initials
    "LOCATION",   # street addresses, cities and towns, ZIP codes, other sub-state units
    "HOSPITAL",   # hospitals, clinics and other care facilities
    "DATE",       # every date element except a bare year is kept only when asked
    "AGE",        # ages (over 89 always; all ages unless detection is told otherwise)
    "PHONE",      # telephone, fax, pager numbers and extensions
    "EMAIL",
    "SSN",
    "MRN",        # medical record numbers
    "ID",         # health plan, account, licence, certificate, vehicle, device and other numbers
    "URL",
    "IP",
    "BIOMETRIC",  # finger/voice prints, full-face photographs and comparable images
)

# When spans of different types overlap, the merged span takes the type of the most certain
# evidence (a pattern or cue beats a dictionary hit beats a model guess), then the type ranked
# first here: structured identifiers are more certain than names and places.
_PRIORITY = {t: i for i, t in enumerate(
    ("EMAIL", "URL", "IP", "SSN", "PHONE", "DATE", "MRN", "ID", "BIOMETRIC", "AGE", "HOSPITAL", "NAME", "LOCATION")
)}
_SOURCE_RANK = {"rule": 0, "cue": 1, "dict": 2, "spacy": 3, "model": 3, "propagate": 4}


@dataclass(frozen=True, slots=True)
class Span:
    start: int
    end: int
    type: str
    source: str = "rule"  # rule | dict | cue | spacy | propagate (never the text itself)

    def __len__(self) -> int:
        return self.end - self.start

    def as_dict(self) -> dict[str, int | str]:
        return {"start": self.start, "end": self.end, "type": self.type}


def merge_spans(spans: Iterable[Span], text: str | None = None) -> list[Span]:
    """Union overlapping spans (and spans separated only by a space, comma or hyphen of the
    same type run, e.g. ``Springfield`` + ``, MA``), keeping the highest-priority type."""
    ordered = sorted(spans, key=lambda s: (s.start, -s.end))
    out: list[Span] = []
    for s in ordered:
        if s.end <= s.start:
            continue
        if out:
            last = out[-1]
            touching = s.start <= last.end
            if not touching and text is not None and s.type == last.type and s.start - last.end <= 2:
                gap = text[last.end:s.start]
                touching = gap.strip(" ,-") == "" and "\n" not in gap
            if touching:
                best = min((last, s), key=lambda x: (_SOURCE_RANK.get(x.source, 9), _PRIORITY.get(x.type, 99), -len(x)))
                pair = {last.type: last, s.type: s}
                if set(pair) == {"LOCATION", "HOSPITAL"} and pair["LOCATION"].source != "rule":
                    best = pair["HOSPITAL"]  # "transferred from Lowell General": a facility
                out[-1] = Span(last.start, max(last.end, s.end), best.type, best.source)
                continue
        out.append(s)
    return out


def subtract(spans: Iterable[Span], covered: list[Span]) -> list[Span]:
    """Spans that do not overlap any span in ``covered`` (sorted, merged)."""
    import bisect

    starts = [c.start for c in covered]
    keep = []
    for s in spans:
        i = bisect.bisect_right(starts, s.start)
        hit = (i > 0 and covered[i - 1].end > s.start) or (i < len(covered) and covered[i].start < s.end)
        if not hit:
            keep.append(s)
    return keep
