"""Assembly: blocks -> sections (by heading) -> chunk rows, and the front/back matter rules
that drop whole sections with a reason."""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from meddata.builders.textbook.blocks import Block, Heading, PageDrop
from meddata.builders.textbook.chunking import Chunker

from meddata.records import new_meta, new_row
from meddata.steps import Builder, Drop, Quarantine

if TYPE_CHECKING:
    from meddata.builders.textbook.steps import TextbookParams

DEFAULT_DROP_HEADINGS: dict[str, list[str]] = {
    "front_matter": [
        r"cover", r"title page", r"half[- ]title", r"copyright( page)?", r"(table of )?contents",
        r"preface", r"foreword", r"dedication", r"acknowledge?ments?", r"about (the|this) (book|authors?|editors?)",
        r"list of (figures|tables|abbreviations|contributors)", r"contributors", r"how to use this book",
    ],
    "back_matter": [
        r"index", r"(subject|general) index", r"bibliography", r"references", r"further reading",
        r"suggested readings?", r"colophon", r"credits", r"permissions",
    ],
    "exercises": [
        r"review questions", r"critical thinking questions?", r"interactive link questions?",
        r"multiple choice( questions)?", r"self[- ]check( questions)?", r"practice questions",
        r"check your understanding", r"answer key", r"answers to .*questions",
    ],
}
_NUMBER_PREFIX = re.compile(r"^((part|unit|chapter|section|appendix)\s+)?([0-9]+(\.[0-9]+)*|[ivxlcdm]+)[.:)\s-]+",
                            re.I)
#: Text kept in the drop log for a dropped section (enough to audit the decision).
DROPPED_TEXT_CHARS = 5000


class MatterRules:
    """Which headings mark front/back matter or exercises: one regex per reason, results cached
    per title (a book repeats its section names)."""

    def __init__(self, spec: dict[str, list[str]]):
        self.rules = [(reason, re.compile("|".join(f"(?:{p})" for p in pats), re.I)) for reason, pats in spec.items()
                      if pats]
        self._cache: dict[str, str | None] = {}

    def title_reason(self, title: str) -> str | None:
        if title not in self._cache:
            low = title.strip().lower()
            bare = _NUMBER_PREFIX.sub("", low).strip(" .:") or low
            self._cache[title] = next((reason for reason, pat in self.rules
                                       if pat.fullmatch(bare) or pat.fullmatch(low)), None)
        return self._cache[title]

    def reason(self, path: Sequence[str]) -> str | None:
        """The drop reason when any heading on the path matches."""
        return next((r for r in map(self.title_reason, path) if r), None)


class Assembler:
    """Turns a block stream into chunk rows and Drops, tracking the heading path."""

    def __init__(self, builder: Builder, rules: MatterRules, source: str, display: str,
                 base_path: Sequence[str] = (), locator_prefix: str = ""):
        self.b = builder
        self.p: TextbookParams = builder.params
        self.source, self.display = source, display
        self.rules = rules
        self.stack: list[tuple[int, str]] = [(0, t) for t in base_path]
        self.prefix = locator_prefix
        self.section_locator = locator_prefix.strip() or "start"
        self.section_no = 0
        self.outcomes = 0  # rows and drops emitted; 0 at the end means the document had no text
        self._open()

    def _open(self) -> None:
        self.path = [t for _, t in self.stack]
        self.reason = self.rules.reason(self.path)
        prefix = self._prefix_text()
        budget = max(self.p.chunk_size - (len(prefix.split()) if self.p.unit == "tokens" else len(prefix)),
                     self.p.chunk_size // 2)
        self.chunker = Chunker(budget, min(self.p.chunk_overlap, budget // 2), self.p.unit)
        self.dropped: list[str] = []
        self.dropped_chars = 0
        self.chunk_no = 0
        self.has_text = False

    def _prefix_text(self) -> str:
        if self.p.heading_prefix == "none" or not self.path:
            return ""
        return (self.path[-1] if self.p.heading_prefix == "title" else " > ".join(self.path)) + "\n\n"

    def feed(self, block: Block) -> Iterator[dict | Drop | Quarantine]:
        if isinstance(block, Quarantine):
            yield block
        elif isinstance(block, PageDrop):
            yield self._drop(block.reason, block.text, block.locator, self.path)
        elif isinstance(block, Heading):
            yield from self.close()
            while self.stack and self.stack[-1][0] >= block.level:
                self.stack.pop()
            self.stack.append((block.level, block.title))
            self.section_no += 1
            self.section_locator = f"{self.prefix}{block.locator} section {self.section_no}"
            self._open()
        elif block.text.strip():
            self.has_text = True
            if self.reason:
                if self.dropped_chars < DROPPED_TEXT_CHARS:
                    self.dropped.append(block.text)
                self.dropped_chars += len(block.text)
            else:
                for chunk in self.chunker.add(block.text):
                    yield self._row(chunk)

    def close(self) -> Iterator[dict | Drop]:
        """End the current section (before a heading, at the end of a document)."""
        if self.reason:
            if self.has_text:
                yield self._drop(self.reason, "\n\n".join(self.dropped), self.section_locator, self.path)
        else:
            for chunk in self.chunker.finish():
                yield self._row(chunk)
        self.has_text = False
        self.dropped = []

    def _meta(self, locator: str, path: Sequence[str], **extra: Any) -> dict[str, Any]:
        return new_meta(builder=self.b.name, file=self.display, locator=locator, licence=self.p.licence,
                        phi_status=self.p.phi_status, annotations={"heading_path": list(path), **extra})

    def _row(self, chunk: str) -> dict:
        self.outcomes += 1
        locator = f"{self.section_locator} chunk {self.chunk_no}"
        self.chunk_no += 1
        self.b.stat_update("chunks")
        return new_row(source=self.source, meta=self._meta(locator, self.path, chunk=self.chunk_no - 1),
                       text=self._prefix_text() + chunk)

    def _drop(self, reason: str, text: str, locator: str, path: Sequence[str]) -> Drop:
        self.outcomes += 1
        self.b.stat_update(f"dropped_sections.{reason}")
        meta = self._meta(locator, path)
        row = new_row(source=self.source, meta=meta, text=text[:DROPPED_TEXT_CHARS] or "(empty)")
        return Drop(row, reason)
