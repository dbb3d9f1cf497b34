"""Clinical notes from EHR exports: MIMIC note tables, MTSamples, any note table, a folder of notes.

Every row is one note: ``text`` (the note), ``sections`` (see :mod:`meddata.builders.sections`)
and provenance in ``meta`` (file, line, patient and encounter ids when the source has them).
Rows start with ``meta.phi_status = raw``: notes are patient-derived until a de-identification
step says otherwise. ``meta.annotations`` holds only non-identifying labels (note category,
specialty); dates and names stay in the text, where de-identification can reach them.

FHIR bundles and Synthea CSV exports live in :mod:`meddata.builders.fhir` and
:mod:`meddata.builders.synthea_csv`; they share :func:`note_row` and the fact helpers here.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any, Literal

from meddata.builders import source_io
from meddata.builders.rows_out import checked_rows
from meddata.builders.sections import is_flattened, split_sections, unflatten_mtsamples
from pydantic import field_validator

from meddata.records import make_id, new_meta, new_row
from meddata.registry import register
from meddata.steps import Builder, Drop, Quarantine, StepContext

#: Ages at or above this are reported as this value (HIPAA Safe Harbor groups 90+).
MAX_REPORTED_AGE = 90
_BINARY = re.compile(r"[\x00-\x08\x0e-\x1f]")


def looks_binary(text: str) -> bool:
    """NUL and other control bytes in the first 4 KB: not a text note."""
    return _BINARY.search(text[:4096]) is not None


def note_row(builder: str, *, source: str, file: str, locator: str, text: str | None,
             phi_status: str = "raw", licence: str | None = None, patient_id: Any = None,
             encounter_id: Any = None, row_id: str | None = None,
             annotations: Mapping[str, Any] | None = None, section_style: str = "auto") -> dict | Drop:
    """One note as a canonical row, or a Drop when it has no text."""
    meta = new_meta(builder=builder, file=file, locator=locator, licence=licence, phi_status=phi_status,
                    patient_id=_blank_none(patient_id), encounter_id=_blank_none(encounter_id),
                    annotations={k: v for k, v in (annotations or {}).items() if v not in (None, "")})
    if text is None or not text.strip():
        return Drop({"id": row_id or make_id(source, f"{Path(file).name}:{locator}"), "source": source,
                     "meta": meta}, "empty_text")
    sections = split_sections(text, style=section_style)  # type: ignore[arg-type]
    return new_row(source=source, meta=meta, id=row_id, text=text, sections=sections or None)


def _blank_none(value: Any) -> str | None:
    if value is None:
        return None
    s = str(value).strip()
    return s or None


def parse_date(value: Any) -> date | None:
    """``2021-08-22T20:26:50-07:00`` / ``2021-08-22`` -> date; anything else -> None."""
    if not isinstance(value, str) or len(value) < 10:
        return None
    try:
        return date.fromisoformat(value[:10])
    except ValueError:
        return None


def days_between(earlier: date | None, later: date | None) -> int | None:
    return None if earlier is None or later is None else (later - earlier).days


def age_years(birth: date | None, at: date | None) -> int | None:
    """Age in whole years, capped at :data:`MAX_REPORTED_AGE`."""
    if birth is None or at is None:
        return None
    years = at.year - birth.year - ((at.month, at.day) < (birth.month, birth.day))
    return min(max(years, 0), MAX_REPORTED_AGE)


# -- note tables ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Layout:
    """Where a note table keeps each field (matched case-insensitively)."""

    name: str
    text: str
    id: str | None = None
    patient_id: str | None = None
    encounter_id: str | None = None
    #: source column -> key in meta.annotations (non-identifying labels only)
    labels: Mapping[str, str] = field(default_factory=dict)
    #: columns that must be present for the layout to apply
    required: tuple[str, ...] = ()


MIMIC3 = Layout("mimic3", text="TEXT", id="ROW_ID", patient_id="SUBJECT_ID", encounter_id="HADM_ID",
                labels={"CATEGORY": "category", "DESCRIPTION": "description"},
                required=("SUBJECT_ID", "HADM_ID", "CATEGORY", "TEXT"))
MIMIC4 = Layout("mimic4", text="text", id="note_id", patient_id="subject_id", encounter_id="hadm_id",
                labels={"note_type": "category"}, required=("note_id", "subject_id", "text"))
MTSAMPLES = Layout("mtsamples", text="transcription", id="note_id",
                   labels={"medical_specialty": "specialty", "sample_name": "sample_name", "keywords": "keywords"},
                   required=("transcription",))


def _lookup(record: Mapping[str, Any], column: str | None) -> Any:
    """A field by name, case-insensitively (MIMIC-III upper-case, MIMIC-IV lower-case)."""
    if column is None:
        return None
    if column in record:
        return record[column]
    low = column.lower()
    for key, value in record.items():
        if str(key).lower() == low:
            return value
    return None


def _has(record: Mapping[str, Any], column: str) -> bool:
    return column in record or column.lower() in {str(k).lower() for k in record}


class NoteTableParams(source_io.SourceParams):
    format: Literal["jsonl", "json", "csv", "tsv"] | None = None
    phi_status: source_io.PhiStatus = "raw"
    section_style: Literal["auto", "lines", "mtsamples"] = "auto"
    #: Longer notes are quarantined: the longest real discharge summaries are ~100k characters.
    max_note_chars: int = 1_000_000


class _NoteTableBuilder(Builder):
    """Shared reader: stream records, check the layout on the first one, emit note rows."""

    output_columns = ("text", "sections")
    default_patterns: tuple[str, ...] = ("*.csv", "*.csv.gz", "*.jsonl", "*.jsonl.gz", "*.json")
    def independent_files(self, ctx: StepContext) -> list[Path]:
        """Each table picks its layout from its own header, with ids scoped by the file's name."""
        return source_io.if_names_distinct(source_io.input_files(self.params, self.default_patterns))

    def layouts(self) -> tuple[Layout, ...]:
        raise NotImplementedError

    @checked_rows
    def read(self, ctx: StepContext) -> Iterator[dict | Drop | Quarantine]:
        p: NoteTableParams = self.params
        source = source_io.source_name(p, self.default_source())
        for path in source_io.input_files(p, self.default_patterns, ctx.files):
            display = ctx.display_path(path)
            scope = source_io.id_scope(p, path, source)
            for item in source_io.iter_with_layout(path, display, p.format, p.encoding, self._pick_layout):
                if isinstance(item, Quarantine):
                    yield item
                    continue
                layout, locator, record = item
                yield self.row(layout, record, source, scope, display, locator)

    def default_source(self) -> str | None:
        return None

    def _pick_layout(self, record: Mapping[str, Any]) -> Layout | str:
        """The first layout whose required columns the record has, else the error naming them all."""
        for layout in self.layouts():
            if all(_has(record, c) for c in layout.required):
                return layout
        wanted = "; ".join(f"{lay.name}: {', '.join(lay.required)}" for lay in self.layouts())
        return f"the header lacks the required column(s) ({wanted}); skipped the file"

    def accept(self, layout: Layout, record: Mapping[str, Any]) -> str | None:
        """A drop reason for records to leave out on purpose, else None."""
        return None

    def row(self, layout: Layout, record: Mapping[str, Any], source: str, scope: str, display: str,
            locator: str) -> dict | Drop | Quarantine:
        p: NoteTableParams = self.params
        text = _lookup(record, layout.text)
        if text is not None and not isinstance(text, str):
            return Quarantine(f"field '{layout.text}' must be a string, got {type(text).__name__}", display, locator)
        if text and looks_binary(text):
            return Quarantine(f"field '{layout.text}' holds binary control characters", display, locator)
        if text and len(text) > p.max_note_chars:
            return Quarantine(f"field '{layout.text}' is {len(text):,} characters, over max_note_chars "
                              f"({p.max_note_chars:,})", display, locator)
        source_id = _blank_none(_lookup(record, layout.id))
        reason = self.accept(layout, record)
        out = note_row(
            self.name, source=source, file=display, locator=locator,
            text=None if reason else self.prepare(text),  # a note left out is not split into sections
            phi_status=p.phi_status, licence=p.licence, patient_id=_lookup(record, layout.patient_id),
            encounter_id=_lookup(record, layout.encounter_id),
            row_id=f"{scope}:{source_id}" if source_id else None,
            annotations={key: _lookup(record, col) for col, key in layout.labels.items()},
            section_style=p.section_style,
        )
        if reason:
            assert isinstance(out, Drop)
            return Drop(out.row, reason)
        if isinstance(out, dict):
            self.stat_update("notes_with_sections" if out["sections"] else "notes_without_sections")
        return out

    def prepare(self, text: str | None) -> str | None:
        return text


