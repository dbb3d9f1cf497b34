"""``sharegpt``: ShareGPT JSON / JSONL (``conversations`` of ``{from, value}``), JSON arrays streamed."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Literal

from meddata.builders import source_io
from meddata.builders.dialogue.base import DialogueBuilder, DialogueParams
from meddata.builders.dialogue.shaping import merge_turns
from meddata.builders.dialogue.speakers import SpeakerMap

from meddata.registry import register
from meddata.steps import Drop, Quarantine


class ShareGptParams(DialogueParams):
    format: Literal["json", "jsonl"] | None = None
    conversations_field: str = "conversations"
    speaker_key: str = "from"
    text_key: str = "value"
    id_field: str = "id"


@register
class ShareGpt(DialogueBuilder):
    name = "sharegpt"
    description = "ShareGPT JSON/JSONL ('conversations' of {from, value}) -> messages; JSON arrays are streamed."
    Params = ShareGptParams
    output_columns = ("messages",)
    default_patterns = ("*.json", "*.json.gz", "*.jsonl", "*.jsonl.gz")

    def read_file(self, path: Path, display: str, source: str, scope: str,
                  speakers: SpeakerMap) -> Iterator[dict | Drop | Quarantine]:
        p: ShareGptParams = self.params
        for item in source_io.iter_records(path, display, p.format, p.encoding):
            if isinstance(item, Quarantine):
                yield item
                continue
            locator, record = item
            yield self._row(record, speakers, source, scope, display, locator)

    def _row(self, record: Mapping[str, Any], speakers: SpeakerMap, source: str, scope: str, display: str,
             locator: str) -> dict | Drop | Quarantine:
        p: ShareGptParams = self.params
        conv = record.get(p.conversations_field)
        if not isinstance(conv, list):
            return Quarantine(f"field '{p.conversations_field}' is missing or not a list", display, locator)
        turns = []
        for i, turn in enumerate(conv):
            where = f"{p.conversations_field}[{i}]"
            label = turn.get(p.speaker_key) if isinstance(turn, Mapping) else None
            text = turn.get(p.text_key) if isinstance(turn, Mapping) else None
            if not isinstance(label, str) or not isinstance(text, (str, type(None))):
                return Quarantine(f"field '{where}' must be an object with string '{p.speaker_key}' and "
                                  f"'{p.text_key}'", display, locator)
            role = speakers.resolve(label)
            if role is None:
                if p.unknown_speakers == "quarantine":
                    return Quarantine(f"field '{where}.{p.speaker_key}' is an unknown speaker (add it to "
                                      "'speakers', or set 'unknown_speakers')", display, locator)
                role = p.unknown_speakers
            turns.append((role, text or ""))
        source_id = record.get(p.id_field)
        return self.row(merge_turns(turns, p.merge_separator), source=source, file=display,
                            locator=locator, phi_status=p.phi_status, licence=p.licence,
                            row_id=f"{scope}:{source_id}" if isinstance(source_id, (str, int)) and source_id != ""
                            else None)
