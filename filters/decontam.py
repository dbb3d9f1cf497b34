"""Decontamination: drop (or flag) training rows that contain evaluation items.

Evaluation sets are exam files in the formats :mod:`meddata.exams` reads (MedQA, MedMCQA,
PubMedQA, MMLU). Text on both sides is normalised the same way: lowercase, punctuation out,
split into words (``"45-year-old"`` -> ``45 year old``). A training row is contaminated by an
item when

1. **ngram** – they share a word n-gram of ``ngram`` words (13, as in GPT-3's decontamination);
2. **whole** – the item is shorter than ``ngram`` words and the row contains all of it;
3. **coverage** – at least ``min_coverage`` of the item's content words lie inside
   ``overlap_ngram``-word n-grams the row also contains. A copy with one word in ten changed keeps
   most of its 6-grams, so it is caught though no 13-gram survives (Llama 2's contamination
   analysis counts covered tokens the same way). Only items with ``coverage_min_words`` content
   words or more are judged this way: a six-word question is "covered" by any textbook sentence
   on its topic.

Content words are the words that are not English function words, exam stems ("which of the
following ... except") or vignette demographics ("a 45 year old man presents"). N-grams that
occur in ``max_item_frequency`` or more evaluation items are exam boilerplate and count for no
rule. Items with fewer than three content words cannot be matched safely and are counted as too
short in the report.

The report (``stats.json`` -> this step's ``report``) names every evaluation item that was hit,
by which rule, how many rows and a few of their ids.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from datasets import Dataset
from meddata.filters import langid
from pydantic import Field, field_validator, model_validator

from meddata.exams import ExamItem, read_exam
from meddata.params import InputPath
from meddata.records import MESSAGE_COLUMNS, annotate, text_of
from meddata.registry import register
from meddata.steps import GlobalResult, GlobalStep, Quarantine, StepContext, StepParams, split_by_reasons

_WORD = re.compile(r"[^\W_]+")
#: Words that carry no content in an exam item: English function words and question stems
#: ("which of the following is not a ..."). Coverage counts the other words only.
NON_CONTENT = langid.STOPWORDS["en"] | frozenset(
    "following one true false except correct incorrect statement statements regarding none above below "
    "least likely best commonly given among select choose option options answer "
    # vignette demographics: "a 4 year old child presents with ..."
    "year years old month months week weeks day days hour hours man woman male female boy girl child "
    "patient presents presented history".split()
)
MIN_CONTENT_WORDS = 3
#: Training row columns the step can search.
SEARCHABLE = ("text", *MESSAGE_COLUMNS, "question", "options", "answer")


def normalize_words(text: str) -> list[str]:
    """Lowercase words with punctuation removed: what both sides are compared on."""
    return _WORD.findall(text.lower())


def ngrams(words: list[str], n: int) -> Iterator[tuple[str, ...]]:
    for i in range(len(words) - n + 1):
        yield tuple(words[i:i + n])


class EvalSet(StepParams):
    path: InputPath
    format: Literal["medqa", "medmcqa", "pubmedqa", "mmlu"] | None = None
    #: MedMCQA ``cop`` numbering: 1 for the original release, 0 for the Hugging Face export.
    cop_base: Literal[0, 1] = 1
    #: Name in the report (default: the file or folder name).
    name: str | None = None


class DecontamParams(StepParams):
    #: Exam files or folders: a path, or {path, format, cop_base, name}.
    eval_sets: list[EvalSet] = Field(min_length=1)
    mode: Literal["filter", "annotate"] = "filter"
    #: Exact rule: shared word n-gram size.
    ngram: int = Field(default=13, ge=3, le=50)
    #: Coverage rule: n-gram size and the share of an item's words that must be covered.
    overlap_ngram: int = Field(default=6, ge=3, le=50)
    min_coverage: float | None = Field(default=0.7, gt=0, le=1)
    #: The coverage rule judges only items with this many content words (short ones need ngram/whole).
    coverage_min_words: int = Field(default=10, ge=3)
    #: Which parts of an evaluation item are matched (each on its own).
    item_fields: list[Literal["question", "context", "options", "long_answer"]] = Field(
        default_factory=lambda: ["question", "context"]
    )
    #: Training row content searched (default: all content columns).
    fields: list[str] | None = None
    #: N-grams shared by this many evaluation items are boilerplate and ignored.
    max_item_frequency: int = Field(default=5, ge=2)
    #: Training row ids listed per hit item in the report.
    report_rows: int = Field(default=5, ge=0, le=100)

    @field_validator("eval_sets", mode="before")
    @classmethod
    def _paths(cls, v: Any) -> Any:
        if isinstance(v, (str, Path, dict)):
            v = [v]
        return [{"path": x} if isinstance(x, (str, Path)) else x for x in v]

    @field_validator("fields")
    @classmethod
    def _searchable(cls, v: list[str] | None) -> list[str] | None:
        bad = sorted(set(v or ()) - set(SEARCHABLE))
        if bad:
            raise ValueError(f"cannot search column(s) {bad}; searchable: {', '.join(SEARCHABLE)}")
        return v

    @model_validator(mode="after")
    def _sizes(self):
        if self.overlap_ngram > self.ngram:
            raise ValueError("overlap_ngram must not be larger than ngram")
        return self


@dataclass
class _Segment:
    """One matched field of one evaluation item; coverage counts its content words only."""

    item: int
    field: str
    content: frozenset[int]  # positions of content words


@dataclass
class _Item:
    set_name: str
    id: str
    locator: str


RULES = ("ngram", "whole", "coverage")  # strongest evidence first


@dataclass
class _Hit:
    rule: str = "coverage"
    rows: int = 0
    max_coverage: float | None = None
    example_rows: list[str] = field(default_factory=list)

    def add(self, rule: str, coverage: float | None, row_id: str, keep_ids: int) -> None:
        self.rows += 1
        self.rule = min(self.rule, rule, key=RULES.index)
        if coverage is not None:
            self.max_coverage = max(self.max_coverage or 0.0, coverage)
        if len(self.example_rows) < keep_ids:
            self.example_rows.append(row_id)


def _summary(found: dict[int, tuple[str, float | None]]) -> tuple[str, float | None]:
    """Strongest rule and best coverage of one row's hits."""
    rule = min((r for r, _ in found.values()), key=RULES.index)
    covs = [c for _, c in found.values() if c is not None]
    return rule, (round(max(covs), 4) if covs else None)


