"""``dialogue_transcripts``: speaker-tagged transcripts in a table (MTS-Dialog ``Doctor:`` /
``Patient:`` prefixes, ACI-Bench ``[doctor]`` / ``[patient]`` tags); the paired note is kept in
``sections`` so a task maker can build dialogue -> note examples."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from meddata.builders import source_io
from meddata.builders.dialogue.base import DialogueBuilder, DialogueParams
from meddata.builders.dialogue.shaping import merge_turns
from meddata.builders.dialogue.speakers import LabelSplitter, SpeakerMap, TranscriptError, parse_transcript
from meddata.builders.sections import split_sections

from meddata.registry import register
from meddata.steps import Drop, Quarantine


class TranscriptParams(DialogueParams):
    format: Literal["jsonl", "json", "csv", "tsv"] | None = None
    #: Longer transcripts are quarantined (a visit transcript runs to tens of thousands of characters).
    max_chars: int = 1_000_000
    style: Literal["auto", "colon", "bracket"] = "auto"
    #: Columns; None picks the first present of the usual names.
    dialogue_field: str | None = None
    id_field: str | None = None
    note_field: str | None = None
    note_title_field: str | None = None
    patient_id_field: str | None = None
    encounter_id_field: str | None = None


_AUTO_FIELDS = {
    "dialogue_field": ("dialogue", "conversation", "transcript", "dialog"),
    "id_field": ("ID", "id", "dialogue_id"),
    "note_field": ("section_text", "note", "summary"),
    "note_title_field": ("section_header",),
    "patient_id_field": ("patient_id", "subject_id"),
    "encounter_id_field": ("encounter_id", "hadm_id"),
}


@dataclass
class _Fields:
    dialogue: str
    id: str | None
    note: str | None
    note_title: str | None
    patient_id: str | None
    encounter_id: str | None


def _pick_fields(p: TranscriptParams, record: Mapping[str, Any]) -> _Fields | str:
    """The columns to use, from the params or the first record's keys; or an error message."""
    keys = {str(k).strip(): k for k in record}  # MTS-Dialog's test sets name a column "dialogue "

    def pick(param: str) -> Any:
        explicit = getattr(p, param)
        if explicit is not None:
            return keys.get(explicit.strip())
        return next((keys[c] for c in _AUTO_FIELDS[param] if c in keys), None)

    chosen = {param: pick(param) for param in _AUTO_FIELDS}
    missing = [getattr(p, param) for param in _AUTO_FIELDS if getattr(p, param) is not None and chosen[param] is None]
    if missing:
        return f"column(s) {', '.join(repr(m) for m in missing)} not in the header; skipped the file"
    if chosen["dialogue_field"] is None:
        looked = " / ".join(_AUTO_FIELDS["dialogue_field"])
        return f"no dialogue column (looked for {looked}; set dialogue_field); skipped the file"
    return _Fields(dialogue=chosen["dialogue_field"], id=chosen["id_field"], note=chosen["note_field"],
                   note_title=chosen["note_title_field"], patient_id=chosen["patient_id_field"],
                   encounter_id=chosen["encounter_id_field"])


@register
class DialogueTranscripts(DialogueBuilder):
    name = "dialogue_transcripts"
    description = ("Speaker-tagged transcripts in a CSV/JSONL table (MTS-Dialog 'Doctor:'/'Patient:', ACI-Bench "
                   "'[doctor]'/'[patient]') -> messages, with the paired note kept in sections.")
    Params = TranscriptParams
    output_columns = ("messages", "sections")
    default_patterns = ("*.csv", "*.csv.gz", "*.jsonl", "*.jsonl.gz", "*.json")

    def read_file(self, path: Path, display: str, source: str, scope: str,
                  speakers: SpeakerMap) -> Iterator[dict | Drop | Quarantine]:
        p: TranscriptParams = self.params
        labels = self._learn_labels(path, display, speakers) if p.style != "bracket" else None
        for item in source_io.iter_with_layout(path, display, p.format, p.encoding,
                                               lambda record: _pick_fields(p, record)):
            if isinstance(item, Quarantine):
                yield item
                continue
            fields, locator, record = item
            yield self._row(fields, record, speakers, source, scope, display, locator, labels)
        if labels is not None:
            self.stat_update("speaker_labels_mid_line", labels.splits)

    def _learn_labels(self, path: Path, display: str, speakers: SpeakerMap) -> LabelSplitter:
        """A first pass over the file: the speaker labels it writes at line starts."""
        p: TranscriptParams = self.params

        def texts() -> Iterator[str]:
            for item in source_io.iter_with_layout(path, display, p.format, p.encoding,
                                                   lambda record: _pick_fields(p, record)):
                if not isinstance(item, Quarantine) and isinstance(text := item[2].get(item[0].dialogue), str):
                    yield text

        return LabelSplitter.learn(texts(), speakers)

    def _row(self, f: _Fields, record: Mapping[str, Any], speakers: SpeakerMap, source: str, scope: str,
             display: str, locator: str, labels: LabelSplitter | None) -> dict | Drop | Quarantine:
        p: TranscriptParams = self.params
        text = record.get(f.dialogue)
        if text is None or not isinstance(text, str):
            return Quarantine(f"field '{f.dialogue.strip()}' is missing or not a string", display, locator)
        if len(text) > p.max_chars:
            return Quarantine(f"field '{f.dialogue.strip()}' is {len(text):,} characters, over max_chars "
                              f"({p.max_chars:,})", display, locator)
        try:
            msgs = merge_turns(parse_transcript(text, speakers, p.style, p.unknown_speakers, labels=labels),
                               p.merge_separator)
        except TranscriptError as exc:
            return Quarantine(f"field '{f.dialogue.strip()}': {exc}", display, locator)
        sections = None
        note = record.get(f.note) if f.note else None
        if isinstance(note, str) and note.strip():
            title = record.get(f.note_title) if f.note_title else None
            if title:
                sections = [{"title": str(title).strip(), "text": note.strip()}]
            else:
                sections = split_sections(note) or [{"title": "note", "text": note.strip()}]
        source_id = record.get(f.id) if f.id else None
        return self.row(msgs, source=source, file=display, locator=locator,
                            phi_status=p.phi_status, licence=p.licence, sections=sections,
                            row_id=f"{scope}:{source_id}" if source_id not in (None, "") else None,
                            patient_id=record.get(f.patient_id) if f.patient_id else None,
                            encounter_id=record.get(f.encounter_id) if f.encounter_id else None)

