"""Quality filters: length, word statistics, character ratios, repetition, language, echoed
answers, medical-term density.

Every filter here measures a few statistics of a row and compares them with thresholds.
``mode: filter`` (default) drops a row that fails, with a reason such as ``too_short``;
``mode: annotate`` keeps every row and writes the statistics (and the reason it *would* have
been dropped for) into ``meta.annotations[<step name>]``, so thresholds can be chosen from the
data, as Data-Juicer's stats do. The shared mechanics live in :class:`QualityFilter`; a filter
only implements ``measure`` and ``judge``.

Defaults follow Gopher (Rae et al. 2021) where it has a rule, and are written down per parameter.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar, Literal

from meddata.filters import langid
from meddata.filters.clean import file_stamps
from meddata.filters.medvocab import DEFAULT_TERMS, load_vocabulary
from meddata.filters.ngram_stats import batch_ngram_chars
from pydantic import Field, field_validator, model_validator

from meddata.params import InputPath
from meddata.records import annotate, text_of
from meddata.registry import register
from meddata.steps import Drop, Filter, StepContext, StepParams

Stats = dict[str, Any]

_EDGE_PUNCT = "\"'`.,;:!?()[]{}<>«»“”‘’*-–—/\\|"
_SYMBOL_CHARS = frozenset("#*|_~^`\\{}<>@=$§¶•")
_MD_HEADING = re.compile(r"(?m)^[ \t]*#{1,6}[ \t]")


class QualityParams(StepParams):
    #: filter: drop rows that fail; annotate: keep every row, write the statistics to meta.annotations.
    mode: Literal["filter", "annotate"] = "filter"
    #: Content columns measured (default: all content of the row).
    fields: list[str] | None = None


class QualityFilter(Filter):
    """Base of the quality filters: ``measure(row) -> stats`` (None: the row has nothing this
    filter can judge, it is kept), ``judge(stats) -> reason | None``."""

    Params: ClassVar[type[QualityParams]] = QualityParams

    def measure(self, row: dict, ctx: StepContext) -> Stats | None:
        raise NotImplementedError

    def judge(self, stats: Stats) -> str | None:
        raise NotImplementedError

    @property
    def rows_unchanged(self) -> bool:
        return self.params.mode == "filter"  # annotate mode writes statistics into the row

    def measure_batch(self, rows: list[dict], ctx: StepContext) -> list[Stats | None]:
        """``measure`` over a batch; filters with a vectorised measurement override this."""
        return [self.measure(row, ctx) for row in rows]

    def process_batch(self, rows: list[dict], ctx: StepContext) -> list:
        out = []
        for row, stats in zip(rows, self.measure_batch(rows, ctx)):
            verdict = self._decide(row, stats)
            out.append(row if verdict is True else Drop(row, verdict[1]))
        return out

    def keep(self, row: dict, ctx: StepContext) -> bool | tuple[bool, str]:
        return self._decide(row, self.measure(row, ctx))

    def _decide(self, row: dict, stats: Stats | None) -> bool | tuple[bool, str]:
        if stats is None:
            self.stat_update(f"{self.name}.not_applicable")
            return True
        reason = self.judge(stats)
        if self.params.mode == "annotate":
            rounded = {k: round(v, 4) if isinstance(v, float) else v for k, v in stats.items()}
            annotate(row, self.name, {**rounded, "would_drop": reason})
            if reason:
                self.stat_update(f"{self.name}.would_drop.{reason}")
            return True
        return (False, reason) if reason else True

    def text(self, row: Mapping) -> str:
        return text_of(row, self.params.fields)


def _bounds(value: float, low: float | None, high: float | None, below: str, above: str) -> str | None:
    if low is not None and value < low:
        return below
    if high is not None and value > high:
        return above
    return None


def words_of(text: str) -> list[str]:
    """Whitespace words with edge punctuation removed; pure punctuation is not a word."""
    out = []
    for raw in text.split():
        w = raw.strip(_EDGE_PUNCT)
        if w:
            out.append(w)
    return out


# -- length ------------------------------------------------------------------------------------
class LengthParams(QualityParams):
    min_chars: int | None = None
    max_chars: int | None = None
    min_words: int | None = None
    max_words: int | None = None
    min_tokens: int | None = None
    max_tokens: int | None = None
    #: A tokenizer name or folder available locally (transformers, no download); without one
    #: tokens are whitespace tokens.
    tokenizer: str | None = None

    @model_validator(mode="after")
    def _some_bound(self):
        bounds = (self.min_chars, self.max_chars, self.min_words, self.max_words, self.min_tokens, self.max_tokens)
        if self.mode == "filter" and all(v is None for v in bounds):
            raise ValueError("set at least one of min_chars, max_chars, min_words, max_words, min_tokens, "
                             "max_tokens (or mode: annotate)")
        return self


@register
class LengthFilter(QualityFilter):
    name = "length_filter"
    description = "Drop rows shorter or longer than bounds in characters, words or tokens (local tokenizer)."
    Params = LengthParams
    worker_state = ("_tokenizer",)

    def requirements(self) -> tuple[str, ...]:
        return ("transformers",) if self.params.tokenizer else ()

    def setup(self, ctx: StepContext) -> None:
        p: LengthParams = self.params
        self._tokenizer = None
        if p.tokenizer:
            from transformers import AutoTokenizer  # heavy: only when a tokenizer is asked for

            try:
                self._tokenizer = AutoTokenizer.from_pretrained(p.tokenizer, local_files_only=True)
            except (OSError, ValueError) as exc:
                raise ValueError(
                    f"length_filter: tokenizer {p.tokenizer!r} is not available locally "
                    f"(give a folder with tokenizer files or a cached model name): {type(exc).__name__}"
                ) from None

    def measure(self, row: dict, ctx: StepContext) -> Stats:
        text = self.text(row)
        stats: Stats = {"chars": len(text), "words": len(text.split())}
        if self._tokenizer is not None:
            stats["tokens"] = len(self._tokenizer(text, add_special_tokens=False)["input_ids"])
        else:
            stats["tokens"] = stats["words"]
        return stats

    def judge(self, s: Stats) -> str | None:
        p: LengthParams = self.params
        return (_bounds(s["chars"], p.min_chars, p.max_chars, "too_short", "too_long")
                or _bounds(s["words"], p.min_words, p.max_words, "too_few_words", "too_many_words")
                or _bounds(s["tokens"], p.min_tokens, p.max_tokens, "too_few_tokens", "too_many_tokens"))


# -- word statistics ---------------------------------------------------------------------------
class WordLengthParams(QualityParams):
    #: Gopher keeps documents whose mean word length is within [3, 10] characters.
    min_mean: float | None = 3.0
    max_mean: float | None = 10.0


@register
class WordLengthFilter(QualityFilter):
    name = "word_length_filter"
    description = "Drop rows whose mean word length is outside bounds (Gopher: 3 to 10 characters)."
    Params = WordLengthParams

    def measure(self, row: dict, ctx: StepContext) -> Stats | None:
        words = words_of(self.text(row))
        if not words:
            return None
        return {"mean_word_length": sum(map(len, words)) / len(words)}

    def judge(self, s: Stats) -> str | None:
        p: WordLengthParams = self.params
        return _bounds(s["mean_word_length"], p.min_mean, p.max_mean, "words_too_short", "words_too_long")


# -- character ratios --------------------------------------------------------------------------
class CharRatioParams(QualityParams):
    #: Share of non-space characters that are symbols (unicode S* and #*|_~^`\{}<>@=$§¶•).
    max_symbol_ratio: float | None = 0.1
    #: Gopher: (# and ellipses) per word at most 0.1.
    max_hash_ellipsis_ratio: float | None = 0.1
    #: Share of non-space characters that are digits; lab tables run to 0.3, so the default is loose.
    max_digit_ratio: float | None = 0.4
    #: Gopher wants 80% of words to contain a letter; clinical notes full of numbers score lower,
    #: so the default is 0.5.
    min_alpha_word_ratio: float | None = 0.5


@register
class CharRatioFilter(QualityFilter):
    name = "char_ratio_filter"
    description = ("Drop rows with too many symbols or digits, too many #/ellipses per word, "
                   "or too few words with letters (Gopher-style).")
    Params = CharRatioParams

    def measure(self, row: dict, ctx: StepContext) -> Stats | None:
        text = self.text(row)
        chars = [c for c in text if not c.isspace()]
        if not chars:
            return None
        symbols = sum(1 for c in chars if c in _SYMBOL_CHARS or unicodedata.category(c).startswith("S"))
        digits = sum(1 for c in chars if c.isdigit())
        raw_words = text.split()
        # Gopher's rule is about hashtags; markdown heading markers ("# Plan") are not symbols.
        unheaded = _MD_HEADING.sub("", text)
        hashes = unheaded.count("#") + unheaded.count("...") + unheaded.count("…")
        alpha_words = sum(1 for w in raw_words if any(c.isalpha() for c in w))
        return {
            "symbol_ratio": symbols / len(chars),
            "digit_ratio": digits / len(chars),
            "hash_ellipsis_ratio": hashes / len(raw_words),
            "alpha_word_ratio": alpha_words / len(raw_words),
        }

    def judge(self, s: Stats) -> str | None:
        p: CharRatioParams = self.params
        if p.max_symbol_ratio is not None and s["symbol_ratio"] > p.max_symbol_ratio:
            return "too_many_symbols"
        if p.max_hash_ellipsis_ratio is not None and s["hash_ellipsis_ratio"] > p.max_hash_ellipsis_ratio:
            return "too_many_symbols"
        if p.max_digit_ratio is not None and s["digit_ratio"] > p.max_digit_ratio:
            return "too_many_digits"
        if p.min_alpha_word_ratio is not None and s["alpha_word_ratio"] < p.min_alpha_word_ratio:
            return "too_few_alpha_words"
        return None


# -- repetition ------------------------------------------------------------------------------------
def _duplicate_share(items: list[str]) -> tuple[float, int]:
    """(share of items that repeat an earlier one, characters in those repeats)."""
    seen: set[str] = set()
    dup = dup_chars = 0
    for item in items:
        if item in seen:
            dup += 1
            dup_chars += len(item)
        else:
            seen.add(item)
    return (dup / len(items) if items else 0.0), dup_chars


def _lower_words(text: str) -> list[str]:
    """``words_of`` lower-cased (lower-casing never creates or removes edge punctuation)."""
    return [w for w in (raw.strip(_EDGE_PUNCT) for raw in text.lower().split()) if w]


def top_ngram_chars(words: list[str], n: int) -> int:
    """Characters covered by the most frequent word n-gram, when it occurs more than once."""
    counts = Counter(tuple(words[i:i + n]) for i in range(len(words) - n + 1))
    if not counts:
        return 0
    gram, freq = counts.most_common(1)[0]
    return sum(map(len, gram)) * freq if freq > 1 else 0


def duplicate_ngram_chars(words: list[str], n: int) -> int:
    """Characters in word n-grams that repeat an earlier n-gram (overlaps counted once)."""
    seen: set[tuple[str, ...]] = set()
    covered = [False] * len(words)
    for i in range(len(words) - n + 1):
        gram = tuple(words[i:i + n])
        if gram in seen:
            for j in range(i, i + n):
                covered[j] = True
        else:
            seen.add(gram)
    return sum(len(w) for w, c in zip(words, covered) if c)


class RepetitionParams(QualityParams):
    #: Gopher thresholds (Rae et al. 2021, table A1).
    max_dup_line_fraction: float | None = 0.30
    max_dup_paragraph_fraction: float | None = 0.30
    max_dup_line_char_fraction: float | None = 0.20
    max_dup_paragraph_char_fraction: float | None = 0.20
    #: {n: max share of characters in the most frequent n-gram}
    top_ngram_max: dict[int, float] = Field(default_factory=lambda: {2: 0.20, 3: 0.18, 4: 0.16})
    #: {n: max share of characters in repeated n-grams}
    dup_ngram_max: dict[int, float] = Field(
        default_factory=lambda: {5: 0.15, 6: 0.14, 7: 0.13, 8: 0.12, 9: 0.11, 10: 0.10}
    )
    #: The n-gram rules need this many words: in a 30-word answer one repeated phrase is already
    #: 20% of the text (Gopher only saw documents of 50+ words).
    ngram_min_words: int = Field(default=50, ge=0)

    @field_validator("top_ngram_max", "dup_ngram_max")
    @classmethod
    def _sizes(cls, v: dict[int, float]) -> dict[int, float]:
        bad = [n for n in v if n < 1 or n > 20]
        if bad:
            raise ValueError(f"n-gram sizes must be between 1 and 20, got {bad}")
        return v


@register
class RepetitionFilter(QualityFilter):
    name = "repetition_filter"
    description = ("Drop rows with repeated lines, paragraphs or n-grams beyond Gopher's thresholds "
                   "(copy-paste, template loops, degenerate generations).")
    Params = RepetitionParams

    def measure(self, row: dict, ctx: StepContext) -> Stats | None:
        return self.measure_batch([row], ctx)[0]

    def measure_batch(self, rows: list[dict], ctx: StepContext) -> list[Stats | None]:
        """Line and paragraph shares per row; n-gram shares for the whole batch at once
        (:mod:`meddata.filters.ngram_stats`), the same numbers as the per-row functions above."""
        p: RepetitionParams = self.params
        texts = [self.text(row).strip() for row in rows]
        out: list[Stats | None] = [self._line_stats(text) if text else None for text in texts]
        word_lists = [_lower_words(text) if text else [] for text in texts]
        tops, dups = batch_ngram_chars(word_lists, p.top_ngram_max, p.dup_ngram_max)
        for k, stats in enumerate(out):
            if stats is None:
                continue
            words = word_lists[k]
            word_chars = sum(map(len, words)) or 1
            stats["words"] = len(words)
            for n in sorted(p.top_ngram_max):
                stats[f"top_{n}gram_char_fraction"] = int(tops[n][k]) / word_chars
            for n in sorted(p.dup_ngram_max):
                stats[f"dup_{n}gram_char_fraction"] = int(dups[n][k]) / word_chars
        return out

    @staticmethod
    def _line_stats(text: str) -> Stats:
        total = len(text)
        lines = [ln.strip() for ln in text.split("\n") if ln.strip()]
        paragraphs = [p.strip() for p in re.split(r"\n\s*\n", text) if p.strip()]
        line_frac, line_chars = _duplicate_share(lines)
        para_frac, para_chars = _duplicate_share(paragraphs)
        return {
            "dup_line_fraction": line_frac,
            "dup_line_char_fraction": line_chars / total,
            "dup_paragraph_fraction": para_frac,
            "dup_paragraph_char_fraction": para_chars / total,
        }

    def judge(self, s: Stats) -> str | None:
        p: RepetitionParams = self.params
        checks = [
            ("dup_line_fraction", p.max_dup_line_fraction, "repeated_lines"),
            ("dup_line_char_fraction", p.max_dup_line_char_fraction, "repeated_lines"),
            ("dup_paragraph_fraction", p.max_dup_paragraph_fraction, "repeated_paragraphs"),
            ("dup_paragraph_char_fraction", p.max_dup_paragraph_char_fraction, "repeated_paragraphs"),
            *((f"top_{n}gram_char_fraction", t, "repeated_ngrams") for n, t in sorted(p.top_ngram_max.items())),
            *((f"dup_{n}gram_char_fraction", t, "repeated_ngrams") for n, t in sorted(p.dup_ngram_max.items())),
        ]
        for key, limit, reason in checks:
            if reason == "repeated_ngrams" and s["words"] < p.ngram_min_words:
                break
            if limit is not None and s[key] > limit:
                return reason
        return None


# -- language -----------------------------------------------------------------------------------------
class LanguageParams(QualityParams):
    languages: list[str] = Field(default_factory=lambda: ["en"])
    #: Latin-script text needs this share of function words to be identified at all.
    min_score: float = Field(default=0.1, ge=0, le=1)
    #: Keep rows whose language cannot be told (telegraphic notes, lab tables, very short text).
    keep_unknown: bool = True

    @field_validator("languages")
    @classmethod
    def _known(cls, v: list[str]) -> list[str]:
        unknown = sorted(set(v) - set(langid.LANGUAGES))
        if unknown:
            raise ValueError(f"unsupported language(s) {unknown}; supported: {', '.join(langid.LANGUAGES)}")
        return v


@register
class LanguageFilter(QualityFilter):
    name = "language_filter"
    description = ("Keep rows in the given languages (light detector: writing system, then stopword "
                   "ratios for en/es/fr/de/it/pt/nl; no model download).")
    Params = LanguageParams

    def measure(self, row: dict, ctx: StepContext) -> Stats | None:
        text = self.text(row)
        if not text.strip():
            return None
        lang, score = langid.detect(text)
        latin = lang in langid.STOPWORDS
        if latin and score < self.params.min_score:
            lang = "unknown"
        return {"language": lang, "score": score}

    def judge(self, s: Stats) -> str | None:
        p: LanguageParams = self.params
        if s["language"] == "unknown":
            return None if p.keep_unknown else "unknown_language"
        return None if s["language"] in p.languages else "wrong_language"


# -- answers that echo the question ----------------------------------------------------------------------
_NORM_WORD = re.compile(r"[^\W_]+", re.UNICODE)


def _norm_words(text: str) -> list[str]:
    return [w.lower() for w in _NORM_WORD.findall(text)]


def _content(words: list[str]) -> list[str]:
    return [w for w in words if w not in langid.STOPWORDS["en"]]


def echo_overlap(question: str, answer: str) -> tuple[float, float]:
    """``(answer_in_question, question_in_answer)`` over content words (not function words).

    An echo has both high: "So you have been having panic attacks and don't know what to do"
    after "I have been having panic attacks. I don't know what to do." An exam answer ("C.
    Metformin") is all in the prompt that lists the options, but covers little of it.
    """
    asked = _content(_norm_words(question))
    said = _content(_norm_words(answer))
    if not said or not asked:
        return 0.0, 0.0
    asked_set, said_set = set(asked), set(said)
    return sum(w in asked_set for w in said) / len(said), len(asked_set & said_set) / len(asked_set)


def qa_pairs(row: Mapping) -> list[tuple[str, str]]:
    """(question, answer) pairs of a row: each assistant turn with the user turn before it."""
    pairs: list[tuple[str, str]] = []
    for turns in (row.get("messages"),
                  [*(row.get("prompt") or []), *(row.get("completion") or [])] if row.get("completion") else None,
                  [*(row.get("prompt") or []), *(row.get("chosen") or [])] if row.get("chosen") else None):
        last_user = None
        for m in turns or []:
            if m["role"] == "user":
                last_user = m["content"] or ""
            elif m["role"] == "assistant" and last_user:
                pairs.append((last_user, m["content"] or ""))
    return pairs


class EchoParams(QualityParams):
    #: An echo: at least this share of the answer's content words is already in the question ...
    max_overlap: float = Field(default=0.8, gt=0, le=1)
    #: ... and the answer repeats at least this share of the question's content words.
    min_question_share: float = Field(default=0.5, ge=0, le=1)
    #: Answers with fewer content words are not judged ("Yes.", "Metformin.").
    min_answer_words: int = Field(default=3, ge=1)


@register
class EchoFilter(QualityFilter):
    name = "echo_filter"
    description = "Drop question-answer rows whose answer only repeats the question (messages, prompt/completion)."
    Params = EchoParams

    def measure(self, row: dict, ctx: StepContext) -> Stats | None:
        p: EchoParams = self.params
        pairs = [(q, a) for q, a in qa_pairs(row)
                 if sum(w not in langid.STOPWORDS["en"] for w in _norm_words(a)) >= p.min_answer_words]
        if not pairs:
            return None
        worst = max((echo_overlap(q, a) for q, a in pairs), key=lambda o: min(o[0] / p.max_overlap,
                                                                                 o[1] / (p.min_question_share or 1)))
        return {"echo_overlap": worst[0], "question_share": worst[1]}

    def judge(self, s: Stats) -> str | None:
        p: EchoParams = self.params
        if s["echo_overlap"] >= p.max_overlap and s["question_share"] >= p.min_question_share:
            return "echoes_question"
        return None


# -- medical-term density --------------------------------------------------------------------------------
class MedicalDensityParams(QualityParams):
    #: Minimum number of medical term occurrences (MMedC's keyword count).
    min_count: int | None = 2
    #: Minimum share of word characters inside medical terms (MMedC's keyword density).
    min_density: float | None = 0.03
    #: Extra vocabulary files (one term per line, # comments), added to the shipped list.
    vocabulary: list[InputPath] = Field(default_factory=list)
    use_default_vocabulary: bool = True

    @model_validator(mode="after")
    def _has_vocabulary(self):
        if not self.use_default_vocabulary and not self.vocabulary:
            raise ValueError("use_default_vocabulary is false and no 'vocabulary' file is given")
        return self


@register
class MedicalDensityFilter(QualityFilter):
    name = "medical_density_filter"
    description = ("Keep medical text: at least min_count medical terms and a term density of at least "
                   "min_density (MMedC-style), from a shipped open vocabulary.")
    Params = MedicalDensityParams
    worker_state = ("_vocab",)

    def setup(self, ctx: StepContext) -> None:
        p: MedicalDensityParams = self.params
        files = ([str(DEFAULT_TERMS)] if p.use_default_vocabulary else []) + [str(Path(f)) for f in p.vocabulary]
        self._vocab = load_vocabulary(tuple(files))

    def fingerprint_extra(self, ctx: StepContext) -> str:
        """Edited vocabulary files invalidate the checkpoint."""
        return file_stamps([DEFAULT_TERMS, *self.params.vocabulary])

    def measure(self, row: dict, ctx: StepContext) -> Stats | None:
        count, term_chars, _, word_chars = self._vocab.match(self.text(row))
        if word_chars == 0:
            return None
        return {"medical_terms": count, "medical_density": term_chars / word_chars}

    def judge(self, s: Stats) -> str | None:
        p: MedicalDensityParams = self.params
        if p.min_count is not None and s["medical_terms"] < p.min_count:
            return "few_medical_terms"
        if p.min_density is not None and s["medical_density"] < p.min_density:
            return "low_medical_density"
        return None
