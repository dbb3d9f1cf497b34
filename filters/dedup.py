"""Duplicate removal as global steps: exact (normalised text) and near-duplicate (MinHash).

Both steps share what a user chooses about duplicates:

* ``fields`` – what is compared: content columns (``text``, ``messages``, ``question``...) or
  one role of a conversation (``messages.user`` compares only the user turns). Default: the
  whole example, as :func:`meddata.records.text_of` joins it.
* ``keep`` – which member of a cluster survives: ``first`` (row order), ``longest``
  (most characters) or ``quality`` (highest numeric ``meta.annotations[quality_key]``, e.g. a
  judge score; rows without it rank last). Ties go to the earlier row.
* ``scope`` – ``corpus`` compares every row with every other; ``patient`` compares only rows
  with the same ``meta.patient_id`` (copy-forward notes of one patient collapse, two patients'
  identical template notes both stay). Rows without a patient id form one group of their own.

Every dropped row carries ``meta.annotations.duplicate_of`` (the id of the row kept in its
place), so the drop log says why each row went; rows whose compared content is empty are
dropped as ``empty_text``. The step report lists clusters of two or more rows as
``{"members": [ids...], "kept": id}`` for the first ``CLUSTER_SAMPLE`` clusters (by first
member) and counts all clusters by size (``cluster_sizes``): a million-row build has tens of
thousands of clusters, which belong in the drop log (``duplicate_of``), not in ``stats.json``.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import re
from collections import Counter
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import pyarrow as pa
from datasets import Dataset
from meddata.filters.forked import (  # noqa: F401 (row_content, contents: re-exported for other dedup steps)
    LazyContents,
    LazyMeta,
    arrow_columns,
    contents,
    map_row_ranges,
    meta_values,
    row_content,
    sub_ranges,
)
from pydantic import Field, field_validator, model_validator

from meddata.records import CONTENT_COLUMNS, MESSAGE_COLUMNS, ROLES
from meddata.registry import register
from meddata.steps import GlobalResult, GlobalStep, StepContext, StepParams

EMPTY = "empty_text"
#: Clusters listed by id in a step report (all are counted by size).
CLUSTER_SAMPLE = 100
_PUNCT = re.compile(r"[^\w\s]+")


# -- what is compared ------------------------------------------------------------------------

def check_fields(fields: list[str] | None) -> list[str] | None:
    """Validate field specs: a content column, or ``<message column>.<role>``."""
    if fields is None:
        return None
    if not fields:
        raise ValueError("fields must name at least one column (or be left out for the whole example)")
    for spec in fields:
        col, _, role = spec.partition(".")
        if col not in CONTENT_COLUMNS:
            raise ValueError(f"unknown field {spec!r}; use one of {', '.join(CONTENT_COLUMNS)}")
        if role and (col not in MESSAGE_COLUMNS or role not in ROLES):
            raise ValueError(f"field {spec!r}: a role filter needs a message column "
                             f"({', '.join(MESSAGE_COLUMNS)}) and a role ({', '.join(ROLES)})")
    return fields


# -- which row survives ----------------------------------------------------------------------

class DedupParams(StepParams):
    """What every dedup step shares (see the module docstring)."""

    fields: list[str] | None = None
    keep: Literal["first", "longest", "quality"] = "first"
    quality_key: str | None = None
    scope: Literal["corpus", "patient"] = "corpus"

    @field_validator("fields")
    @classmethod
    def _fields(cls, v: list[str] | None) -> list[str] | None:
        return check_fields(v)

    @model_validator(mode="after")
    def _quality_key(self):
        if self.keep == "quality" and not self.quality_key:
            raise ValueError("keep: quality needs quality_key (a numeric key in meta.annotations, dotted for nested: judge.overall)")
        if self.quality_key and self.keep != "quality":
            raise ValueError("quality_key is only used with keep: quality")
        return self


def quality_scores(dataset: Dataset, key: str) -> tuple[np.ndarray, int]:
    """``meta.annotations[key]`` per row as a float; -inf (and counted) when missing or not numeric.
    A dotted key reaches into nested annotations: ``judge.overall``. Read a slice at a time
    into one float array (never a Python object per row)."""
    annotations = LazyMeta(dataset, "annotations")
    scores = np.full(len(dataset), -math.inf)
    found = 0
    path = key.split(".")
    for start, stop in sub_ranges(0, len(dataset), LazyContents.BATCH):
        for i, raw in enumerate(annotations[start:stop], start):
            value = json.loads(raw) if raw else None
            for part in path:
                value = value.get(part) if isinstance(value, dict) else None
            if not (isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value)):
                scores[i] = float(value)
                found += 1
    return scores, len(dataset) - found


def pick_kept(members: Sequence[int], keep: str, lengths: Sequence[int], scores: Sequence[float] | None) -> int:
    """The row of a cluster that survives; ties go to the earlier row."""
    if keep == "longest":
        return max(members, key=lambda i: (lengths[i], -i))
    if keep == "quality" and scores is not None:
        return max(members, key=lambda i: (scores[i], -i))
    return min(members)


def scope_values(dataset: Dataset, scope: str) -> list[str | None] | None:
    return meta_values(dataset, "patient_id") if scope == "patient" else None


def resolve(
    step: GlobalStep,
    dataset: Dataset,
    clusters: Sequence[Sequence[int]],
    empty: Sequence[int],
    reason: str,
    lengths: Sequence[int],
    report: dict[str, Any] | None = None,
) -> GlobalResult:
    """Drop all but one member of every cluster (``reason``) and the empty rows (``empty_text``).

    Dropped duplicates get ``meta.annotations.duplicate_of``; the report lists the clusters."""
    p: DedupParams = step.params
    scores = None
    if p.keep == "quality":
        scores, missing = quality_scores(dataset, p.quality_key)
        if missing:
            step.stat_update("dedup.missing_quality_score", missing)
    kept_of = [pick_kept(members, p.keep, lengths, scores) for members in clusters]
    listed_members = sorted({m for members in clusters[:CLUSTER_SAMPLE] for m in members})
    wanted = np.unique(np.asarray([*kept_of, *listed_members], dtype=np.int64))
    # ids only of the rows the decisions name (kept members, the listed sample), never of every row
    id_of = dict(zip(wanted.tolist(), arrow_columns(dataset, ["id"]).column("id").take(pa.array(wanted)).to_pylist())) \
        if len(wanted) else {}
    reasons: list[str | None] = [None] * len(dataset)
    for i in empty:
        reasons[i] = EMPTY
    duplicate_of: dict[int, str] = {}
    sizes: Counter = Counter()
    for members, kept in zip(clusters, kept_of):
        sizes[len(members)] += 1
        for m in members:
            if m != kept:
                reasons[m] = reason
                duplicate_of[m] = id_of[kept]
    listed = [{"members": [id_of[m] for m in sorted(members)], "kept": id_of[kept]}
              for members, kept in zip(clusters[:CLUSTER_SAMPLE], kept_of)]
    # decisions, not copies: the runner streams the rows once (kept -> checkpoint, dropped -> log)
    result = GlobalResult(source=dataset, reasons=reasons,
                          drop_notes={i: {"duplicate_of": kept_id} for i, kept_id in duplicate_of.items()})
    result.report = {
        **(report or {}),
        "n_clusters": len(clusters),
        "rows_in_clusters": sum(k * v for k, v in sizes.items()),
        "largest_cluster": max(sizes, default=0),
        reason: len(duplicate_of),
        EMPTY: len(empty),
        "cluster_sizes": {str(k): v for k, v in sorted(sizes.items())},
        "clusters": listed,
    }
    return result


# -- exact duplicates ------------------------------------------------------------------------

class ExactDedupParams(DedupParams):
    #: What the comparison ignores: any of case, whitespace, punctuation; true = all, false = none.
    normalize: list[Literal["case", "whitespace", "punctuation"]] = ["whitespace"]  # pydantic copies it

    @field_validator("normalize", mode="before")
    @classmethod
    def _bool(cls, v: Any) -> Any:
        if v is True:
            return ["case", "whitespace", "punctuation"]
        if v is False or v is None:
            return []
        return v


def normalize_exact(text: str, ignore: Sequence[str]) -> str:
    """Text as exact dedup compares it: case-folded, punctuation removed, whitespace collapsed."""
    if "case" in ignore:
        text = text.casefold()
    if "punctuation" in ignore:
        text = _PUNCT.sub("", text)
    if "whitespace" in ignore:
        text = " ".join(text.split())
    return text


class ScopedContents(Sequence[str]):
    """Texts prefixed with their scope value (a patient id), so equal texts of two scopes differ.
    The prefix is ``scope + "\x1f"``; :func:`exact_digests` measures the text after it."""

    def __init__(self, texts: Sequence[str], scope: Sequence[str | None]):
        self.texts, self.scope = texts, scope

    def __len__(self) -> int:
        return len(self.texts)

    def __getitem__(self, i):  # type: ignore[override]
        if isinstance(i, slice):
            return [f"{s}\x1f{t}" for s, t in zip(self.scope[i], self.texts[i])]
        return f"{self.scope[i]}\x1f{self.texts[i]}"


def exact_digests(texts: Sequence[str], ignore: tuple[str, ...],
                  scoped: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(16-byte digest of the normalised text, length, blank after normalising) per text; with
    ``scoped``, the scope prefix (``ScopedContents``) takes part in the digest, not in the length."""
    n = len(texts)
    digests = np.zeros(n, dtype="V16")
    lengths = np.zeros(n, dtype=np.int64)
    blank = np.zeros(n, dtype=bool)
    for i, raw in enumerate(texts):
        prefix, sep, text = raw.partition("\x1f") if scoped else ("", "", raw)
        lengths[i] = len(text)
        norm = normalize_exact(text, ignore)
        if not norm.strip():
            blank[i] = True
            continue
        digests[i] = np.void(hashlib.blake2b(f"{prefix}{sep}{norm}".encode(), digest_size=16).digest())
    return digests, lengths, blank


