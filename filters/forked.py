"""Row ranges of a lazily read text column, processed in forked worker processes.

Global steps (exact and near-duplicate detection) need one compact value per row (a digest,
band keys, a length) computed from the row's text. Building every text in the driver and
pickling it to workers costs the driver memory proportional to the data; here the workers
are forked while the source (a :class:`~meddata.filters.dedup.LazyContents` over the
memory-mapped dataset) is set, and each reads its own row range, so only the compact results
travel back.
"""

from __future__ import annotations

import functools
import multiprocessing
import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")

#: The texts forked workers read (set only while :func:`map_row_ranges` runs).
_SOURCE: Sequence[str] | None = None


def _run(args: tuple[Callable[[Sequence[str], Any], Any], Any]) -> Any:
    fn, job = args
    return fn(_SOURCE, job)


def map_with_source(source: Sequence[str], fn: Callable[[Sequence[str], Any], T], jobs: Sequence[Any],
                    num_proc: int) -> Iterator[T]:
    """``fn(source, job)`` for every job, in order; with ``num_proc > 1`` in forked processes
    that read ``source`` themselves (only ``job`` and the result are pickled), even for a single
    job, so the pages and buffers it touches never belong to the driver.

    ``fn`` must be picklable (a module-level function or a ``functools.partial`` of one)."""
    global _SOURCE
    _SOURCE = source
    try:
        if num_proc <= 1 or not jobs:  # one process asked for: run here (with more, even one job is forked)
            for job in jobs:
                yield fn(source, job)
            return
        workers = min(num_proc, len(jobs), os.cpu_count() or 1)
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork")) as pool:
            try:
                yield from pool.map(_run, [(fn, job) for job in jobs])
            except BaseException:
                pool.shutdown(wait=False, cancel_futures=True)
                raise
    finally:
        _SOURCE = None


def _on_range(source: Sequence[str], span: tuple[int, int], fn: Callable[[Sequence[str]], Any]) -> Any:
    return fn(source[span[0]:span[1]])


def map_row_ranges(source: Sequence[str], fn: Callable[[Sequence[str]], T], num_proc: int,
                   chunk_rows: int = 2000) -> Iterator[tuple[int, int, T]]:
    """``(start, stop, fn(source[start:stop]))`` for consecutive row ranges, in order."""
    n = len(source)
    spans = [(a, min(a + chunk_rows, n)) for a in range(0, n, chunk_rows)]
    results = map_with_source(source, functools.partial(_on_range, fn=fn), spans, num_proc)
    for (a, b), result in zip(spans, results):
        yield a, b, result
