"""One global step, run where the engine puts it: decide, then write kept rows and the drop log.

Global steps see the whole dataset (dedup, split, mix). Their work and their decisions (a
reason per row, new columns, drop notes) grow with the data, so :func:`run_global_step` runs
away from the driver (a forked child on one machine, a Ray task on a cluster) and hands back
only counts: a :class:`~meddata.engine.sink.SinkReport` and the step's small report.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from datasets import Features

from meddata.engine.checkpoint import Checkpoint
from meddata.engine.sink import SinkReport, StepSink, read_shards
from meddata.errors import UserError
from meddata.records import REASON_COLUMN
from meddata.steps import GlobalResult, GlobalStep, StepContext, annotate_row

#: Rows per Arrow slice when a global step's decisions are streamed.
GLOBAL_BATCH = 10_000


class DecisionsMismatch(UserError, RuntimeError):
    """A global step decided about a different number of rows than it was given."""


@dataclass
class GlobalOutcome:
    """What the driver gets back from a global step: counts and the step's own report."""

    sink: SinkReport
    report: dict[str, Any] = field(default_factory=dict)


def run_global_step(step: GlobalStep, source: Checkpoint, ctx: StepContext, features: Features,
                    step_dir: Path) -> GlobalOutcome:
    """Open ``source`` here, apply ``step`` and write its kept rows and drops into ``step_dir``."""
    ds = source.open()
    step.ensure_setup(ctx)
    result = step.apply(ds, ctx)
    sink = StepSink(step_dir, 0, step.name, features.arrow_schema)
    try:
        if result.decided:
            flat = result.source is ds and ds._indices is None
            write_decisions(result, sink, read_shards(list(source.dirs)) if flat else None)
        else:
            extra = set(result.kept.column_names) - set(ds.column_names)
            if extra:
                raise RuntimeError(f"global step {step.name!r} added undeclared columns {sorted(extra)}")
            for table in result.kept.with_format("arrow").iter(batch_size=GLOBAL_BATCH):
                sink.keep_table(complete(table, sink.schema))
            if result.dropped is not None and len(result.dropped):
                for table in result.dropped.with_format("arrow").iter(batch_size=GLOBAL_BATCH):
                    for row in table.to_pylist():
                        sink.drop(row, row.pop(REASON_COLUMN))
    finally:
        report = sink.close()
        if step.is_worker_copy:  # this task's own copy of the step: release it
            step.teardown()
    report.counters.update(step.take_stats())
    return GlobalOutcome(report, result.report)


def write_decisions(result: GlobalResult, sink: StepSink, batches: Iterator[pa.RecordBatch] | None = None) -> None:
    """Stream the source once: kept rows (plus new columns) to the shard, dropped rows to the log.
    ``batches``: the source's rows read from its checkpoint files (see ``read_shards``)."""
    src = result.source
    n = len(src)
    for name in result.new_columns:
        if name not in sink.schema.names:
            raise RuntimeError(f"a global step added undeclared column {name!r}")
    if batches is None:
        table = src.data.table if src._indices is None else None
        batches = (table.slice(off, GLOBAL_BATCH) if table is not None
                   else src.with_format("arrow")[off:off + GLOBAL_BATCH] for off in range(0, n, GLOBAL_BATCH))
    off = 0
    for record_batch in batches:
        batch = pa.Table.from_batches([record_batch]) if isinstance(record_batch, pa.RecordBatch) else record_batch
        start, stop = off, off + batch.num_rows
        off = stop
        if not batch.num_rows:
            continue
        reasons = result.reasons[start:stop]
        keep = [r is None for r in reasons]
        kept = batch.filter(pa.array(keep)) if not all(keep) else batch
        for name, values in result.new_columns.items():
            col = pa.array(values[start:stop], sink.schema.field(name).type)
            col = col if all(keep) else col.filter(pa.array(keep))
            at = kept.column_names.index(name) if name in kept.column_names else -1
            kept = kept.set_column(at, name, col) if at >= 0 else kept.append_column(name, col)
        sink.keep_table(complete(kept, sink.schema))
        if all(keep):
            continue
        dropped = batch.filter(pc.invert(pa.array(keep)))
        drop_idx = [start + j for j, k in enumerate(keep) if not k]
        for idx, row in zip(drop_idx, dropped.to_pylist()):
            sink.drop(annotate_row(row, result.drop_notes.get(idx)), result.reasons[idx])
    if off != n:
        raise DecisionsMismatch(f"the decisions cover {n:,} rows but the step's input has {off:,}")


def complete(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """Add the schema's columns a table lacks, as nulls."""
    for f in schema:
        if f.name not in table.column_names:
            table = table.append_column(f.name, pa.nulls(table.num_rows, f.type))
    return table

