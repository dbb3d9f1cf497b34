"""Row ranges of a lazily read text column, processed in forked worker processes.

Global steps (exact and near-duplicate detection) need one compact value per row (a digest,
band keys, a length) computed from the row's text. Building every text in the driver and
pickling it to workers costs the driver memory proportional to the data; here the workers
are forked while the source (a :class:`~meddata.filters.dedup.LazyContents` over the
memory-mapped dataset) is set, and each reads its own row range, so only the compact results
travel back.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")

#: The texts forked workers read (set only while :func:`map_row_ranges` runs).
_SOURCE: Sequence[str] | None = None


def _run(args: tuple[Callable[[Sequence[str]], Any], int, int]) -> Any:
    fn, start, stop = args
    return fn(_SOURCE[start:stop])


def map_row_ranges(source: Sequence[str], fn: Callable[[Sequence[str]], T], num_proc: int,
                   chunk_rows: int = 2000) -> Iterator[tuple[int, int, T]]:
    """``(start, stop, fn(source[start:stop]))`` for consecutive ranges, in order.

    ``fn`` must be picklable (a module-level function or a ``functools.partial`` of one).
    With ``num_proc > 1`` the ranges run in forked processes that read ``source`` themselves."""
    global _SOURCE
    n = len(source)
    jobs = [(fn, a, min(a + chunk_rows, n)) for a in range(0, n, chunk_rows)]
    _SOURCE = source
    try:
        if num_proc <= 1 or len(jobs) <= 1:
            for job in jobs:
                yield job[1], job[2], _run(job)
            return
        workers = min(num_proc, len(jobs), os.cpu_count() or 1)
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork")) as pool:
            try:
                for job, result in zip(jobs, pool.map(_run, jobs)):
                    yield job[1], job[2], result
            except BaseException:
                pool.shutdown(wait=False, cancel_futures=True)
                raise
    finally:
        _SOURCE = None
