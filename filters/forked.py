"""The compared content of a dataset's rows, read lazily a row range at a time by the workers
of a global step: forked processes on this machine, or Ray tasks anywhere on a cluster.

Global steps (exact and near-duplicate detection) need one compact value per row (a digest,
band keys, a length) computed from the row's text. Building every text in the driver and
pickling it to workers costs the driver memory proportional to the data. Here the source is
a :class:`LazyContents` over the memory-mapped dataset: forked workers inherit it
(:func:`map_row_ranges`, :func:`map_with_source`), and Ray tasks unpickle it as the
dataset's file paths and open their own rows, so only the compact results travel back.
"""

from __future__ import annotations

import functools
import multiprocessing
import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import TYPE_CHECKING, Any, TypeVar

import pyarrow as pa

from meddata.records import TEXT_FIELDS, column_strings

if TYPE_CHECKING:
    from datasets import Dataset

T = TypeVar("T")

#: What dedup compares when no ``fields`` are given: the whole example.
DEFAULT_FIELDS = TEXT_FIELDS


# -- reading rows lazily ---------------------------------------------------------------------

def row_content(row: dict[str, Any], fields: Sequence[str] | None = None) -> str:
    """The compared content of a row: the chosen fields joined by blank lines."""
    parts: list[str] = []
    for spec in fields or DEFAULT_FIELDS:
        col, _, role = spec.partition(".")
        parts.extend(column_strings(col, row.get(col), role or None))
    return "\n\n".join(p for p in parts if p)


def arrow_columns(dataset: Dataset, columns: Sequence[str]) -> pa.Table:
    """The given columns of every row as one Arrow table (a selection view is resolved by a
    C-level take, never by the Python row loop of ``dataset[i]``)."""
    present = [c for c in columns if c in dataset.column_names]
    return dataset.select_columns(present).with_format("arrow")[:] if present and len(dataset) else \
        pa.table({c: pa.nulls(len(dataset)) for c in present})


def contents(dataset: Dataset, fields: Sequence[str] | None) -> list[str]:
    """The compared content of every row, in row order, as one list (see :class:`LazyContents`)."""
    return list(LazyContents(dataset, fields))


class LazyContents(Sequence[str]):
    """The compared content of every row, built from the memory-mapped table a slice at a time:
    global steps walk a million rows without holding a million strings.

    Pickles as the dataset and the fields (a dataset over memory-mapped shards pickles as its
    file paths), so a Ray task that receives it opens the rows itself."""

    BATCH = 10_000

    def __init__(self, dataset: Dataset, fields: Sequence[str] | None):
        columns = sorted({spec.partition(".")[0] for spec in fields or DEFAULT_FIELDS})
        self.dataset = dataset
        self.table = arrow_columns(dataset, columns)
        self.fields = fields
        self.n = len(dataset)

    def __reduce__(self):  # rebuilt from the dataset (its file paths) where it is unpickled
        return LazyContents, (self.dataset, self.fields)

    def __len__(self) -> int:
        return self.n

    def _rows(self, start: int, stop: int) -> list[str]:
        if self.table.num_columns == 0:
            return [""] * (stop - start)
        return [row_content(r, self.fields) for r in self.table.slice(start, stop - start).to_pylist()]

    def take(self, indices: Sequence[int]) -> list[str]:
        """The contents of the rows ``indices`` (one Arrow take, not one slice per row)."""
        if self.table.num_columns == 0:
            return [""] * len(indices)
        return [row_content(r, self.fields) for r in self.table.take(pa.array(indices, pa.int64())).to_pylist()]

    def __getitem__(self, i):  # type: ignore[override]
        if isinstance(i, slice):
            start, stop, step = i.indices(self.n)
            rows = self._rows(start, stop) if stop > start else []
            return rows if step == 1 else rows[::step]
        if i < 0:
            i += self.n
        if not 0 <= i < self.n:
            raise IndexError(i)
        return self._rows(i, i + 1)[0]

    def __iter__(self) -> Iterator[str]:
        for start in range(0, self.n, self.BATCH):
            yield from self._rows(start, min(start + self.BATCH, self.n))


def _meta_field(table: pa.Table, key: str) -> pa.Array | None:
    if table.num_columns == 0 or table.num_rows == 0:
        return None
    meta = table.column("meta").combine_chunks()
    index = meta.type.get_field_index(key)
    return None if index < 0 else meta.flatten()[index]


def meta_values(dataset: Dataset, key: str) -> list[Any]:
    """``meta[key]`` of every row, read column-wise."""
    values = _meta_field(arrow_columns(dataset, ["meta"]), key)
    return [None] * len(dataset) if values is None else values.to_pylist()


class LazyMeta(Sequence[Any]):
    """``meta[key]`` of every row (e.g. the patient id), read a slice at a time; pickles like
    :class:`LazyContents`, so a worker reads only its own rows' values."""

    def __init__(self, dataset: Dataset, key: str):
        self.dataset, self.key, self.n = dataset, key, len(dataset)
        self._table: pa.Table | None = None  # the meta column, memory-mapped (opened on first use)

    def __reduce__(self):  # rebuilt from the dataset (its file paths) where it is unpickled
        return LazyMeta, (self.dataset, self.key)

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i):  # type: ignore[override]
        if isinstance(i, slice):
            start, stop, step = i.indices(self.n)
            if stop <= start:
                return []
            if self._table is None:
                self._table = arrow_columns(self.dataset, ["meta"])
            table = self._table
            values = _meta_field(table.slice(start, stop - start) if table.num_columns else table, self.key)
            rows = [None] * (stop - start) if values is None else values.to_pylist()
            return rows if step == 1 else rows[::step]
        if i < 0:
            i += self.n
        if not 0 <= i < self.n:
            raise IndexError(i)
        return self[i:i + 1][0]


# -- forked workers --------------------------------------------------------------------------

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


def sub_ranges(start: int, stop: int, chunk_rows: int = 2000) -> Iterator[tuple[int, int]]:
    """``start..stop`` cut into consecutive ranges of ``chunk_rows`` (a Ray task's row range
    is processed in the same chunks as the forked workers', so its memory stays as small)."""
    for a in range(start, stop, chunk_rows):
        yield a, min(a + chunk_rows, stop)