class MimicParams(NoteTableParams):
    #: ``auto`` tells MIMIC-III (upper-case columns) from MIMIC-IV-Note by the header.
    layout: Literal["auto", "mimic3", "mimic4"] = "auto"
    #: Keep only these note categories (MIMIC-III CATEGORY / MIMIC-IV note_type), case-insensitive.
    categories: list[str] | None = None
    #: MIMIC-III marks notes a physician flagged as wrong with ISERROR=1; they are dropped.
    drop_errors: bool = True


@register
class MimicNotes(_NoteTableBuilder):
    name = "mimic_notes"
    description = ("MIMIC-III NOTEEVENTS or MIMIC-IV-Note tables (CSV, optionally .gz): one row per note, "
                   "with sections and subject/admission ids.")
    Params = MimicParams

    def default_source(self) -> str:
        return "mimic"

    def layouts(self) -> tuple[Layout, ...]:
        choice = self.params.layout
        return {"auto": (MIMIC3, MIMIC4), "mimic3": (MIMIC3,), "mimic4": (MIMIC4,)}[choice]

    def accept(self, layout: Layout, record: Mapping[str, Any]) -> str | None:
        p: MimicParams = self.params
        if p.drop_errors and str(_lookup(record, "ISERROR") or "").strip() == "1":
            return "marked_error"
        if p.categories:
            category = str(_lookup(record, "CATEGORY" if layout is MIMIC3 else "note_type") or "")
            if category.strip().lower() not in {c.lower() for c in p.categories}:
                return "category_not_selected"
        return None