class ContaminationIndex:
    """Word n-gram index over evaluation items for the ngram, whole and coverage rules."""

    def __init__(self, n: int, m: int, max_item_frequency: int, coverage_min_words: int = 10):
        self.n, self.m = n, m
        self.max_item_frequency, self.coverage_min_words = max_item_frequency, coverage_min_words
        self.items: list[_Item] = []
        self.segments: list[_Segment] = []
        self.exact: dict[tuple[str, ...], set[int]] = defaultdict(set)
        self.whole: dict[tuple[str, ...], list[tuple[int, tuple[str, ...]]]] = defaultdict(list)
        self.cover: dict[tuple[str, ...], list[tuple[int, int]]] = defaultdict(list)
        self.too_short: list[str] = []
        self.boilerplate = 0

    def add(self, set_name: str, item: ExamItem, fields: Iterable[str]) -> None:
        idx = len(self.items)
        self.items.append(_Item(set_name, item.id, item.locator))
        usable = False
        for f in fields:
            value = " ".join(t for _, t in item.options) if f == "options" else getattr(item, f) or ""
            words = normalize_words(value)
            content = frozenset(i for i, w in enumerate(words) if w not in NON_CONTENT and not w.isdigit())
            if len(words) < self.m or len(content) < MIN_CONTENT_WORDS:
                continue
            usable = True
            seg = len(self.segments)
            self.segments.append(_Segment(idx, f, content))
            if len(words) >= self.n:
                for gram in ngrams(words, self.n):
                    self.exact[gram].add(seg)
            else:
                self.whole[tuple(words[:self.m])].append((seg, tuple(words)))
            if len(content) >= self.coverage_min_words:
                for pos, gram in enumerate(ngrams(words, self.m)):
                    self.cover[gram].append((seg, pos))
        if not usable:
            self.too_short.append(item.id)

    def prune(self) -> None:
        """Forget n-grams shared by many items: exam boilerplate, not contamination."""
        def n_items(segs: Iterable[int]) -> int:
            return len({self.segments[s].item for s in segs})

        for gram in [g for g, segs in self.exact.items() if n_items(segs) >= self.max_item_frequency]:
            del self.exact[gram]
            self.boilerplate += 1
        for gram in [g for g, hits in self.cover.items() if n_items(s for s, _ in hits) >= self.max_item_frequency]:
            del self.cover[gram]
            self.boilerplate += 1

    def match(self, text: str, min_coverage: float | None) -> dict[int, tuple[str, float | None]]:
        """Items hit by ``text``: {item index: (rule, coverage of its best field or None)}."""
        words = normalize_words(text)
        exact = {self.segments[seg].item for gram in ngrams(words, self.n) for seg in self.exact.get(gram, ())}
        whole: set[int] = set()
        covered: dict[int, set[int]] = defaultdict(set)
        for i, gram in enumerate(ngrams(words, self.m)):
            for seg, pos in self.cover.get(gram, ()):
                covered[seg].update(range(pos, pos + self.m))
            for seg, full in self.whole.get(gram, ()):
                if tuple(words[i:i + len(full)]) == full:
                    whole.add(self.segments[seg].item)
        coverage: dict[int, float] = {}
        for seg, positions in covered.items():
            s = self.segments[seg]
            coverage[s.item] = max(coverage.get(s.item, 0.0), len(s.content & positions) / len(s.content))
        hits: dict[int, tuple[str, float | None]] = {item: ("ngram", coverage.get(item)) for item in exact}
        for item in whole:
            hits.setdefault(item, ("whole", coverage.get(item)))
        if min_coverage is not None:
            for item, cov in coverage.items():
                if item not in hits and cov >= min_coverage:
                    hits[item] = ("coverage", cov)
        return hits


