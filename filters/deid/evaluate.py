"""Scoring PHI detection against gold spans: recall, precision and F2, lenient and strict.

* **lenient** – a gold span counts as found when any predicted span overlaps it; a predicted
  span counts as correct when it overlaps any gold span.
* **strict** – a gold span counts as found only when every letter and digit of it is covered
  by predicted spans (full coverage, the de-identification requirement); a predicted span
  counts as correct only when all its letters and digits lie inside gold spans.

The overall score is binary ("is this PHI?"): types do not have to agree. Per-type recall is
by gold type, per-type precision by predicted type. F2 weighs recall four times precision.

Gold sets label types their own way; :data:`GOLD_TYPE_MAP` maps them to meddata's types.
Types mapped to ``None`` are outside Safe Harbor (organisations other than care
facilities, job titles, nationalities, ages of 89 and under in general-domain data): they
are *ignored* — neither required nor penalised.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

GOLD_TYPE_MAP: dict[str, str | None] = {
    # meddata's own types (clinical_gold.jsonl)
    **{t: t for t in ("NAME", "LOCATION", "HOSPITAL", "DATE", "AGE", "PHONE", "EMAIL", "SSN", "MRN", "ID", "URL",
                      "IP", "BIOMETRIC")},
    # asq-phi (JamesWeatherhead/asq-phi)
    "GEOGRAPHIC_LOCATION": "LOCATION", "MEDICAL_RECORD_NUMBER": "MRN", "HEALTH_PLAN_BENEFICIARY_NUMBER": "ID",
    "PHONE_NUMBER": "PHONE", "FAX_NUMBER": "PHONE", "SOCIAL_SECURITY_NUMBER": "SSN", "EMAIL_ADDRESS": "EMAIL",
    "UNIQUE_IDENTIFIER": "ID", "ACCOUNT_NUMBER": "ID", "CERTIFICATE_LICENSE_NUMBER": "ID", "IP_ADDRESS": "IP",
    "VEHICLE_IDENTIFIER": "ID", "DEVICE_IDENTIFIER": "ID", "URL": "URL", "BIOMETRIC_IDENTIFIER": "BIOMETRIC",
    # presidio-research synthetic data
    "PERSON": "NAME", "STREET_ADDRESS": "LOCATION", "GPE": "LOCATION", "ZIP_CODE": "LOCATION",
    "DATE_TIME": "DATE", "CREDIT_CARD": "ID", "IBAN_CODE": "ID", "US_SSN": "SSN", "US_DRIVER_LICENSE": "ID",
    "DOMAIN_NAME": "URL", "ORGANIZATION": None, "TITLE": None, "NRP": None,
    # AGE is handled by value: over 89 is PHI, younger ages are ignored (see map_gold_type)
}


def map_gold_type(label: str, value: str = "", *, ages: str = "over_89") -> str | None:
    """meddata type for a gold label (None: ignored). Unknown labels raise KeyError."""
    if label == "AGE" and ages == "over_89":
        digits = "".join(c for c in value if c.isdigit())
        return "AGE" if digits and int(digits) > 89 else None
    if label not in GOLD_TYPE_MAP:
        raise KeyError(f"gold type {label!r} has no mapping; known: {', '.join(sorted(GOLD_TYPE_MAP))}")
    return GOLD_TYPE_MAP[label]


@dataclass
class Counts:
    gold: int = 0
    found_lenient: int = 0
    found_strict: int = 0
    pred: int = 0
    correct_lenient: int = 0
    correct_strict: int = 0

    def add(self, other: Counts) -> None:
        for k in self.__dataclass_fields__:
            setattr(self, k, getattr(self, k) + getattr(other, k))


def _ratio(a: int, b: int) -> float:
    return a / b if b else 1.0


def f_beta(p: float, r: float, beta: float = 2.0) -> float:
    b2 = beta * beta
    return (1 + b2) * p * r / (b2 * p + r) if (p + r) else 0.0


@dataclass
class Report:
    overall: Counts = field(default_factory=Counts)
    recall_by_type: dict[str, Counts] = field(default_factory=lambda: defaultdict(Counts))
    precision_by_type: dict[str, Counts] = field(default_factory=lambda: defaultdict(Counts))
    documents: int = 0
    missed: list[tuple[str, int, int, str]] = field(default_factory=list)      # (doc id, start, end, type)
    false_positives: list[tuple[str, int, int, str]] = field(default_factory=list)

    def metrics(self, mode: str = "lenient") -> dict[str, float]:
        c = self.overall
        r = _ratio(getattr(c, f"found_{mode}"), c.gold)
        p = _ratio(getattr(c, f"correct_{mode}"), c.pred)
        return {"recall": r, "precision": p, "f2": f_beta(p, r)}

    def as_dict(self) -> dict:
        out = {"documents": self.documents, "gold_spans": self.overall.gold, "predicted_spans": self.overall.pred}
        for mode in ("lenient", "strict"):
            out[mode] = self.metrics(mode)
            out[mode]["by_type"] = {
                t: {"recall": _ratio(getattr(self.recall_by_type[t], f"found_{mode}"), self.recall_by_type[t].gold)
                    if t in self.recall_by_type else None,
                    "precision": _ratio(getattr(self.precision_by_type[t], f"correct_{mode}"),
                                        self.precision_by_type[t].pred) if t in self.precision_by_type else None,
                    "gold": self.recall_by_type[t].gold if t in self.recall_by_type else 0,
                    "predicted": self.precision_by_type[t].pred if t in self.precision_by_type else 0}
                for t in sorted(set(self.recall_by_type) | set(self.precision_by_type))
            }
        return out

    def format(self) -> str:
        d = self.as_dict()
        lines = [f"documents {d['documents']}, gold spans {d['gold_spans']}, predicted spans {d['predicted_spans']}",
                 f"{'':<12}{'recall':>8}{'precision':>11}{'F2':>8}   (strict: recall precision F2)"]
        L, S = d["lenient"], d["strict"]
        lines.append(f"{'overall':<12}{L['recall']:>8.3f}{L['precision']:>11.3f}{L['f2']:>8.3f}   "
                     f"({S['recall']:.3f} {S['precision']:.3f} {S['f2']:.3f})")
        for t, v in L["by_type"].items():
            s = S["by_type"][t]
            r = "-" if v["recall"] is None else f"{v['recall']:.3f}"
            p = "-" if v["precision"] is None else f"{v['precision']:.3f}"
            sr = "-" if s["recall"] is None else f"{s['recall']:.3f}"
            sp = "-" if s["precision"] is None else f"{s['precision']:.3f}"
            lines.append(f"{t:<12}{r:>8}{p:>11}{'':>8}   ({sr} {sp})  gold {v['gold']}, predicted {v['predicted']}")
        return "\n".join(lines)


def _covered(mask: bytearray, start: int, end: int, text: str) -> tuple[bool, bool]:
    """(any character covered, every letter/digit covered) for text[start:end]."""
    any_hit, all_hit = False, True
    for i in range(start, end):
        if mask[i]:
            any_hit = True
        elif text[i].isalnum():
            all_hit = False
    return any_hit, all_hit


def score_document(doc_id: str, text: str, gold: Sequence[Mapping], pred: Sequence[Mapping], report: Report) -> None:
    """Add one document to ``report``. Gold spans with ``type`` None are ignore regions."""
    n = len(text)
    pred_mask = bytearray(n + 1)
    for p in pred:
        pred_mask[max(0, p["start"]):min(n, p["end"])] = b"\x01" * (min(n, p["end"]) - max(0, p["start"]))
    gold_mask = bytearray(n + 1)
    for g in gold:
        gold_mask[g["start"]:g["end"]] = b"\x01" * (g["end"] - g["start"])
    report.documents += 1
    # Gold spans against the predictions (recall, misses), then predictions against the gold
    # (precision, false positives): one walk, two directions.
    recall = ([g for g in gold if g["type"] is not None], pred_mask, report.recall_by_type, report.missed,
              lambda lenient, strict: Counts(gold=1, found_lenient=lenient, found_strict=strict))
    precision = (pred, gold_mask, report.precision_by_type, report.false_positives,
                 lambda lenient, strict: Counts(pred=1, correct_lenient=lenient, correct_strict=strict))
    for spans, other, by_type, misses, counts in (recall, precision):
        for span in spans:
            lenient, strict = _covered(other, span["start"], span["end"], text)
            c = counts(int(lenient), int(strict))
            report.overall.add(c)
            by_type[span["type"]].add(c)
            if not lenient:
                misses.append((doc_id, span["start"], span["end"], span["type"]))


def evaluate(gold_rows: Iterable[Mapping], predictions: Mapping[str, Sequence[Mapping]]) -> Report:
    """Score predictions (``{id: [spans]}``) against gold rows ``{id, text, spans}``.
    A gold document without predictions counts as predicting nothing."""
    report = Report()
    for row in gold_rows:
        doc_id = str(row["id"])
        score_document(doc_id, row["text"], row["spans"], predictions.get(doc_id, []), report)
    return report


def json_lines(path: str | Path, error: Callable[[str], Exception] = ValueError) -> Iterator[tuple[int, Any]]:
    """``(line number, value)`` for the non-blank lines of a JSONL file. A line that is not JSON
    raises ``error`` naming the file and the line, never its content (it may hold PHI); so does a
    file with no rows at all, which would otherwise score or detect nothing and look like success."""
    seen = False
    with Path(path).open(encoding="utf-8") as fh:
        for n, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except json.JSONDecodeError as exc:
                raise error(f"{path}:{n}: not valid JSON ({exc.msg})") from None
            seen = True
            yield n, value
    if not seen:
        raise error(f"{path}: no rows (the file is empty); expected one JSON object per line")


def load_gold(path: str | Path, *, ages: str = "all") -> list[dict]:
    """Gold rows ``{id, text, spans: [{start, end, type}]}``; types mapped with
    :func:`map_gold_type`. ``ages="over_89"`` ignores gold ages of 89 and under (for
    general-domain sets that label every age). Raises ValueError naming the file, line and
    field on bad rows."""
    rows = []
    path = Path(path)
    for n, row in json_lines(path):
        for key in ("id", "text", "spans"):
            if key not in row:
                raise ValueError(f"{path}:{n}: field '{key}' is missing")
        if not isinstance(row["text"], str):
            raise ValueError(f"{path}:{n}: field 'text' must be a string")
        spans = []
        for k, s in enumerate(row["spans"]):
            try:
                start, end, label = int(s["start"]), int(s["end"]), str(s["type"])
            except (KeyError, TypeError, ValueError):
                raise ValueError(f"{path}:{n}: field 'spans[{k}]' needs integer start, end and a type") from None
            if not 0 <= start < end <= len(row["text"]):
                raise ValueError(f"{path}:{n}: field 'spans[{k}]' is outside the text")
            try:
                typ = map_gold_type(label, row["text"][start:end], ages=ages)
            except KeyError as exc:
                raise ValueError(f"{path}:{n}: field 'spans[{k}].type': {exc.args[0]}") from None
            spans.append({"start": start, "end": end, "type": typ})
        rows.append({"id": str(row["id"]), "text": row["text"], "spans": spans})
    return rows
