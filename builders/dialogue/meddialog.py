"""``meddialog``: the MedDialog English text files (``id=N``, URL line, ``Description``,
``Dialogue``, ``Patient:`` / ``Doctor:`` blocks); the description is kept as a section."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from meddata.builders import source_io
from meddata.builders.dialogue.base import DialogueBuilder, DialogueParams
from meddata.builders.dialogue.shaping import merge_turns
from meddata.builders.dialogue.speakers import SpeakerMap, TranscriptError, parse_transcript

from meddata import io
from meddata.registry import register
from meddata.steps import Drop, Quarantine


class MedDialogParams(DialogueParams):
    #: A record longer than this many characters is quarantined (a runaway record, not a dialogue).
    max_record_chars: int = 1_000_000


_ID_LINE = re.compile(r"^id\s*=\s*(\d+)\s*$")


@dataclass
class _MedDialogRecord:
    dialogue_id: str
    line: int
    url: str | None = None
    part: str = "header"  # header -> description -> dialogue
    description: list[str] | None = None
    dialogue: list[str] | None = None
    dialogue_line: int = 0
    chars: int = 0
    damaged: str | None = None


@register
class MedDialog(DialogueBuilder):
    name = "meddialog"
    description = ("MedDialog English text files (id=N, URL, Description, Dialogue with Patient:/Doctor: blocks) "
                   "-> messages, the description kept as a section.")
    Params = MedDialogParams
    output_columns = ("messages", "sections")
    default_patterns = ("*.txt", "*.txt.gz")
    default_source = "meddialog"

    def read_file(self, path: Path, display: str, source: str, scope: str,
                  speakers: SpeakerMap) -> Iterator[dict | Drop | Quarantine]:
        if (q := source_io.empty_file(path, display)) is not None:
            yield q
            return
        p: MedDialogParams = self.params
        rec: _MedDialogRecord | None = None
        stray_line: int | None = None
        for item in io.iter_lines(path, p.encoding):
            if isinstance(item, Quarantine):
                yield Quarantine(item.error, display, item.locator)
                if rec is not None:
                    rec.damaged = "the record has a line that could not be read (see the entry before)"
                continue
            n, line = item
            m = _ID_LINE.match(line)
            if m:
                if rec is not None:
                    yield self._finish(rec, source, scope, display, speakers)
                rec = _MedDialogRecord(m.group(1), n)
                continue
            if rec is None:
                if line.strip() and stray_line is None:
                    stray_line = n
                continue
            self._add(rec, n, line)
        if stray_line is not None:
            yield Quarantine("text before the first 'id=' line (not a MedDialog record)", display, f"line {stray_line}")
        if rec is not None:
            yield self._finish(rec, source, scope, display, speakers)
        elif stray_line is None:
            yield Quarantine("no MedDialog records (no 'id=N' lines)", display, "file")

    def _add(self, rec: _MedDialogRecord, n: int, line: str) -> None:
        rec.chars += len(line) + 1
        if rec.chars > self.params.max_record_chars:
            rec.damaged = f"record is over the {self.params.max_record_chars:,}-character limit"
            rec.description = rec.dialogue = None
            return
        stripped = line.strip()
        if rec.part == "header" and stripped.startswith(("http://", "https://")) and rec.url is None:
            rec.url = stripped
        elif rec.part in ("header", "description") and stripped == "Description":
            rec.part, rec.description = "description", []
        elif rec.part in ("header", "description") and stripped == "Dialogue":
            rec.part, rec.dialogue, rec.dialogue_line = "dialogue", [], n + 1
        elif rec.part == "description" and rec.description is not None:
            rec.description.append(line)
        elif rec.part == "dialogue" and rec.dialogue is not None:
            rec.dialogue.append(line)

    def _finish(self, rec: _MedDialogRecord, source: str, scope: str, display: str, speakers: SpeakerMap):
        p: MedDialogParams = self.params
        locator = f"line {rec.line}"
        if rec.damaged:
            return Quarantine(f"record id={rec.dialogue_id}: {rec.damaged}", display, locator)
        if rec.dialogue is None:
            return Quarantine(f"record id={rec.dialogue_id} has no 'Dialogue' block", display, locator)
        try:
            turns = parse_transcript("\n".join(rec.dialogue), speakers, "colon", p.unknown_speakers,
                                     known_only=True, first_line=rec.dialogue_line)
        except TranscriptError as exc:
            return Quarantine(f"record id={rec.dialogue_id}, 'Dialogue' block: {exc}", display, locator)
        msgs = merge_turns(turns, p.merge_separator)
        description = "\n".join(rec.description or []).strip()
        site = re.match(r"https?://(?:www\.)?([^/]+)", rec.url or "")
        return self.row(msgs, source=source, file=display, locator=locator, phi_status=p.phi_status,
                            licence=p.licence, row_id=f"{scope}:{site.group(1) if site else 'x'}:{rec.dialogue_id}",
                            sections=[{"title": "Description", "text": description}] if description else None,
                            annotations={"site": site.group(1)} if site else None)