def digest_groups(digests: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """Groups of two or more equal digests: (members, group by group, each group ascending;
    the cuts between groups; the number of distinct digests)."""
    uniq, inverse, counts = np.unique(digests, return_inverse=True, return_counts=True)
    dup = counts[inverse] > 1
    members, group = rows[dup], inverse[dup]
    order = np.lexsort((members, group))
    members, group = members[order], group[order]
    return members, np.flatnonzero(np.diff(group)) + 1, len(uniq)


def _digest_task(texts: Sequence[str], start: int, stop: int, ignore: tuple[str, ...], scoped: bool):
    """A Ray task's rows: lengths and blankness for the caller; (digest, row) of every
    non-blank row, partitioned by digest (the groupby's map side)."""
    from meddata.engine.ray_ops import Out

    parts = [exact_digests(texts[a:b], ignore, scoped) for a, b in sub_ranges(start, stop)]
    digests, lengths, blank = (np.concatenate([p[k] for p in parts]) for k in range(3))
    rows = np.flatnonzero(~blank)
    digests = digests[rows]
    return Out(info=(lengths, blank), keys=digests.view(np.uint64)[0::2],
               records={"digest": digests, "row": rows + start})


def _digest_group_task(records: dict[str, np.ndarray]):
    """One partition of digests: its groups (the groupby's reduce side)."""
    from meddata.engine.ray_ops import Out

    if not len(records["row"]):
        return Out(info=(np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64), 0))
    return Out(info=digest_groups(records["digest"], records["row"]))


