"""Doctor-patient dialogues -> TRL conversational rows (``messages``).

Shapes read:

* ``dialogue_transcripts`` – a CSV/JSONL/JSON table with a transcript column, speakers as
  ``Doctor:`` / ``Patient:`` line prefixes (MTS-Dialog) or ``[doctor]`` / ``[patient]`` tags
  (ACI-Bench). A paired note (MTS-Dialog ``section_header`` + ``section_text``, ACI-Bench
  ``note``) is kept in ``sections``, so a task maker can build dialogue -> note examples.
* ``meddialog`` – the MedDialog English text files (``id=N``, URL line, ``Description``,
  ``Dialogue``, ``Patient:`` / ``Doctor:`` blocks); the description is kept as a section.
* ``sharegpt`` – ShareGPT JSON / JSONL (``conversations`` of ``{from, value}``), streamed.

Speakers map to TRL roles with ``speakers`` (defaults: the doctor -> assistant; patient,
family, a guest clinician or nurse talking to the doctor -> user; human -> user, gpt -> assistant), merged over the defaults; a speaker
may also map to ``drop``. Labels are matched case-insensitively, with numbering stripped
(``Doctor_2``, ``Guest_family_1``) and, with ``fuzzy_speakers``, typos forgiven
(``Docotr``). A turn written on the line of the one before ("... fine - Guest_family_1: He
...") is split off: each file's label set is learned from its line starts first
(:class:`LabelSplitter`; counted as ``speaker_labels_mid_line``). Consecutive turns with the same role merge; empty turns drop. A dialogue with an
unknown speaker is quarantined by default (``unknown_speakers``), because guessing a role
would teach the model to speak for the wrong side. Error messages never quote a speaker
label or any text: labels can be names.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

from meddata.builders import source_io
from meddata.builders.rows_out import checked_rows
from meddata.builders.sections import split_sections

from meddata import io
from meddata.records import make_id, messages, new_meta, new_row
from meddata.registry import register
from meddata.steps import Builder, Drop, Quarantine, StepContext

Role = Literal["user", "assistant", "system", "drop"]
UnknownPolicy = Literal["quarantine", "user", "assistant", "drop"]

# The model learns to speak as the doctor; everyone else in the room talks to it.
DEFAULT_SPEAKERS: dict[str, str] = {
    "doctor": "assistant", "dr": "assistant", "physician": "assistant", "clinician": "assistant",
    "provider": "assistant", "guest_clinician": "user", "nurse": "user",
    "patient": "user", "patient_guest": "user", "guest": "user", "guest_family": "user", "family": "user",
    "caregiver": "user", "parent": "user",
    "mother": "user", "father": "user", "spouse": "user",
    # ShareGPT / chat exports
    "human": "user", "user": "user", "gpt": "assistant", "chatgpt": "assistant", "assistant": "assistant",
    "bot": "assistant", "model": "assistant", "system": "system",
}
_NUMBERING = re.compile(r"(_?\d+)+$")


class TranscriptError(ValueError):
    """A transcript cannot be turned into messages; the message names the line, never content."""


class SpeakerMap:
    """Speaker label -> TRL role (or ``drop``), tolerant of numbering and typos."""

    def __init__(self, overrides: Mapping[str, str] | None = None, fuzzy: bool = True):
        self.roles = {self.normalize(k): v for k, v in {**DEFAULT_SPEAKERS, **(overrides or {})}.items()}
        self.fuzzy = fuzzy
        self.fuzzy_hits = 0

    @staticmethod
    def normalize(label: str) -> str:
        return re.sub(r"[\s\-]+", "_", label.strip().strip("\"'`*.:[]() ").lower())

    def resolve(self, label: str) -> str | None:
        key = self.normalize(label)
        for candidate in (key, _NUMBERING.sub("", key)):
            if candidate in self.roles:
                return self.roles[candidate]
        if self.fuzzy and len(key) >= 4:
            close = difflib.get_close_matches(_NUMBERING.sub("", key), self.roles, n=1, cutoff=0.8)
            if close:
                self.fuzzy_hits += 1
                return self.roles[close[0]]
        return None


_COLON_TURN = re.compile(r"^\s*[\"'*]*([A-Za-z][\w .'\-]{0,29}?)[\"'*]*\s*:\s*(.*)$")
_BRACKET_TURN = re.compile(r"^\s*\[([^\]\n]{1,30})\]\s*(.*)$")


def _looks_like_speaker(label: str) -> bool:
    """A one-token label (``Guest_xyz``, ``Scribe``) rather than a phrase like ``Blood pressure``."""
    return " " not in label.strip() and len(label.strip()) <= 24


_WORD = re.compile(r"\w")


class LabelSplitter:
    """Splits a line where a speaker label of this file occurs mid-line.

    Transcripts, back-translated ones above all, put a second turn on the same line, after a
    full stop, a dash or a comma: "... two weeks - Guest_family_1: He also ...". The labels
    looked for are those the file itself writes at line starts, as spelt there and with any
    numbering (``Doctor_2``), plus near misses of them (``Gest_family``, ``Docotr``) that start
    with the same letter in the same case, so "the doctor: it hurts" in a sentence is not a
    label. A label must be followed by text; the dash or space before it is dropped, other
    punctuation stays with its turn.
    """

    _CANDIDATE = re.compile(r"(?<![\w])([A-Za-z][A-Za-z]*(?:_[A-Za-z]+)*)(?:_?\d+)*[ \t]*:(?=[ \t]+\S)")

    def __init__(self, labels: Iterable[str]):
        self.labels = frozenset(_NUMBERING.sub("", lb) for lb in labels if lb)
        self._verdicts: dict[str, bool] = {}
        self.splits = 0

    @classmethod
    def learn(cls, texts: Iterable[str], speakers: SpeakerMap) -> LabelSplitter:
        """The labels written at line starts in ``texts`` that ``speakers`` knows a role for."""
        labels: set[str] = set()
        fuzzy_hits = speakers.fuzzy_hits  # learning is not reading: only turns count as fuzzy matches
        for text in texts:
            for line in text.splitlines():
                m = _COLON_TURN.match(line)
                if m and _looks_like_speaker(m.group(1)) and speakers.resolve(m.group(1)) is not None:
                    labels.add(m.group(1).strip())
        speakers.fuzzy_hits = fuzzy_hits
        return cls(labels)

    def is_label(self, base: str) -> bool:
        """``base`` (numbering stripped) is one of the file's labels or a near miss of one."""
        verdict = self._verdicts.get(base)
        if verdict is None:
            same_start = [lb for lb in self.labels if lb[:1] == base[:1]]
            verdict = base in self.labels or (
                len(base) >= 4 and bool(difflib.get_close_matches(base, same_start, n=1, cutoff=0.8)))
            self._verdicts[base] = verdict
        return verdict

    def split(self, line: str) -> list[str]:
        if not self.labels:
            return [line]
        cuts = [m.start() for m in self._CANDIDATE.finditer(line)
                if _WORD.search(line, 0, m.start()) and self.is_label(m.group(1))]
        if not cuts:
            return [line]
        self.splits += len(cuts)
        pieces = [line[a:b] for a, b in zip([0, *cuts], [*cuts, len(line)], strict=True)]
        return [piece.rstrip(" \t-\u2013\u2014") if i < len(pieces) - 1 else piece for i, piece in enumerate(pieces)]


