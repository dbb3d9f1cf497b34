"""What every builder's output gets on its way out: unique row ids, and counts per source.

Ids. Sources promise less than they seem to: MedQuAD's ``qid`` is unique only within one
collection, COVID-Dialogue labels two different records ``id=18``. A row id must name one row
(dedup, decontamination reports, splits and resumed LLM steps all key on it), so when a
builder is about to emit an id it already emitted, the later row's id gets a suffix made from
its source and locator (file + position), which is stable across re-reads of the same
files; the first row keeps the source's id. Each rename is counted as
``ids.repeated_source_id`` in stats.json.

Sources. The card and report list rows read and rows out per source. Rows out carry the
``source`` the builder gave them (often a default such as the exam format, ``meddialog`` or
the file name), so rows read are counted under that same key here
(``rows_read.<source>``, and ``phi_in.<status>.<source>`` for the PHI status of rows
read), never guessed from the recipe. A quarantined record has no source: it is counted
under the source of the rows around it.
"""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

from meddata.builders import source_io

from meddata.records import PHI_IN, ROWS_READ, make_id
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


class SourceCounts:
    """Rows read per source and their PHI status, keyed like the rows' ``source`` column."""

    def __init__(self, fallback: str):
        self.fallback = fallback
        self.read: Counter = Counter()
        self.phi: Counter = Counter()
        self._last: str | None = None
        self._pending = 0  # quarantines seen before any row named its source

    def add(self, item: dict | Drop | Quarantine) -> None:
        if isinstance(item, Quarantine):
            if self._last is None:
                self._pending += 1
            else:
                self.read[self._last] += 1
            return
        row = item.row if isinstance(item, Drop) else item
        source = str(row.get("source") or self.fallback)
        self.read[source] += 1 + self._pending
        self._pending, self._last = 0, source
        status = (row.get("meta") or {}).get("phi_status") or "not_applicable"
        self.phi[(str(status), source)] += 1

    def counters(self) -> dict[str, int]:
        if self._pending:
            self.read[self._last or self.fallback] += self._pending
            self._pending = 0
        out = {f"{ROWS_READ}{src}": n for src, n in self.read.items()}
        out.update({f"{PHI_IN}{status}.{src}": n for (status, src), n in self.phi.items()})
        return out


def fallback_source(builder: Builder) -> str:
    """The source name of a builder whose every record was quarantined (none named one)."""
    params = builder.params
    if getattr(params, "path", None):  # the name every file builder gives its rows (source_io)
        default = getattr(builder, "default_source", None)  # a builder's own default ("fhir", "mimic")
        return source_io.source_name(params, default() if callable(default) else default)
    return str(getattr(params, "source", None) or builder.name)


def checked_rows(read: ReadFn) -> ReadFn:
    """Decorate a :meth:`Builder.read`: unique ids and per-source counts (module docstring)."""

    @functools.wraps(read)
    def wrapper(self: Builder, ctx: StepContext) -> Iterator[dict | Drop | Quarantine]:
        registry = IdRegistry()
        sources = SourceCounts(fallback_source(self))
        try:
            for item in read(self, ctx):
                if isinstance(item, dict) and registry.unique(item):
                    self.stat_update("ids.repeated_source_id")
                yield item
                sources.add(item)  # counted once the runner took it and asked for the next
        finally:  # also when the runner stops early (--limit): count what it read
            for key, n in sources.counters().items():
                self.stat_update(key, n)

    return wrapper