def _split_groups(members: np.ndarray, cuts: np.ndarray) -> list[list[int]]:
    return [c.tolist() for c in np.split(members, cuts)] if len(members) else []


@register
class ExactDedup(GlobalStep):
    name = "exact_dedup"
    description = ("Drop exact duplicates of normalised content (case/whitespace/punctuation), keeping the "
                   "first, longest or best-scored row, corpus-wide or within a patient.")
    Params = ExactDedupParams

    def apply(self, dataset: Dataset, ctx: StepContext) -> GlobalResult:
        p: ExactDedupParams = self.params
        n = len(dataset)
        texts = LazyContents(dataset, p.fields)
        if p.scope == "patient":
            texts = ScopedContents(texts, LazyMeta(dataset, "patient_id"))
        ignore, scoped = tuple(p.normalize), p.scope == "patient"
        # compact columns, not texts: a 16-byte digest and a length per row, computed by
        # workers that read their own rows (the driver never holds the texts)
        lengths = np.zeros(n, dtype=np.int64)
        blank = np.zeros(n, dtype=bool)
        if ctx.executor == "ray":  # a groupby on the digest: map tasks partition, reduce tasks group
            from meddata.engine import ray_ops

            mapped = ray_ops.map_ranges(_digest_task, texts, n, partitions=ray_ops.default_partitions(),
                                        args=(ignore, scoped), desc=f"{self.name} digests")
            for (a, b), (ln, bl) in zip(mapped.spans, mapped.infos):
                lengths[a:b], blank[a:b] = ln, bl
            grouped = ray_ops.reduce_partitions(_digest_group_task, mapped.parts, desc=f"{self.name} groups")
            clusters = [c for members, cuts, _ in grouped.infos for c in _split_groups(members, cuts)]
            unique = sum(info[2] for info in grouped.infos)
        else:
            digests = np.zeros(n, dtype="V16")
            digest = functools.partial(exact_digests, ignore=ignore, scoped=scoped)
            for a, b, (d, ln, bl) in map_row_ranges(texts, digest, ctx.num_proc):
                digests[a:b], lengths[a:b], blank[a:b] = d, ln, bl
            rows = np.flatnonzero(~blank)
            members, cuts, unique = digest_groups(digests[rows], rows)
            clusters = _split_groups(members, cuts)
        clusters.sort(key=lambda g: g[0])
        empty = np.flatnonzero(blank).tolist()
        return resolve(self, dataset, clusters, empty, "exact_duplicate", lengths, {"unique": unique})