@register
class Decontaminate(GlobalStep):
    name = "decontaminate"
    description = ("Drop (or flag) training rows sharing long n-grams with evaluation sets (MedQA, MedMCQA, "
                   "PubMedQA, MMLU files); catches lightly edited copies; reports the items hit.")
    Params = DecontamParams
    worker_state = ("_index",)

    def setup(self, ctx: StepContext) -> None:
        p: DecontamParams = self.params
        index = ContaminationIndex(p.ngram, p.overlap_ngram, p.max_item_frequency, p.coverage_min_words)
        self._sets: list[dict[str, Any]] = []
        for es in p.eval_sets:
            name = es.name or Path(es.path).name
            n_items = 0
            skipped: list[str] = []
            for item in read_exam(es.path, es.format, cop_base=es.cop_base):
                if isinstance(item, Quarantine):
                    skipped.append(f"{Path(item.file or es.path).name}:{item.locator}: {item.error}")
                    continue
                index.add(name, item, p.item_fields)
                n_items += 1
            self._sets.append({"name": name, "path": ctx.display_path(es.path), "format": es.format or "auto",
                               "items": n_items, "skipped": len(skipped), "skipped_examples": skipped[:5]})
        if not index.items:
            raise ValueError("decontaminate: the evaluation sets hold no readable items")
        index.prune()
        self._index = index

    def fingerprint_extra(self, ctx: StepContext) -> str:
        parts = []
        for es in self.params.eval_sets:
            root = Path(es.path)
            files = sorted(f for f in root.rglob("*") if f.is_file()) if root.is_dir() else [root]
            parts += [f"{f}:{f.stat().st_size}:{f.stat().st_mtime_ns}" for f in files if f.exists()]
        return "|".join(parts)

    def apply(self, dataset: Dataset, ctx: StepContext) -> GlobalResult:
        p: DecontamParams = self.params
        matcher = RowMatcher(dataset, self._index, p.fields, p.min_coverage)
        hits: dict[int, _Hit] = {}
        row_hits: dict[int, dict[int, tuple[str, float | None]]] = {}
        for row, row_id, found in _matches(self, matcher, ctx):  # in row order: the report's examples are the first rows
            row_hits[row] = found
            for item, (rule, cov) in found.items():
                hits.setdefault(item, _Hit()).add(rule, cov, row_id, p.report_rows)
        self.stat_update("decontam.rows_flagged", len(row_hits))
        self.stat_update("decontam.items_hit", len(hits))
        report = self._report(hits, len(row_hits), len(dataset))
        if p.mode == "annotate":
            return GlobalResult(kept=self._annotate(dataset, row_hits, ctx), report=report)
        reasons = [None] * len(dataset)
        for row in row_hits:
            reasons[row] = "contaminated"
        result = split_by_reasons(dataset, reasons)
        result.report = report
        return result

    def _annotate(self, dataset: Dataset, row_hits: dict[int, dict[int, tuple[str, float | None]]],
                  ctx: StepContext) -> Dataset:
        items = self._index.items

        def add(batch: dict[str, list], indices: list[int]) -> dict[str, list]:
            metas = []
            for meta, i in zip(batch["meta"], indices):
                found = row_hits.get(i)
                if found:
                    rule, coverage = _summary(found)
                    row = {"meta": dict(meta)}
                    annotate(row, self.name, {"items": sorted(items[k].id for k in found)[:20], "rule": rule,
                                              "max_coverage": coverage})
                    meta = row["meta"]
                metas.append(meta)
            return {"meta": metas}

        return dataset.map(add, batched=True, with_indices=True, features=dataset.features,
                           cache_file_name=str(Path(ctx.step_dir) / "decontam-annotated.arrow"),
                           load_from_cache_file=False, desc="decontaminate (annotate)")

    def _report(self, hits: dict[int, _Hit], flagged: int, total: int) -> dict[str, Any]:
        index = self._index
        listed = sorted(hits.items(), key=lambda kv: (index.items[kv[0]].set_name, index.items[kv[0]].id))
        by_set = Counter(index.items[i].set_name for i in hits)
        return {
            "eval_sets": [{**s, "items_hit": by_set.get(s["name"], 0)} for s in self._sets],
            "rule": {"ngram": index.n, "overlap_ngram": index.m, "min_coverage": self.params.min_coverage,
                     "coverage_min_words": index.coverage_min_words},
            "items_too_short": len(index.too_short),
            "boilerplate_ngrams_ignored": index.boilerplate,
            "rows_checked": total,
            "rows_flagged": flagged,
            "items_hit": len(hits),
            "hits": [
                {"eval_set": index.items[i].set_name, "item_id": index.items[i].id,
                 "locator": index.items[i].locator, "rule": h.rule, "rows": h.rows,
                 "max_coverage": None if h.max_coverage is None else round(h.max_coverage, 4),
                 "example_rows": h.example_rows}
                for i, h in listed
            ],
        }


