"""One sink per step and worker: every kind of step reports its outcomes here.

Kept rows are written once, as Arrow shards that *are* the step's checkpoint
(``<step>/data/shard-NNNNN.arrow``, memory-mapped by the next step); dropped rows and
quarantine entries go to JSONL files written by the worker that saw them
(``<step>/logs/``); counters travel back in one small :class:`SinkReport` per shard, merged
once by the runner. Builders, mappers, filters and global steps all use it, on every engine.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from meddata.errors import UserError

#: Rows buffered before one Arrow record batch is written.
FLUSH_ROWS = 2000
#: Largest record batch written (tables arriving in many small chunks are rebatched).
BATCH_ROWS = 10_000
#: This many service failures in a row (each after the client's own retries) stop the build.
UNREACHABLE_AFTER = 20
WITHHELD = "withheld: raw PHI (de-identify before this step to keep content in the drop log)"


class ServiceUnreachable(UserError, RuntimeError):
    """A service a step needs (an LLM endpoint) failed for many rows in a row."""


def withhold_if_raw(row: Mapping[str, Any]) -> dict:
    """Drop-log rows keep content only when they carry no raw PHI."""
    meta = row.get("meta") or {}
    if meta.get("phi_status") == "raw":
        return {
            "id": row.get("id"),
            "source": row.get("source"),
            "meta": {k: meta.get(k) for k in ("builder", "file", "locator", "phi_status")},
            "content": WITHHELD,
        }
    return {k: v for k, v in row.items() if v is not None and not k.startswith("__")}


@dataclass
class SinkReport:
    """What one shard of one step did. Picklable; merged by the runner."""

    kept: int = 0
    dropped: Counter = field(default_factory=Counter)
    quarantined: int = 0
    #: Quarantines caused by a service failure, by service (``llms.local``): retried next run.
    retry: Counter = field(default_factory=Counter)
    #: Input rows that produced at least one kept row (for the creates_rows check).
    consumed: int = 0
    counters: Counter = field(default_factory=Counter)
    phi_status: Counter = field(default_factory=Counter)

    def merge(self, other: SinkReport) -> SinkReport:
        self.kept += other.kept
        self.dropped.update(other.dropped)
        self.quarantined += other.quarantined
        self.retry.update(other.retry)
        self.consumed += other.consumed
        self.counters.update(other.counters)
        self.phi_status.update(other.phi_status)
        return self


def service_url(service: str, llm_configs: Mapping[str, Mapping[str, Any]]) -> str:
    """``llms.local`` -> its base_url (or model path) from the recipe, for error messages."""
    kind, _, name = service.partition(".")
    cfg = llm_configs.get(name, {}) if kind == "llms" else {}
    return str(cfg.get("base_url") or cfg.get("model_path") or cfg.get("backend") or "its configured endpoint")


class StepSink:
    """Writes one shard of one step: kept rows (Arrow), drops and quarantines (JSONL)."""

    def __init__(self, step_dir: Path, shard: int, step_name: str, schema: pa.Schema,
                 llm_configs: Mapping[str, Mapping[str, Any]] | None = None):
        self.step_name = step_name
        self.schema = schema
        self.llm_configs = llm_configs or {}
        self.report = SinkReport()
        (step_dir / "data").mkdir(parents=True, exist_ok=True)
        (step_dir / "logs").mkdir(parents=True, exist_ok=True)
        self.data_path = step_dir / "data" / f"shard-{shard:05d}.arrow"
        self._writer = pa.ipc.new_stream(str(self.data_path), schema)
        self._drop_path = step_dir / "logs" / f"dropped-{shard:05d}.jsonl"
        self._quar_path = step_dir / "logs" / f"quarantine-{shard:05d}.jsonl"
        self._drop_fh = self._quar_fh = None
        self._rows: list[dict] = []
        self._failing: tuple[str, str] | None = None
        self._failures_in_a_row = 0

    # -- kept rows -------------------------------------------------------------------------
    def keep(self, row: Mapping[str, Any]) -> None:
        self._rows.append(row)
        self._failures_in_a_row = 0
        if len(self._rows) >= FLUSH_ROWS:
            self._flush()

    def keep_table(self, table: pa.Table) -> None:
        """Kept rows already in Arrow (global steps, engines that batch in Arrow)."""
        self._flush()
        if table.num_rows:
            table = table.select(self.schema.names).cast(self.schema)
            self._write(table)

    def _flush(self) -> None:
        if not self._rows:
            return
        rows, self._rows = self._rows, []
        try:
            table = pa.Table.from_pylist(rows, schema=self.schema)
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            raise RuntimeError(f"step {self.step_name!r} produced a row that does not fit the schema: {exc}") from None
        self._write(table)

    def _write(self, table: pa.Table) -> None:
        self.report.kept += table.num_rows
        if "meta" in table.column_names:
            status = pc.struct_field(table.column("meta"), "phi_status")
            for item in pc.value_counts(status).to_pylist():
                if item["values"] is not None:
                    self.report.phi_status[item["values"]] += item["counts"]
        for off in range(0, table.num_rows, BATCH_ROWS):  # whole batches, whatever the input's chunks
            self._writer.write_table(table.slice(off, BATCH_ROWS).combine_chunks())

    # -- drops and quarantines -------------------------------------------------------------
    def drop(self, row: Mapping[str, Any], reason: str) -> None:
        self.report.dropped[reason] += 1
        self._failures_in_a_row = 0
        if self._drop_fh is None:
            self._drop_fh = self._drop_path.open("w", encoding="utf-8")
        entry = {"step": self.step_name, "reason": reason, **withhold_if_raw(row)}
        self._drop_fh.write(json.dumps(entry, ensure_ascii=False, default=str) + "\n")

    def quarantine(self, entry: Mapping[str, Any], service: str | None = None) -> None:
        """``entry`` holds error and where (file/locator); never row content (it may be PHI)."""
        self.report.quarantined += 1
        if self._quar_fh is None:
            self._quar_fh = self._quar_path.open("w", encoding="utf-8")
        line = {"step": self.step_name, **entry}
        if service:
            line["retry"] = service
        self._quar_fh.write(json.dumps(line, ensure_ascii=False, default=str) + "\n")
        if not service:
            self._failures_in_a_row = 0
            return
        self.report.retry[service] += 1
        self._failures_in_a_row += 1
        self._failing = (service, str(entry.get("error", "")))
        if self._failures_in_a_row >= UNREACHABLE_AFTER:
            self.close()
            service, error = self._failing
            raise ServiceUnreachable(
                f"cannot reach {service} at {service_url(service, self.llm_configs)}: {self._failures_in_a_row} "
                f"rows in a row failed in step {self.step_name!r} (last: {error}); start the server or fix the "
                "recipe, then re-run: answered requests are cached"
            )

    def count(self, counters: Mapping[str, float]) -> None:
        self.report.counters.update({k: v for k, v in counters.items() if v})

    def close(self) -> SinkReport:
        if self._writer is not None:
            self._flush()
            self._writer.close()
            self._writer = None
        for fh in (self._drop_fh, self._quar_fh):
            if fh is not None:
                fh.close()
        self._drop_fh = self._quar_fh = None
        return self.report


def read_shards(step_dirs: list[Path]) -> Iterator[pa.RecordBatch]:
    """The kept rows of steps' checkpoints, batch by batch, with plain file reads.

    The driver streams whole checkpoints (global steps' decisions, the outputs); memory-mapped,
    every page it passed would stay in its resident set, which then grows with the data.
    Read this way, the pages belong to the kernel's cache, not to the process."""
    for step_dir in step_dirs:
        for shard in sorted((step_dir / "data").glob("shard-*.arrow")):
            with pa.OSFile(str(shard)) as fh:
                yield from pa.ipc.open_stream(fh)
