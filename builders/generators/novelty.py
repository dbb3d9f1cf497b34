"""ROUGE-L novelty: is a new instruction different enough from every instruction seen so far?

Self-instruct (Wang et al., 2023) and AlpaCare keep a generated instruction only when its
ROUGE-L F-measure against every instruction already in the pool is below 0.7. Tokens come
from rouge-score's own tokenizer (lower-cased alphanumerics, no stemming; its module that
does not import nltk, which takes seconds), so scores match ``RougeScorer(["rougeL"])``; the
LCS is computed here on pre-tokenized text, with a cheap bag-of-words upper bound that skips
most pairs, because the pool grows with every row.
"""

from __future__ import annotations

from collections import Counter


def tokenize(text: str) -> list[str]:
    """ROUGE tokens of ``text`` (rouge-score's tokenizer without stemming)."""
    from rouge_score import tokenize as rouge_tokenize

    return rouge_tokenize.tokenize(text, None)


def lcs_length(a: list[str], b: list[str]) -> int:
    """Length of the longest common subsequence of two token lists."""
    if len(a) < len(b):
        a, b = b, a
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for j, y in enumerate(b, start=1):
            cur.append(prev[j - 1] + 1 if x == y else max(prev[j], cur[j - 1]))
        prev = cur
    return prev[-1]


def _f1(common: int, n_a: int, n_b: int) -> float:
    if not common:
        return 0.0
    p, r = common / n_b, common / n_a
    return 2 * p * r / (p + r)


class NoveltyPool:
    """Instructions seen so far; :meth:`add_if_novel` admits one only when it is novel."""

    def __init__(self, max_similarity: float = 0.7):
        self.max_similarity = max_similarity
        self._items: list[tuple[list[str], Counter]] = []

    def __len__(self) -> int:
        return len(self._items)

    def tokens(self, text: str) -> list[str]:
        return tokenize(text)

    def add(self, text: str) -> None:
        toks = self.tokens(text)
        if toks:
            self._items.append((toks, Counter(toks)))

    def most_similar(self, text: str) -> float:
        """The highest ROUGE-L F-measure of ``text`` against the pool (0 for an empty pool); the
        search stops at the first score at or above ``max_similarity``."""
        toks = self.tokens(text)
        if not toks:
            return 0.0
        bag = Counter(toks)
        best = 0.0
        for other, other_bag in self._items:
            bound = _f1(sum((bag & other_bag).values()), len(other), len(toks))
            if bound <= best:
                continue  # the LCS cannot beat the shared-token count
            best = max(best, _f1(lcs_length(other, toks), len(other), len(toks)))
            if best >= self.max_similarity:
                break
        return best

    def add_if_novel(self, text: str) -> tuple[bool, float]:
        """(admitted, highest similarity). Admitted instructions join the pool."""
        score = self.most_similar(text)
        novel = score < self.max_similarity and bool(self.tokens(text))
        if novel:
            self.add(text)
        return novel, score
