"""Mixing: combine sources by weights or target counts, with caps and named stages.

One ``mix`` step decides how many rows each source contributes (rows carry ``source``):

    - mix: {weights: {medquad: 0.7, chatdoctor: 0.3}}            # largest mix without repeats
    - mix: {weights: {medquad: 0.7, chatdoctor: 0.3}, total: 5000} # up- and down-sampled to 5,000
    - mix: {counts: {medquad: 2000, chatdoctor: 500}, caps: {"*": 1500}}

* ``weights`` are relative shares of the output. Without ``total`` the step takes the largest
  mixture with exactly these shares that needs no repeated row (caps count as availability).
  With ``total`` it up-samples or down-samples every source to hit its share.
* ``counts`` are target rows per source; a source with fewer rows is up-sampled.
* ``caps`` are hard per-source limits applied after the targets (``"*"`` = every source).
* ``upsample: false`` never repeats a row (targets above the available rows are cut).
* Sources named in neither ``weights`` nor ``counts`` are kept as they are (``unlisted: keep``)
  or dropped with reason ``mix_unlisted_source`` (``unlisted: drop``).
* When a ``split`` step ran before, only the ``splits`` listed (default ``[train]``) are mixed;
  validation and test rows pass through untouched. Put ``mix`` after ``split`` so the copies
  of an up-sampled row stay on one side of the split.

Sampling is seeded (recipe ``seed`` or the step's own). Down-sampled rows go to the drop log
with reason ``mix_downsampled``; an up-sampled row keeps its id on the first copy and the
others get ``<id>#dup1``, ``<id>#dup2``, ... so ids stay unique.

**Stages** for multi-stage instruction tuning (general medical knowledge first, then dialogue,
as HuatuoGPT-II and DISC-MedLLM train) are named mixtures drawn from the same pool:

    - mix:
        stages:
          stage1: {weights: {textbook: 0.6, medquad: 0.4}, total: 20000}
          stage2: {counts: {dialogue: 5000, medquad: 2000}}

Each stage samples independently (a row may serve several stages, as a ``#dupN`` copy);
every selected row gets ``meta.annotations.stage``; rows no stage picked are dropped as
``mix_downsampled``. Select one stage with
``ds.filter(lambda r: json.loads(r["meta"]["annotations"]).get("stage") == "stage1")``.
The step's report (stats.json, the card and the HTML report) records the mixture.
"""

from __future__ import annotations

import json
import math
import random
import uuid
from collections import Counter, defaultdict
from typing import Any, Literal

from datasets import Dataset
from pydantic import Field, field_validator, model_validator

from meddata.recipe import RecipeError
from meddata.records import SPLIT_COLUMN
from meddata.registry import register
from meddata.steps import GlobalResult, GlobalStep, StepContext, StepParams, split_by_reasons

DOWNSAMPLED = "mix_downsampled"
UNLISTED = "mix_unlisted_source"
DEFAULT_STAGE = "default"


class MixSpec(StepParams):
    """One mixture: weights (shares) or counts (rows per source), optional total and caps."""

    weights: dict[str, float] | None = None
    counts: dict[str, int] | None = None
    total: int | None = Field(default=None, gt=0)
    caps: dict[str, int] = Field(default_factory=dict)

    @field_validator("weights")
    @classmethod
    def _weights(cls, v: dict[str, float] | None) -> dict[str, float] | None:
        if v is not None:
            if not v or any(w < 0 for w in v.values()) or sum(v.values()) <= 0:
                raise ValueError("weights must be a non-empty mapping of non-negative shares with a positive sum")
        return v

    @field_validator("counts", "caps")
    @classmethod
    def _non_negative(cls, v: dict[str, int] | None) -> dict[str, int] | None:
        if v is not None and any(n < 0 for n in v.values()):
            raise ValueError("row counts must be >= 0")
        return v

    @model_validator(mode="after")
    def _one_kind(self):
        if (self.weights is None) == (self.counts is None):
            raise ValueError("give exactly one of 'weights' (shares) or 'counts' (rows per source)")
        if self.total is not None and self.weights is None:
            raise ValueError("'total' goes with 'weights'; with 'counts' the total is their sum")
        return self

    def listed(self) -> set[str]:
        return set(self.weights or self.counts or {})


