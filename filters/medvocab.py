"""Medical-term matching for the ``medical_density_filter`` (MMedC-style keyword count and density).

Terms are lowercase word sequences (``filters/data/medical_terms.txt``, see SOURCES.md there);
text is matched greedily, longest term first, so "diabetes mellitus" counts once, not twice.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path

DEFAULT_TERMS = Path(__file__).parent / "data" / "medical_terms.txt"
TOKEN = re.compile(r"[a-z0-9]+(?:['\-][a-z0-9]+)*")


class MedicalVocabulary:
    def __init__(self, terms: Iterable[str]):
        self.terms: set[tuple[str, ...]] = set()
        self._longest: dict[str, int] = {}  # first word -> longest term starting with it
        for term in terms:
            words = tuple(TOKEN.findall(term.lower()))
            if words:
                self.terms.add(words)
                self._longest[words[0]] = max(self._longest.get(words[0], 0), len(words))

    @classmethod
    def from_files(cls, paths: Iterable[Path]) -> MedicalVocabulary:
        terms: list[str] = []
        for path in paths:
            for line in Path(path).read_text(encoding="utf-8").splitlines():
                line = line.strip()
                if line and not line.startswith("#"):
                    terms.append(line)
        return cls(terms)

    def __len__(self) -> int:
        return len(self.terms)

    def _single(self, word: str) -> bool:
        if (word,) in self.terms:
            return True
        # plural forms: "tumors" -> "tumor", "lesions" -> "lesion", "biopsies" -> "biopsy"
        if len(word) > 4 and word.endswith("s"):
            if word.endswith("ies") and (word[:-3] + "y",) in self.terms:
                return True
            return (word[:-1],) in self.terms or (word.endswith("es") and (word[:-2],) in self.terms)
        return False

    def match(self, text: str) -> tuple[int, int, int, int]:
        """``(term_count, term_chars, word_count, word_chars)`` for ``text``.

        ``term_chars`` counts the characters of matched terms (words and the spaces between
        them); ``word_chars`` the characters of all words, so density = term_chars / word_chars.
        """
        words = TOKEN.findall(text.lower())
        n = len(words)
        count = chars = 0
        i = 0
        while i < n:
            longest = min(self._longest.get(words[i], 1), n - i)
            for size in range(longest, 0, -1):
                hit = self._single(words[i]) if size == 1 else tuple(words[i:i + size]) in self.terms
                if hit:
                    count += 1
                    chars += sum(len(w) for w in words[i:i + size]) + size - 1
                    i += size
                    break
            else:
                i += 1
        return count, chars, n, sum(len(w) for w in words)


@lru_cache(maxsize=4)
def load_vocabulary(paths: tuple[str, ...]) -> MedicalVocabulary:
    return MedicalVocabulary.from_files(Path(p) for p in paths)