def parse_transcript(text: str, speakers: SpeakerMap, style: Literal["auto", "colon", "bracket"] = "auto",
                     unknown: UnknownPolicy = "quarantine", *, known_only: bool = False,
                     first_line: int = 1, labels: LabelSplitter | None = None) -> list[tuple[str, str]]:
    """Speaker-tagged text -> ``[(role, content)]`` in order (before merging).

    Lines without a speaker continue the previous turn; with ``known_only`` so do lines that
    start with an unknown ``Label:``. ``labels`` (colon style) splits lines where one of the
    file's labels occurs mid-line. ``first_line`` numbers the lines in error messages.
    Raises :class:`TranscriptError`.
    """
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    if style == "auto":
        first = next((ln for ln in lines if ln.strip()), "")
        style = "bracket" if _BRACKET_TURN.match(first) else "colon"
    pattern = _BRACKET_TURN if style == "bracket" else _COLON_TURN
    inline = _inline_splitter(speakers) if style == "colon" else None
    turns: list[list[str]] = []  # [role, content]
    for n, line in enumerate(lines, start=first_line):
        pieces = inline.split(line) if inline else [line]
        if labels is not None and style == "colon":
            pieces = [part for piece in pieces for part in labels.split(piece)]
        for piece in pieces:
            m = pattern.match(piece)
            role = speakers.resolve(m.group(1)) if m else None
            if m and role is None and not known_only and (style == "bracket" or _looks_like_speaker(m.group(1))):
                if unknown == "quarantine":
                    raise TranscriptError(f"unknown speaker label at line {n} (add it to 'speakers', "
                                          "or set 'unknown_speakers')")
                role = unknown
            if role is not None:
                turns.append([role, m.group(2)])
            elif turns:
                turns[-1][1] += "\n" + piece
            elif piece.strip():
                raise TranscriptError(f"text before the first speaker label at line {n}")
    return [(role, content) for role, content in turns]