# -- near duplicates -------------------------------------------------------------------------

class MinHashDedupParams(DedupParams):
    threshold: float = Field(0.8, gt=0.0, lt=1.0, description="Jaccard similarity of shingle sets")
    ngram: int = Field(5, ge=1, le=16)
    unit: Literal["word", "char"] = "word"
    num_perm: int = Field(128, ge=16, le=1024)
    seed: int = 1
    #: Case-, punctuation- and whitespace-insensitive shingles.
    normalize: bool = True
    #: Check candidate pairs near the threshold with exact Jaccard (LSH then tuned for recall).
    verify: bool = True
    #: With verify: chance that a pair exactly at the threshold becomes an LSH candidate.
    min_recall: float = Field(0.995, gt=0.5, lt=1.0)
    #: Worker processes for signatures (default: the run's num_proc).
    num_proc: int | None = Field(None, ge=1)


@register
class MinHashDedup(GlobalStep):
    name = "minhash_dedup"
    description = ("Drop near-duplicates: MinHash + LSH on word or character n-grams, clusters by "
                   "connected components over all candidate pairs, optional exact Jaccard check.")
    Params = MinHashDedupParams

    def apply(self, dataset: Dataset, ctx: StepContext) -> GlobalResult:
        from meddata.filters.minhash import Shingler, near_duplicates

        p: MinHashDedupParams = self.params
        texts = LazyContents(dataset, p.fields)
        ctx.step_dir.mkdir(parents=True, exist_ok=True)
        options = dict(threshold=p.threshold, shingler=Shingler(p.ngram, p.unit, p.normalize), num_perm=p.num_perm,
                       seed=p.seed, verify=p.verify, min_recall=p.min_recall, workdir=ctx.step_dir)
        if ctx.executor == "ray":  # band-key groupby, verification and components as Ray tasks
            scope = LazyMeta(dataset, "patient_id") if p.scope == "patient" else None
        else:
            scope = scope_values(dataset, p.scope)
        found = near_duplicates(texts, scope=scope, num_proc=p.num_proc or ctx.num_proc, executor=ctx.executor,
                                **options)
        lengths, empty = found.lengths, np.flatnonzero(found.blank).tolist()  # measured by the workers
        clusters = [c.tolist() for c in found.clusters()]  # empty texts have no shingles: never in one
        report = {"bands": found.bands, "rows": found.rows, "candidate_pairs": found.candidate_pairs,
                  "identical_pairs": found.identical_pairs, "verified_pairs": found.verified_pairs,
                  "accepted_pairs": found.accepted_pairs, "no_shingles": found.no_shingles - len(empty)}
        return resolve(self, dataset, clusters, empty, "near_duplicate", lengths, report)
