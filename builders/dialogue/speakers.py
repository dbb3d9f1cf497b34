"""Speaker labels -> TRL roles, and speaker-tagged text -> ordered turns.

:class:`SpeakerMap` maps labels (numbering stripped, typos forgiven) to roles;
:class:`LabelSplitter` learns a file's labels from its line starts and splits turns written on
the line of the one before; :func:`parse_transcript` reads ``Label:`` or ``[label]`` lines.
Error messages name the line, never a label or any text: labels can be names.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping
from typing import Literal

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