class MtSamplesParams(NoteTableParams):
    #: Restore the line breaks the Kaggle scrape turned into commas (``SUBJECTIVE:,`` ...).
    unflatten: bool = True


@register
class MtSamples(_NoteTableBuilder):
    name = "mtsamples"
    description = ("MTSamples transcriptions (JSONL or the Kaggle CSV): one row per note with sections "
                   "and specialty labels; phi_status raw by default.")
    Params = MtSamplesParams
    default_patterns = ("*.jsonl", "*.jsonl.gz", "*.csv", "*.csv.gz")

    def default_source(self) -> str:
        return "mtsamples"

    def layouts(self) -> tuple[Layout, ...]:
        return (MTSAMPLES,)

    def prepare(self, text: str | None) -> str | None:
        if text and self.params.unflatten and is_flattened(text):
            return unflatten_mtsamples(text)
        return text


class NoteTableFieldsParams(NoteTableParams):
    #: ``{text: <column>}`` plus optional ``id``, ``patient_id``, ``encounter_id`` columns.
    fields: dict[str, str]
    #: Columns copied into meta.annotations (non-identifying labels such as a note type).
    labels: list[str] = []

    @field_validator("fields")
    @classmethod
    def _fields(cls, v: dict[str, str]) -> dict[str, str]:
        allowed = {"text", "id", "patient_id", "encounter_id"}
        if "text" not in v:
            raise ValueError("map the note column: fields: {text: <column>}")
        if set(v) - allowed:
            raise ValueError(f"unknown field(s) {sorted(set(v) - allowed)}; allowed: {sorted(allowed)}")
        return v