def _inline_splitter(speakers: SpeakerMap) -> re.Pattern[str]:
    """Split "... fine. Patient: No." where a second known label follows a sentence end."""
    labels = sorted((re.escape(k).replace("_", "[ _]") for k in speakers.roles), key=len, reverse=True)
    return re.compile(r"(?<=[.?!])\s+(?=(?i:" + "|".join(labels) + r")\s*:\s)")


def merge_turns(turns: list[tuple[str, str]], separator: str = "\n") -> list[dict[str, str]]:
    """Drop ``drop``-role and empty turns, merge consecutive turns with the same role."""
    out: list[dict[str, str]] = []
    for role, content in turns:
        content = "\n".join(line.strip() for line in content.strip().split("\n")).strip()
        if role == "drop" or not content:
            continue
        if out and out[-1]["role"] == role:
            out[-1]["content"] += separator + content
        else:
            out.extend(messages((role, content)))
    return out


def dialogue_row(builder: str, msgs: list[dict[str, str]], *, source: str, file: str, locator: str,
                 phi_status: str, licence: str | None, sections: list[dict[str, str]] | None = None,
                 row_id: str | None = None, patient_id: Any = None, encounter_id: Any = None,
                 annotations: Mapping[str, Any] | None = None) -> dict | Drop:
    roles = {m["role"] for m in msgs}
    meta = new_meta(builder=builder, file=file, locator=locator, licence=licence, phi_status=phi_status,
                    patient_id=patient_id or None, encounter_id=encounter_id or None,
                    annotations={"turns": len(msgs), **(annotations or {})})
    reason = ("empty_dialogue" if not msgs else "no_assistant_turn" if "assistant" not in roles
              else "no_user_turn" if "user" not in roles else None)
    if reason:
        return Drop({"id": row_id or make_id(source, f"{Path(file).name}:{locator}"), "source": source,
                     "meta": meta}, reason)
    return new_row(source=source, meta=meta, id=row_id, messages=msgs, sections=sections or None)


DialogueShape = Literal["chat", "drop_opening", "as_is"]
#: The system preamble that keeps an assistant's opening words under ``dialogue_shape: chat``.
OPENING_PREAMBLE = "You opened this conversation by saying:\n{text}"


def shape_dialogue(msgs: list[dict[str, str]], shape: DialogueShape) -> tuple[list[dict[str, str]], list[str]]:
    """``msgs`` in a shape chat templates and SFT can use, and what was changed.

    ``chat`` / ``drop_opening``: an assistant turn before the first user turn becomes a system
    preamble (``chat``; some chat templates reject an assistant-first conversation, but the
    doctor's opening question is the context of the patient's first answer) or is dropped;
    user turns after the last assistant turn are trimmed (a final user turn gives SFT nothing
    to learn). ``as_is`` changes nothing (for dialogue -> note tasks, which want every word).
    """
    if shape == "as_is":
        return msgs, []
    out = [dict(m) for m in msgs]
    changes: list[str] = []
    first = 1 if out and out[0]["role"] == "system" else 0
    if len(out) > first and out[first]["role"] == "assistant":
        opening = out.pop(first)
        if shape == "chat":
            text = OPENING_PREAMBLE.format(text=opening["content"])
            if first:
                out[0]["content"] += "\n\n" + text
            else:
                out.insert(0, {"role": "system", "content": text})
            changes.append("opening_to_system")
        else:
            changes.append("opening_dropped")
    trimmed = 0
    while out and out[-1]["role"] == "user" and any(m["role"] == "assistant" for m in out):
        out.pop()
        trimmed += 1
    if trimmed:
        changes.append("trailing_user_trimmed")
    return out, changes