# -- matching rows, in parallel -------------------------------------------------------------

class RowMatcher:
    """The rows of a dataset matched against the evaluation index, a row range at a time.

    Forked workers inherit it (nothing is copied); a Ray task receives it pickled, which sends
    the dataset as its file paths and the index (the evaluation n-grams) once per task: the
    reference n-grams are broadcast, the rows are read where the task runs."""

    def __init__(self, dataset: Dataset, index: ContaminationIndex, fields: list[str] | None, min_coverage: float):
        self.dataset, self.index, self.fields, self.min_coverage = dataset, index, fields, min_coverage
        self.columns = [c for c in dataset.column_names if c == "id" or c in SEARCHABLE]
        self._table = None

    def __reduce__(self):  # the dataset as its file paths and the index; the table is reopened there
        return RowMatcher, (self.dataset, self.index, self.fields, self.min_coverage)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, span: slice) -> list[tuple[int, str, dict[int, tuple[str, float | None]]]]:
        """``(row, id, hits)`` of the rows in ``span`` that share n-grams with an item."""
        start, stop, _ = span.indices(len(self))
        if not self.columns or stop <= start:
            return []
        if self._table is None:  # the searchable columns, memory-mapped (a selection is gathered per span)
            self._table = self.dataset.select_columns(self.columns).with_format("arrow")
        out = []
        for offset, row in enumerate(self._table[start:stop].to_pylist()):
            found = self.index.match(text_of(row, self.fields), self.min_coverage)
            if found:
                out.append((start + offset, str(row.get("id")), found))
        return out


def _matches(step: Decontaminate, matcher: RowMatcher, ctx: StepContext) -> Iterator[tuple[int, str, dict]]:
    """Every flagged row, in row order: forked workers on this machine, Ray tasks on a cluster
    (counted as ``decontam.ray_tasks``)."""
    if ctx.executor == "ray":
        from meddata.engine import ray_ops

        stage = ray_ops.map_ranges(_match_task, matcher, len(matcher), desc="decontaminate")
        step.stat_update("decontam.ray_tasks", len(stage.infos))
        for found in stage.infos:
            yield from found
        return
    from meddata.filters.forked import map_row_ranges

    for _, _, found in map_row_ranges(matcher, list, ctx.num_proc):
        yield from found


def _match_task(matcher: RowMatcher, start: int, stop: int):
    from meddata.engine.ray_ops import Out

    return Out(info=matcher[start:stop])
