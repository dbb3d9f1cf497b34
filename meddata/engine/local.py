"""The default engine: worker processes on this machine.

A builder streams into one sink; one whose
:meth:`~meddata.steps.Builder.independent_files` lists several input files has each
contiguous slice k of its sorted file list read by a worker into shard k, so the shards in
order are the checkpoint a single read writes. Row-level steps split the input (memory-mapped
Arrow) into contiguous row ranges; each range runs in a worker process (each runs the step's
``setup`` once) and writes its own shard, drop log and quarantine file, so no row passes
through the driver and the rows a step keeps are written exactly once. Builders, global steps
and the outputs run in a forked child (:meth:`LocalEngine.run_task`). With ``num_proc=1``
everything runs in this one process (the way to debug a step).
"""

from __future__ import annotations

import dataclasses
import math
import multiprocessing
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any, TypeVar

from datasets import Features
from tqdm.auto import tqdm

from meddata.engine.base import Engine, register_engine
from meddata.engine.batch import map_range, run_builder
from meddata.engine.checkpoint import Checkpoint
from meddata.engine.child import in_child
from meddata.engine.sink import SinkReport, StepSink
from meddata.steps import Builder, Mapper, StepContext

T = TypeVar("T")

#: Most rows one worker task handles (several tasks per worker keep the progress bar moving).
SHARD_ROWS = 50_000
#: Most file slices per worker in a split read: a few per worker even out files of unequal size.
READ_PARTS_PER_WORKER = 4


def plan_shards(n_rows: int, workers: int, min_rows: int) -> list[tuple[int, int]]:
    """Contiguous row ranges: at least one per worker, none over SHARD_ROWS, none (but the
    only one) under ``min_rows``."""
    if n_rows == 0:
        return [(0, 0)]
    n = max(workers, math.ceil(n_rows / SHARD_ROWS))
    n = max(1, min(n, n_rows // max(min_rows, 1)))
    size = math.ceil(n_rows / n)
    return [(s, min(s + size, n_rows)) for s in range(0, n_rows, size)]


def plan_read_parts(builder: Builder, ctx: StepContext, workers: int, limit: int | None) -> list[tuple[str, ...]]:
    """The file slices separate tasks read (``StepContext.files``), contiguous and in order, so
    their shards in order hold one read's rows; none (one task reads everything) unless the
    builder reads its files independently, has several, several workers are there and no
    ``limit`` asks for the first rows only (they are counted in file order, by one read)."""
    if limit is not None or workers <= 1:
        return []
    try:
        files = [str(f) for f in builder.independent_files(ctx)]
    except (OSError, ValueError):  # no files, unreadable folder: the read itself says so, in one task
        return []
    n = min(len(files), workers * READ_PARTS_PER_WORKER)
    return [tuple(files[k * len(files) // n:(k + 1) * len(files) // n]) for k in range(n)] if n > 1 else []


def _map_shard(step: Mapper, ctx: StepContext, source: Checkpoint, features: Features, step_dir: Path,
               shard: int, start: int, stop: int, progress: bool = False) -> SinkReport:
    sink = StepSink(step_dir, shard, step.name, features.arrow_schema, ctx.llm_configs)
    try:
        map_range(step, ctx, source.open().data.table, start, stop, sink, progress=progress)
    finally:
        report = sink.close()
        if step.is_worker_copy:  # this task's own copy of the step (a worker process): release it
            step.teardown()
    return report


@register_engine
class LocalEngine(Engine):
    name = "local"

    def read(self, builder: Builder, ctx: StepContext, features: Features, step_dir: Path, *,
             limit: int | None) -> SinkReport:
        parts = plan_read_parts(builder, ctx, self.num_proc, limit)
        if not parts:
            return self.run_task(read_into_sink, builder, ctx, features, step_dir, limit)
        calls = [((builder, dataclasses.replace(ctx, files=files), features, step_dir, None, k, False), len(files))
                 for k, files in enumerate(parts)]
        return _in_pool(read_into_sink, calls, self.num_proc, f"read {builder.name}", " files")

    def run_task(self, fn: Callable[..., T], *args: Any) -> T:
        """In a forked child (its memory returns to the system when it ends); with
        ``num_proc=1``, here."""
        return fn(*args) if self.num_proc <= 1 else in_child(fn, *args)

    def map_rows(self, step: Mapper, source: Checkpoint, ctx: StepContext, features: Features,
                 step_dir: Path) -> SinkReport:
        shards = plan_shards(len(source), self.num_proc, step.batch_size)
        total = SinkReport()
        if self.num_proc <= 1:  # one process asked for: here
            for k, (start, stop) in enumerate(shards):
                total.merge(_map_shard(step, ctx, source, features, step_dir, k, start, stop, progress=True))
            return total
        if len(shards) == 1:  # too few rows to share out: one child, which nothing has to be pickled for
            (start, stop), = shards
            return in_child(_map_shard, step, ctx, source, features, step_dir, 0, start, stop, True)
        calls = [((step, ctx, source, features, step_dir, k, start, stop), stop - start)
                 for k, (start, stop) in enumerate(shards)]
        return _in_pool(_map_shard, calls, self.num_proc, step.name, " rows")


def read_into_sink(builder: Builder, ctx: StepContext, features: Features, step_dir: Path,
                   limit: int | None, shard: int = 0, progress: bool = True) -> SinkReport:
    """Stream a builder's rows (of the files ``ctx.files`` names, else all) into ``step_dir``'s shard ``shard``."""
    sink = StepSink(step_dir, shard, builder.name, features.arrow_schema, ctx.llm_configs)
    try:
        run_builder(builder, ctx, sink, limit=limit, progress=progress)
    finally:
        report = sink.close()
        if builder.is_worker_copy:  # this task's own copy of the builder: release it
            builder.teardown()
    return report


def _in_pool(fn: Callable[..., SinkReport], calls: list[tuple[tuple, int]], num_proc: int, desc: str,
             unit: str) -> SinkReport:
    """``fn(*args)`` for every ``(args, size)`` in forked worker processes, one shard each; their
    reports merged, a bar advanced by ``size`` per finished call. A failure stops the rest now."""
    total = SinkReport()
    with tqdm(total=sum(size for _, size in calls), desc=desc, unit=unit, leave=False) as bar, \
            ProcessPoolExecutor(min(num_proc, len(calls)), mp_context=multiprocessing.get_context("fork")) as pool:
        futures = {pool.submit(fn, *args): size for args, size in calls}
        try:
            for fut in as_completed(futures):
                total.merge(fut.result())
                bar.update(futures[fut])
        except BaseException:
            _stop_now(pool)
            raise
    return total


def _stop_now(pool: ProcessPoolExecutor) -> None:
    """Stop a pool's work in flight (an error elsewhere, Ctrl-C, SIGTERM), not after it ends."""
    for proc in list((getattr(pool, "_processes", None) or {}).values()):
        proc.terminate()
    pool.shutdown(wait=False, cancel_futures=True)
