"""Engine-independent glue between a batch of rows and a step's outcomes.

Every engine (local processes, Ray tasks) calls :func:`run_batch` for row-level steps and
:func:`run_builder` for builders, writing into a :class:`~meddata.engine.sink.StepSink`, so
steps behave the same wherever they run.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from tqdm.auto import tqdm

from meddata.engine.sink import StepSink
from meddata.records import RecordError, mark_step, validate_row
from meddata.steps import Builder, Drop, Filter, Mapper, Quarantine, StepContext, iter_outcomes

#: Rows per Arrow slice when a worker walks its part of a dataset.
READ_BATCH = 1000


def conform(row: dict[str, Any], columns: list[str]) -> dict[str, Any]:
    """Project a row onto the dataset columns; absent columns become None."""
    return {c: row.get(c) for c in columns}


def _where(item: Quarantine, row: dict) -> str:
    meta = row.get("meta") or {}
    return f"{item.file or meta.get('file')}:{item.locator or meta.get('locator')}"


def run_batch(rows: list[dict], *, step: Mapper, ctx: StepContext, columns: list[str], sink: StepSink) -> None:
    """Apply a row-level step to a list of rows; every outcome goes to ``sink``."""
    step.ensure_setup(ctx)
    outcomes = step.process_batch(rows, ctx)
    if len(outcomes) != len(rows):
        raise RuntimeError(f"step {step.name!r}: process_batch returned {len(outcomes)} outcomes for {len(rows)} rows")
    for source_row, outcome in zip(rows, outcomes):
        kept_any = False
        for item in iter_outcomes(outcome):
            if isinstance(item, Drop):
                sink.drop(dict(item.row), item.reason)
            elif isinstance(item, Quarantine):
                row = dict(item.row or source_row)
                sink.quarantine({"id": row.get("id"), "error": item.error, "where": _where(item, row)}, item.service)
            else:
                sink.keep(conform(mark_step(dict(item), step.name), columns))
                kept_any = True
        sink.report.consumed += kept_any
    sink.count(step.take_stats())


def with_step_appended(table: pa.Table, step_name: str) -> pa.Table:
    """``meta.steps`` of every row plus ``step_name``, in Arrow (what :func:`mark_step` does per row)."""
    if not table.num_rows or "meta" not in table.column_names:
        return table
    meta = table.column("meta").combine_chunks()
    steps = meta.field("steps")
    lengths = pc.fill_null(pc.list_value_length(steps), 0).to_numpy(zero_copy_only=False).astype(np.int64)
    flat = steps.flatten()
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths + 1, out=offsets[1:])
    # new position of each old value: its old position shifted by one per earlier row
    source = np.full(int(offsets[-1]), len(flat), dtype=np.int64)  # default: the appended name
    if len(flat):
        row_of = np.repeat(np.arange(len(lengths)), lengths)
        source[np.arange(len(flat)) + row_of] = np.arange(len(flat))
    values = pa.concat_arrays([flat, pa.array([step_name], flat.type)]).take(pa.array(source))
    new_steps = pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), values, type=steps.type)
    fields = [new_steps if f.name == "steps" else meta.field(f.name) for f in meta.type]
    new_meta = pa.StructArray.from_arrays(fields, fields=list(meta.type), mask=meta.is_null())
    return table.set_column(table.column_names.index("meta"), "meta", new_meta)


def run_filter_batch(table: pa.Table, *, step: Filter, ctx: StepContext, sink: StepSink) -> None:
    """A filter that does not change rows: its decisions become a mask over the Arrow batch, so
    kept rows are written without being rebuilt from Python dicts (same rows as ``run_batch``)."""
    step.ensure_setup(ctx)
    rows = table.to_pylist()
    outcomes = step.process_batch(rows, ctx)
    if len(outcomes) != len(rows):
        raise RuntimeError(f"step {step.name!r}: process_batch returned {len(outcomes)} outcomes for {len(rows)} rows")
    keep = []
    for row, outcome in zip(rows, outcomes):
        if isinstance(outcome, Drop):
            sink.drop(dict(outcome.row), outcome.reason)
            keep.append(False)
        elif isinstance(outcome, Quarantine):
            sink.quarantine({"id": row.get("id"), "error": outcome.error, "where": _where(outcome, row)}, outcome.service)
            keep.append(False)
        elif outcome is row:
            keep.append(True)
        else:
            raise RuntimeError(f"step {step.name!r} declares rows_unchanged but returned a new row")
    kept = table.filter(pa.array(keep, pa.bool_())) if not all(keep) else table
    sink.keep_table(with_step_appended(kept, step.name))
    sink.report.consumed += kept.num_rows
    sink.count(step.take_stats())


def iter_rows(table: pa.Table, start: int, stop: int, batch: int = READ_BATCH) -> Iterator[list[dict]]:
    """Rows ``start:stop`` of a (memory-mapped) table as lists of dicts, ``batch`` at a time."""
    for off in range(start, stop, batch):
        yield table.slice(off, min(batch, stop - off)).to_pylist()


def map_range(step: Mapper, ctx: StepContext, table: pa.Table, start: int, stop: int, sink: StepSink,
              progress: bool = False) -> None:
    """Run ``step`` over rows ``start:stop`` of ``table`` into ``sink``."""
    columns = sink.schema.names
    as_mask = isinstance(step, Filter) and step.rows_unchanged
    with tqdm(total=stop - start, desc=step.name, unit=" rows", leave=False, disable=not progress) as bar:
        if as_mask:
            for off in range(start, stop, step.batch_size):
                part = table.slice(off, min(step.batch_size, stop - off))
                run_filter_batch(part, step=step, ctx=ctx, sink=sink)
                bar.update(part.num_rows)
        else:
            for rows in iter_rows(table, start, stop, step.batch_size):
                run_batch(rows, step=step, ctx=ctx, columns=columns, sink=sink)
                bar.update(len(rows))
        bar.refresh()  # a non-terminal shows only the last refresh: make it the final count


def run_builder(builder: Builder, ctx: StepContext, sink: StepSink, *, limit: int | None, progress: bool = True) -> None:
    """Stream a builder's rows into ``sink``; invalid rows are quarantined with file:line."""
    columns = sink.schema.names
    builder.ensure_setup(ctx)
    seen = 0
    with tqdm(desc=f"read {builder.name}", unit=" rows", leave=False, disable=not progress) as bar:
        for item in builder.read(ctx):
            if limit is not None and seen >= limit:
                break
            seen += 1
            bar.update()
            if isinstance(item, Quarantine):
                sink.quarantine({"error": item.error, "file": item.file, "locator": item.locator}, item.service)
            elif isinstance(item, Drop):
                sink.drop(dict(item.row), item.reason)
            else:
                meta = item.get("meta") or {}
                try:
                    validate_row(item, where=f"{meta.get('file')}:{meta.get('locator')}")
                except RecordError as exc:
                    sink.quarantine({"error": str(exc), "file": meta.get("file"), "locator": meta.get("locator")})
                    continue
                sink.keep(conform(item, columns))
        bar.refresh()  # a non-terminal shows only the last refresh: make it the final count
    sink.count(builder.take_stats())