class MixParams(StepParams):
    weights: dict[str, float] | None = None
    counts: dict[str, int] | None = None
    total: int | None = Field(default=None, gt=0)
    caps: dict[str, int] = Field(default_factory=dict)
    #: Named mixtures for multi-stage tuning; excludes top-level weights/counts/total.
    #: Top-level ``caps`` apply to every stage unless the stage sets its own for a source.
    stages: dict[str, MixSpec] | None = None
    upsample: bool = True
    unlisted: Literal["keep", "drop"] = "keep"
    #: With a split column present, mix only these splits (others pass through).
    splits: list[str] = Field(default_factory=lambda: ["train"])
    seed: int | None = None

    @field_validator("stages")
    @classmethod
    def _stage_names(cls, v: dict[str, MixSpec] | None) -> dict[str, MixSpec] | None:
        if v is not None:
            if not v:
                raise ValueError("stages must name at least one stage")
            bad = [k for k in v if not k.replace("_", "").replace("-", "").isalnum()]
            if bad:
                raise ValueError(f"stage names may use letters, digits, '-' and '_' only: {bad}")
        return v

    @model_validator(mode="after")
    def _shape(self):
        if self.stages is not None:
            if self.weights is not None or self.counts is not None or self.total is not None:
                raise ValueError("with 'stages', put weights/counts/total inside each stage")
        else:
            MixSpec(weights=self.weights, counts=self.counts, total=self.total, caps=self.caps)
        return self

    def specs(self) -> dict[str, MixSpec]:
        """Stage name -> mixture (one unnamed stage when no stages are given)."""
        if self.stages is None:
            return {DEFAULT_STAGE: MixSpec(weights=self.weights, counts=self.counts, total=self.total,
                                           caps=self.caps)}
        return {name: spec.model_copy(update={"caps": {**self.caps, **spec.caps}})
                for name, spec in self.stages.items()}


def _cap(caps: dict[str, int], source: str) -> int | None:
    return caps.get(source, caps.get("*"))


def _apportion(shares: dict[str, float], total: int) -> dict[str, int]:
    """Integer targets summing to ``total`` (largest remainder), deterministic on ties."""
    raw = {s: share * total for s, share in shares.items()}
    out = {s: math.floor(v) for s, v in raw.items()}
    left = total - sum(out.values())
    for s in sorted(raw, key=lambda s: (-(raw[s] - out[s]), s))[:left]:
        out[s] += 1
    return out


def targets(spec: MixSpec, available: dict[str, int], upsample: bool) -> dict[str, int]:
    """Rows each listed source contributes to one stage."""
    if spec.counts is not None:
        want = dict(spec.counts)
    else:
        weights = spec.weights or {}
        norm = sum(weights.values())
        shares = {s: w / norm for s, w in weights.items()}
        total = spec.total
        if total is None:  # the largest mixture with these shares that needs no repeated row
            limits = []
            for s, share in shares.items():
                if share > 0:
                    cap = _cap(spec.caps, s)
                    have = available.get(s, 0) if cap is None else min(cap, available.get(s, 0))
                    limits.append(have / share)
            total = math.floor(min(limits) + 1e-9) if limits else 0
        want = _apportion(shares, total)
    for s in want:
        cap = _cap(spec.caps, s)
        if cap is not None:
            want[s] = min(want[s], cap)
        if not upsample:
            want[s] = min(want[s], available.get(s, 0))
    return want


def sample(n: int, k: int, rng: random.Random) -> list[int]:
    """``k`` positions out of ``n``: without replacement when k <= n, else every row
    ``k // n`` times plus a random remainder (balanced up-sampling, not i.i.d. draws)."""
    if n == 0 or k == 0:
        return []
    full, rest = divmod(k, n)
    picks = [i for _ in range(full) for i in range(n)]
    picks.extend(rng.sample(range(n), rest))
    return sorted(picks)