class DialogueParams(source_io.SourceParams):
    phi_status: source_io.PhiStatus = "raw"
    #: chat: an assistant-first turn -> system preamble, trailing user turns trimmed (TRL
    #: ``messages`` ready); drop_opening: the same, but the opening turn is dropped; as_is: keep
    #: every turn (for dialogue_note, which turns the whole transcript into a prompt).
    dialogue_shape: DialogueShape = "chat"
    #: Speaker label -> user | assistant | system | drop, merged over the defaults.
    speakers: dict[str, Role] = {}
    fuzzy_speakers: bool = True
    unknown_speakers: UnknownPolicy = "quarantine"
    #: Joins merged consecutive turns of one role.
    merge_separator: str = "\n"

    def speaker_map(self) -> SpeakerMap:
        return SpeakerMap(self.speakers, fuzzy=self.fuzzy_speakers)


class _DialogueBuilder(Builder):
    """Shared reader: one speaker map for the whole input (its fuzzy matches are counted into
    stats.json), then each file in turn."""

    default_patterns: ClassVar[tuple[str, ...]] = ()
    default_source: ClassVar[str | None] = None

    @checked_rows
    def read(self, ctx: StepContext) -> Iterator[dict | Drop | Quarantine]:
        p: DialogueParams = self.params
        speakers = p.speaker_map()
        source = source_io.source_name(p, self.default_source)
        for path in source_io.input_files(p, self.default_patterns):
            scope = source_io.id_scope(p, path, source)
            yield from self.read_file(path, ctx.display_path(path), source, scope, speakers)
        self.stat_update("speaker_fuzzy_matches", speakers.fuzzy_hits)

    def read_file(self, path: Path, display: str, source: str, scope: str,
                  speakers: SpeakerMap) -> Iterator[dict | Drop | Quarantine]:
        """The rows of one file; ``scope`` prefixes ids taken from the data."""
        raise NotImplementedError

    def row(self, msgs: list[dict[str, str]], **kwargs: Any) -> dict | Drop:
        """The row (or Drop) for one dialogue, in the ``dialogue_shape`` asked for; each change
        is counted (``shape.opening_to_system`` ...) and named in ``meta.annotations.shaped``."""
        shaped, changes = shape_dialogue(msgs, self.params.dialogue_shape)
        if changes:
            kwargs["annotations"] = {**(kwargs.get("annotations") or {}), "shaped": changes}
        out = dialogue_row(self.name, shaped, **kwargs)
        if isinstance(out, Drop):
            if out.reason == "no_assistant_turn" and any(m["role"] == "assistant" for m in msgs):
                return Drop(out.row, "no_assistant_reply")  # the doctor only opened; nobody answered
            return out
        for change in changes:  # rows out only: a dropped dialogue is counted under its reason
            self.stat_update(f"shape.{change}")
        return out


# -- transcript tables (MTS-Dialog, ACI-Bench) ---------------------------------------------------------


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
class DialogueTranscripts(_DialogueBuilder):
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


# -- MedDialog English text files ------------------------------------------------------------------------


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
class MedDialog(_DialogueBuilder):
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


# -- ShareGPT ---------------------------------------------------------------------------------------------


class ShareGptParams(DialogueParams):
    format: Literal["json", "jsonl"] | None = None
    conversations_field: str = "conversations"
    speaker_key: str = "from"
    text_key: str = "value"
    id_field: str = "id"


@register
class ShareGpt(_DialogueBuilder):
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
