"""Engine-independent glue between a columnar batch and a step's row outcomes.

Every engine (local ``datasets``, Ray Data) calls :func:`run_batch` on its batches, so
steps behave the same wherever they run. Outcomes are encoded as rows with a
``__status__`` (keep / drop / quarantine) and a ``__reason__``; the first row of each batch
carries the step's counters as JSON in ``__stats__`` so they survive worker processes.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from datasets import Features, Value

from meddata.records import REASON_COLUMN, STATUS_COLUMN, mark_step
from meddata.steps import Drop, Mapper, Quarantine, StepContext, iter_outcomes

STATS_COLUMN = "__stats__"
CONSUMED_STAT = "_rows_consumed"


def with_internal(features: Features) -> Features:
    return Features(
        {**features, STATUS_COLUMN: Value("string"), REASON_COLUMN: Value("string"), STATS_COLUMN: Value("string")}
    )


def conform(row: Mapping[str, Any], columns: list[str]) -> dict[str, Any]:
    """Project a row onto the dataset columns; absent columns become None."""
    return {c: row.get(c) for c in columns}


def run_batch(batch: Mapping[str, list], *, step: Mapper, ctx: StepContext, columns: list[str]) -> dict:
    """Apply a row-level step to one columnar batch and encode the outcomes."""
    names = list(batch)
    rows = [dict(zip(names, values)) for values in zip(*batch.values())]
    step.ensure_setup(ctx)
    outcomes = step.process_batch(rows, ctx)
    if len(outcomes) != len(rows):
        raise RuntimeError(
            f"step {step.name!r}: process_batch returned {len(outcomes)} outcomes for {len(rows)} rows"
        )
    out: dict[str, list] = {c: [] for c in (*columns, STATUS_COLUMN, REASON_COLUMN, STATS_COLUMN)}
    consumed = 0
    for source_row, outcome in zip(rows, outcomes):
        kept_any = False
        for item in iter_outcomes(outcome):
            if isinstance(item, Drop):
                row, status, reason = dict(item.row), "drop", item.reason
            elif isinstance(item, Quarantine):
                row = dict(item.row or source_row)
                status = "quarantine"
                meta = row.get("meta") or {}
                where = f"{item.file or meta.get('file')}:{item.locator or meta.get('locator')}"
                reason = json.dumps({"error": item.error, "where": where})
            else:
                row, status, reason = mark_step(dict(item), step.name), "keep", None
                kept_any = True
            for c in columns:
                out[c].append(row.get(c))
            out[STATUS_COLUMN].append(status)
            out[REASON_COLUMN].append(reason)
            out[STATS_COLUMN].append(None)
        consumed += kept_any
    stats = step.take_stats()
    stats[CONSUMED_STAT] = consumed
    if out[STATS_COLUMN]:
        out[STATS_COLUMN][0] = json.dumps(stats)
    return out
