"""Cutting a section's paragraphs into overlapping chunks that end at paragraph or sentence ends."""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence

_SENTENCE_END = re.compile(r"(?<=[.!?])[\"')\]]*\s+(?=[\"'(\[]?[A-Z0-9])")


class Chunker:
    """Packs paragraphs into chunks of at most ``size`` (chars or whitespace tokens) with overlap.

    Incremental: :meth:`add` returns the chunks that are complete, so a long section never
    sits in memory whole. Units are sentences (words, or slices of a word, when a sentence
    alone is over budget); chunks break between units, preferring paragraph ends.
    """

    def __init__(self, size: int, overlap: int, unit: str = "chars"):
        self.size, self.overlap = size, overlap
        self.tokens = unit == "tokens"
        self.units: list[tuple[str, bool]] = []  # (text, ends a paragraph)
        self.pending = 0

    def measure(self, text: str) -> int:
        return len(text.split()) if self.tokens else len(text)

    def _span(self, units: Sequence[tuple[str, bool]]) -> int:
        if self.tokens:
            return sum(self.measure(u) for u, _ in units)
        return sum(len(u) for u, _ in units) + max(len(units) - 1, 0) * 2

    def _split(self, text: str) -> Iterator[str]:
        for sentence in _SENTENCE_END.split(text):
            sentence = sentence.strip()
            if not sentence:
                continue
            if self.measure(sentence) <= self.size:
                yield sentence
                continue
            piece: list[str] = []
            for word in sentence.split():
                if not self.tokens and len(word) > self.size:
                    if piece:
                        yield " ".join(piece)
                        piece = []
                    yield from (word[i:i + self.size] for i in range(0, len(word), self.size))
                    continue
                if piece and self.measure(" ".join([*piece, word])) > self.size:
                    yield " ".join(piece)
                    piece = []
                piece.append(word)
            if piece:
                yield " ".join(piece)

    def add(self, paragraph: str) -> list[str]:
        units = list(self._split(paragraph))
        if not units:
            return []
        self.units.extend((u, False) for u in units[:-1])
        self.units.append((units[-1], True))
        self.pending += self.measure(paragraph)
        return self._emit(final=False) if self.pending > 4 * self.size else []

    def finish(self) -> list[str]:
        out = self._emit(final=True)
        self.units, self.pending = [], 0
        return out

    def _emit(self, final: bool) -> list[str]:
        out, units, i = [], self.units, 0
        while i < len(units):
            j, end = i, i
            while j < len(units) and self._span(units[i:j + 1]) <= self.size:
                j += 1
                if units[j - 1][1]:
                    end = j  # last paragraph end inside the window
            if j == i:
                j = i + 1
            if j >= len(units) and not final:
                break  # the window reaches the buffer's end: wait for more text
            if j < len(units) and end > i and self._span(units[i:end]) >= self.size // 2:
                j = end  # break at a paragraph end when that keeps the chunk at least half full
            out.append(self._join(units[i:j]))
            if j >= len(units):
                i = j
                break
            k = j
            while k - 1 > i and self._span(units[k - 1:j]) <= self.overlap:
                k -= 1
            if k == j and self.overlap:  # no whole sentence fits the overlap: carry the last words
                room = min(self.overlap, self.size - self.measure(units[j][0]) - 2)
                tail = self._tail(units[j - 1][0], room)
                if tail:
                    units.insert(j, (tail, units[j - 1][1]))
            i = k
        self.units = units[i:]
        self.pending = self._span(self.units)
        return out

    def _tail(self, text: str, budget: int) -> str:
        """The longest run of whole words ending ``text`` that fits ``budget``."""
        words = text.split()
        n = 0
        while n < len(words) and self.measure(" ".join(words[-(n + 1):])) <= budget:
            n += 1
        return " ".join(words[-n:]) if n else ""

    @staticmethod
    def _join(units: Sequence[tuple[str, bool]]) -> str:
        parts = []
        for n, (text, para_end) in enumerate(units):
            parts.append(text)
            if n < len(units) - 1:
                parts.append("\n\n" if para_end else " ")
        return "".join(parts)


# -- the section assembler ------------------------------------------------------------------------------
