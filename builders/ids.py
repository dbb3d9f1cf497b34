"""Unique row ids within one builder's output, whatever the source's own ids do.

Sources promise less than they seem to: MedQuAD's ``qid`` is unique only within one
collection, COVID-Dialogue labels two different records ``id=18``. A row id must name one row
(dedup, decontamination reports, splits and resumed LLM steps all key on it), so when a
builder is about to emit an id it already emitted, the later row's id gets a suffix made from
its source and locator (file + position), which is stable across re-reads of the same
files; the first row keeps the source's id. Each rename is counted as
``ids.repeated_source_id`` in stats.json.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from typing import Any

from meddata.records import make_id
from meddata.steps import Builder, Drop, Quarantine, StepContext

ReadFn = Callable[[Any, StepContext], Iterator[dict | Drop | Quarantine]]


def locator_suffix(row: dict) -> str:
    """A short, stable tag of the row's source + file name + locator."""
    meta = row.get("meta") or {}
    fname = str(meta.get("file") or "").rsplit("/", 1)[-1]
    return make_id(str(row.get("source") or ""), f"{fname}:{meta.get('locator')}")[:10]


class IdRegistry:
    """The ids one builder has emitted; renames repeats (see the module docstring)."""

    def __init__(self) -> None:
        self.seen: set[str] = set()

    def unique(self, row: dict) -> bool:
        """Make ``row['id']`` unique in place; True when it had to be renamed."""
        row_id = row["id"]
        if row_id not in self.seen:
            self.seen.add(row_id)
            return False
        base = f"{row_id}@{locator_suffix(row)}"
        candidate, n = base, 1
        while candidate in self.seen:  # same file and locator twice: number them
            n += 1
            candidate = f"{base}#{n}"
        row["id"] = candidate
        self.seen.add(candidate)
        return True


def unique_ids(read: ReadFn) -> ReadFn:
    """Decorate a :meth:`Builder.read` so the rows it yields have unique ids."""

    @functools.wraps(read)
    def wrapper(self: Builder, ctx: StepContext) -> Iterator[dict | Drop | Quarantine]:
        registry = IdRegistry()
        for item in read(self, ctx):
            if isinstance(item, dict) and registry.unique(item):
                self.stat_update("ids.repeated_source_id")
            yield item

    return wrapper