@register
class Mix(GlobalStep):
    name = "mix"
    description = "Mix sources by weights or target counts (seeded up/down-sampling), with caps and named stages."
    Params = MixParams
    creates_rows = True
    input_columns = ("source",)

    def apply(self, dataset: Dataset, ctx: StepContext) -> GlobalResult:
        p: MixParams = self.params
        seed = ctx.seed if p.seed is None else p.seed
        sources: list[str] = dataset["source"] if len(dataset) else []
        split_col = dataset[SPLIT_COLUMN] if SPLIT_COLUMN in dataset.column_names and len(dataset) else None
        if split_col is not None and all(s is None for s in split_col):
            split_col = None  # the column exists (a later split step declares it) but no split ran yet
        specs = p.specs()
        listed = set().union(*(s.listed() for s in specs.values()))

        pools: dict[str, list[int]] = defaultdict(list)  # source -> row indices taking part in the mix
        selections: list[list[str | None]] = [[] for _ in range(len(dataset))]
        reasons: list[str | None] = [None] * len(dataset)
        passthrough: Counter[str] = Counter()
        for i, src in enumerate(sources):
            if split_col is not None and split_col[i] not in p.splits:
                selections[i].append(None)
                passthrough[f"split:{split_col[i]}"] += 1
            elif src in listed:
                pools[src].append(i)
            elif p.unlisted == "keep":
                selections[i].append(None)
                passthrough[f"source:{src}"] += 1
            else:
                reasons[i] = UNLISTED

        present = sorted(set(sources))
        missing = sorted(listed - set(pools))
        if missing and len(dataset):
            raise RecipeError(
                f"step 'mix': no row has source {', '.join(repr(m) for m in missing)} "
                f"(sources in the data{' being mixed' if split_col is not None else ''}: {', '.join(present)})"
            )
        available = {s: len(idx) for s, idx in pools.items()}
        report: dict[str, Any] = {
            "mode": "stages" if p.stages is not None else ("weights" if p.weights is not None else "counts"),
            "seed": seed, "upsample": p.upsample, "unlisted": p.unlisted,
            "splits": p.splits if split_col is not None else None,
            "passthrough": dict(passthrough), "stages": {},
        }
        for stage, spec in specs.items():
            want = targets(spec, available, p.upsample)
            stage_report: dict[str, Any] = {"total": sum(want.values()), "sources": {}}
            for src in sorted(want):
                rng = random.Random(f"{seed}:{stage}:{src}")
                pool = pools.get(src, [])
                picks = sample(len(pool), want[src], rng)
                for pos in picks:
                    selections[pool[pos]].append(None if p.stages is None else stage)
                stage_report["sources"][src] = {
                    "available": len(pool),
                    "weight": (spec.weights or {}).get(src),
                    "count": (spec.counts or {}).get(src),
                    "cap": _cap(spec.caps, src),
                    "rows": want[src],
                    "unique_rows": len(set(picks)),
                    "share": round(want[src] / stage_report["total"], 4) if stage_report["total"] else 0.0,
                }
            report["stages"][stage] = stage_report
        for pool in pools.values():
            for i in pool:
                if not selections[i]:
                    reasons[i] = DOWNSAMPLED

        order: list[int] = []
        stage_of: list[str | None] = []
        copy_no: list[int] = []
        for i, sel in enumerate(selections):
            for k, stage in enumerate(sel):
                order.append(i)
                stage_of.append(stage)
                copy_no.append(k)
        dropped = split_by_reasons(dataset, reasons).dropped
        created = len(order) - sum(1 for sel in selections if sel)
        self.stat_update("mix.created", created)
        self.stat_update("mix.downsampled", sum(1 for r in reasons if r == DOWNSAMPLED))
        report["rows_out"] = len(order)
        report["copies_created"] = created
        kept = dataset.select(order)
        if created or p.stages is not None:
            kept = kept.map(
                _relabel, batched=True, with_indices=True,
                fn_kwargs={"stage_of": stage_of, "copy_no": copy_no},
                cache_file_name=str(ctx.step_dir / "mix.arrow"), load_from_cache_file=False, desc="mix",
                new_fingerprint=uuid.uuid4().hex,  # skip hashing the per-row label lists
            )
        return GlobalResult(kept=kept, dropped=dropped, report=report)


def _relabel(batch: dict[str, list], indices: list[int], stage_of: list[str | None],
             copy_no: list[int]) -> dict[str, list]:
    """Suffix ids of repeated copies with ``#dupN`` and write the stage annotation."""
    ids, metas = list(batch["id"]), list(batch["meta"])
    for j, idx in enumerate(indices):
        if copy_no[idx]:
            ids[j] = f"{ids[j]}#dup{copy_no[idx]}"
        stage = stage_of[idx]
        if stage is not None:
            meta = dict(metas[j])
            ann = json.loads(meta.get("annotations") or "{}")
            ann["stage"] = stage
            meta["annotations"] = json.dumps(ann, sort_keys=True)
            metas[j] = meta
    return {"id": ids, "meta": metas}
