"""Word n-gram repetition statistics for a whole batch of texts at once (numpy).

The Gopher repetition rules need, per text and per n, the characters covered by the most
frequent n-gram and by n-grams that repeat an earlier one. Computed one text at a time with
tuples and sets this costs about 1.4 ms per QA answer; here every text of a batch is laid end
to end as one array of 64-bit word hashes, n-grams become rolling sums of hashes (mixed with
the text's index, so equal n-grams of different texts never meet), and one stable sort per n
finds first occurrences (group minima), repeats and counts for all texts together;
n-grams seen once are not extended to the next n. Results are the same
integers as :func:`meddata.filters.quality.top_ngram_chars` and
:func:`~meddata.filters.quality.duplicate_ngram_chars` (up to a 64-bit hash collision).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

_MASK = (1 << 64) - 1
#: One odd 64-bit multiplier per position in an n-gram (fixed: results must not depend on a seed).
_MULT = np.array([(0x9E3779B97F4A7C15 * (2 * k + 1) + 0x632BE59BD9B4E019 * k) & _MASK | 1 for k in range(32)],
                 dtype=np.uint64)
_TEXT_MULT = np.uint64(0xD6E8FEB86659FD93)


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser: spreads the linear combination of word hashes over 64 bits."""
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


class NgramBatch:
    """Word lists of many texts, flattened; answers per-text n-gram statistics for growing n.

    Only n-grams that can still repeat are carried from one n to the next: an (n+1)-gram
    that occurs twice starts with an n-gram that occurs twice, so after each size the
    positions of n-grams seen once are dropped (in real text most are, after n = 2 or 3).
    """

    def __init__(self, word_lists: Sequence[Sequence[str]]):
        counts = np.fromiter((len(w) for w in word_lists), dtype=np.int64, count=len(word_lists))
        total = int(counts.sum())
        flat = [w for words in word_lists for w in words]
        self.n_texts = len(word_lists)
        self.total = total
        self.text_of = np.repeat(np.arange(len(counts), dtype=np.int64), counts)
        starts = np.cumsum(counts) - counts
        #: Words left in the text after each position (position included).
        self.left = (counts[self.text_of] - (np.arange(total, dtype=np.int64) - starts[self.text_of])
                     if total else np.empty(0, np.int64))
        self.lengths = np.fromiter(map(len, flat), dtype=np.int64, count=total)
        self.char_prefix = np.concatenate([[0], np.cumsum(self.lengths)]).astype(np.int64)
        # str hashes are salted per process, which is fine: equality is all that is compared
        self.hashes = np.fromiter(map(hash, flat), dtype=np.int64, count=total).view(np.uint64)
        self._rolling = np.zeros(total, dtype=np.uint64)
        self._active = np.arange(total, dtype=np.int64)  # positions whose n-gram may still repeat
        self._n = 0

    def _grams(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """(start positions of the n-grams that may repeat, their keys); n must grow by calls."""
        if n < self._n:
            raise ValueError("ask for n-gram sizes in increasing order")
        with np.errstate(over="ignore"):
            while self._n < n:
                k = self._n
                act = self._active = self._active[self.left[self._active] > k]
                self._rolling[act] += self.hashes[act + k] * _MULT[k % len(_MULT)]
                self._n += 1
            act = self._active
            keys = _mix(self._rolling[act] + self.text_of[act].astype(np.uint64) * _TEXT_MULT)
        return act, keys

    def stats(self, n: int, top: bool, dup: bool) -> tuple[np.ndarray | None, np.ndarray | None]:
        """Per text: characters of the most frequent n-gram times its count when it repeats
        (``top``; ties go to the n-gram seen first) and characters of words inside n-grams
        that repeat an earlier n-gram (``dup``)."""
        starts, keys = self._grams(n)
        top_chars = np.zeros(self.n_texts, dtype=np.int64) if top else None
        dup_chars = np.zeros(self.n_texts, dtype=np.int64) if dup else None
        if not len(starts):
            return top_chars, dup_chars
        order = np.argsort(keys)  # ties need no order: first occurrences are minima below
        sorted_keys = keys[order]
        is_first = np.empty(len(order), dtype=bool)
        is_first[0] = True
        np.not_equal(sorted_keys[1:], sorted_keys[:-1], out=is_first[1:])
        group_start = np.flatnonzero(is_first)
        freq = np.diff(np.append(group_start, len(order)))
        at = starts[order]
        first = np.minimum.reduceat(at, group_start)  # each n-gram's first occurrence
        group = np.cumsum(is_first) - 1
        if dup:
            repeats = at[at != first[group]]
            marks = (np.bincount(repeats, minlength=self.total + 1)
                     - np.bincount(repeats + n, minlength=self.total + 1))
            covered = np.cumsum(marks[:-1]) > 0
            dup_chars[:] = np.bincount(self.text_of[covered], weights=self.lengths[covered],
                                       minlength=self.n_texts).astype(np.int64)
        if top:
            many = freq > 1
            first_m, freq_m = first[many], freq[many]
            text = self.text_of[first_m]
            chars = self.char_prefix[first_m + n] - self.char_prefix[first_m]
            # per text: highest frequency, then earliest first occurrence (Counter.most_common's tie rule)
            best = np.lexsort((first_m, -freq_m, text))
            text_sorted = text[best]
            lead = np.ones(len(best), dtype=bool)
            lead[1:] = text_sorted[1:] != text_sorted[:-1]
            winners = best[lead]
            top_chars[text[winners]] = chars[winners] * freq_m[winners]
        self._active = np.sort(at[freq[group] > 1])  # n-grams seen once cannot grow into repeats
        return top_chars, dup_chars


def batch_ngram_chars(word_lists: Sequence[Sequence[str]], top_sizes: Iterable[int],
                      dup_sizes: Iterable[int]) -> tuple[dict[int, np.ndarray], dict[int, np.ndarray]]:
    """``({n: top-n-gram chars per text}, {n: repeated-n-gram chars per text})``."""
    top_sizes, dup_sizes = set(top_sizes), set(dup_sizes)
    batch = NgramBatch(word_lists)
    tops: dict[int, np.ndarray] = {}
    dups: dict[int, np.ndarray] = {}
    for n in sorted(top_sizes | dup_sizes):
        t, d = batch.stats(n, n in top_sizes, n in dup_sizes)
        if t is not None:
            tops[n] = t
        if d is not None:
            dups[n] = d
    return tops, dups
