"""The blocks a textbook reader turns a document into, for the assembler to group and chunk."""

from __future__ import annotations

from dataclasses import dataclass

from meddata.steps import Quarantine

#: A paragraph longer than this is handed to the chunker in pieces; a single line (or HTML text
#: block) longer than this is quarantined: it is a dump, not prose.
MAX_PARAGRAPH_CHARS = 256 * 1024


@dataclass
class Heading:
    level: int
    title: str
    locator: str


@dataclass
class Para:
    text: str
    locator: str


@dataclass
class PageDrop:
    reason: str
    text: str
    locator: str


Block = Heading | Para | PageDrop | Quarantine