@register
class NoteTable(_NoteTableBuilder):
    name = "note_table"
    description = "Any JSONL/JSON/CSV table of notes with a field map (text, id, patient_id, encounter_id)."
    Params = NoteTableFieldsParams

    def layouts(self) -> tuple[Layout, ...]:
        f = self.params.fields
        return (Layout("fields", text=f["text"], id=f.get("id"), patient_id=f.get("patient_id"),
                       encounter_id=f.get("encounter_id"), labels={c: c for c in self.params.labels},
                       required=tuple(f.values())),)


# -- a folder of plain-text notes -------------------------------------------------------------------


class NoteFolderParams(source_io.SourceParams):
    phi_status: source_io.PhiStatus = "raw"
    #: Regex over the file's path relative to ``path`` with named groups ``patient_id``,
    #: ``encounter_id`` and/or ``note_id``, e.g. ``(?P<patient_id>\\d+)/(?P<note_id>[^/]+)\\.txt``.
    id_pattern: str | None = None
    #: Notes larger than this are quarantined unread (a 10 MB "note" is not a note).
    max_bytes: int = 4 * 1024 * 1024
    section_style: Literal["auto", "lines", "mtsamples"] = "auto"

    @field_validator("id_pattern")
    @classmethod
    def _pattern(cls, v: str | None) -> str | None:
        if v is not None:
            try:
                groups = set(re.compile(v).groupindex)
            except re.error as exc:
                raise ValueError(f"not a valid regular expression: {exc}") from None
            if not groups & {"patient_id", "encounter_id", "note_id"}:
                raise ValueError("needs a named group: (?P<patient_id>...), (?P<encounter_id>...) or (?P<note_id>...)")
        return v


@register
class NoteFolder(Builder):
    name = "note_folder"
    description = "A folder of plain-text notes (one note per .txt file); ids from the file path by regex."
    Params = NoteFolderParams
    output_columns = ("text", "sections")
    patterns = ("*.txt", "*.txt.gz")

    def independent_files(self, ctx: StepContext) -> list[Path]:
        """Every file is one note, its id made from its path under ``path``: no two files share
        an id, unless ``id_pattern`` takes a ``note_id`` from the path (ids the data may repeat)."""
        p: NoteFolderParams = self.params
        if p.id_pattern and "note_id" in re.compile(p.id_pattern).groupindex:
            return []
        return source_io.input_files(p, self.patterns)

    @checked_rows
    def read(self, ctx: StepContext) -> Iterator[dict | Drop | Quarantine]:
        p: NoteFolderParams = self.params
        root = Path(p.path)
        source = source_io.source_name(p)
        pattern = re.compile(p.id_pattern) if p.id_pattern else None
        for path in source_io.input_files(p, self.patterns, ctx.files):
            display = ctx.display_path(path)
            rel = path.name if root.is_file() else path.relative_to(root).as_posix()
            text = source_io.read_document(path, display, p.encoding, p.max_bytes)
            if isinstance(text, Quarantine):
                yield text
                continue
            if looks_binary(text):
                yield Quarantine("binary content (control characters) in a text note", display, "file")
                continue
            if re.match(r"\s*(\{\s*\"|\[\s*[\[{\"])", text):
                yield Quarantine("file holds JSON, not a plain-text note (read JSON notes with note_table)",
                                 display, "file")
                continue
            ids = {}
            if pattern is not None:
                m = pattern.search(rel)
                if m is None:
                    self.stat_update("id_pattern_unmatched")
                ids = m.groupdict() if m else {}
            note_id = ids.get("note_id")
            yield note_row(self.name, source=source, file=display, locator=rel, text=text,
                           phi_status=p.phi_status, licence=p.licence, patient_id=ids.get("patient_id"),
                           encounter_id=ids.get("encounter_id"),
                           row_id=f"{source}:{note_id}" if note_id else None, section_style=p.section_style)
