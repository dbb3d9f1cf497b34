"""The default engine: Hugging Face ``datasets`` on this machine.

Rows stream from builders straight into an Arrow file on disk, and every step writes
memory-mapped Arrow, so a build larger than RAM works. ``num_proc`` > 1 runs row-level
steps in worker processes (each runs the step's ``setup`` once).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path

from datasets import Dataset, Features, disable_progress_bars, enable_progress_bars
from datasets.arrow_writer import ArrowWriter
from tqdm.auto import tqdm

from meddata.engine.base import Engine, ReadResult, register_engine
from meddata.engine.batch import conform, run_batch, with_internal
from meddata.records import RecordError, validate_row
from meddata.steps import Builder, Drop, Mapper, Quarantine, StepContext

WRITER_BATCH = 1000


@register_engine
class LocalEngine(Engine):
    name = "local"

    def read(
        self,
        builder: Builder,
        ctx: StepContext,
        features: Features,
        *,
        limit: int | None,
        on_drop: Callable[[dict, str], None],
        on_quarantine: Callable[[dict], None],
        scratch: Path,
    ) -> ReadResult:
        columns = list(features)
        scratch.mkdir(parents=True, exist_ok=True)
        path = scratch / "read.arrow"
        builder.ensure_setup(ctx)
        dropped = quarantined = seen = 0
        with ArrowWriter(features=features, path=str(path), writer_batch_size=WRITER_BATCH) as writer:
            bar = tqdm(desc=f"read {builder.name}", unit=" rows", leave=False)
            for item in builder.read(ctx):
                if limit is not None and seen >= limit:
                    break
                seen += 1
                bar.update()
                if isinstance(item, Quarantine):
                    on_quarantine({"error": item.error, "file": item.file, "locator": item.locator})
                    quarantined += 1
                elif isinstance(item, Drop):
                    on_drop(dict(item.row), item.reason)
                    dropped += 1
                else:
                    meta = item.get("meta") or {}
                    try:
                        validate_row(item, where=f"{meta.get('file')}:{meta.get('locator')}")
                    except RecordError as exc:
                        on_quarantine({"error": str(exc), "file": meta.get("file"), "locator": meta.get("locator")})
                        quarantined += 1
                        continue
                    writer.write(conform(item, columns))
            bar.close()
            writer.finalize()
        return ReadResult(Dataset.from_file(str(path)), dropped=dropped, quarantined=quarantined)

    def map_rows(self, step: Mapper, dataset: Dataset, ctx: StepContext, scratch: Path) -> Dataset:
        scratch.mkdir(parents=True, exist_ok=True)
        columns = list(dataset.features)
        fn = partial(run_batch, step=step, ctx=ctx, columns=columns)
        enable_progress_bars()
        try:
            return self._map(step, dataset, fn, columns, scratch)
        finally:
            disable_progress_bars()

    def _map(self, step: Mapper, dataset: Dataset, fn, columns: list[str], scratch: Path) -> Dataset:
        return dataset.map(
            fn,
            batched=True,
            batch_size=step.batch_size,
            num_proc=self.num_proc if self.num_proc > 1 and len(dataset) > step.batch_size else None,
            remove_columns=columns,
            features=with_internal(dataset.features),
            cache_file_name=str(scratch / "map.arrow"),
            load_from_cache_file=False,
            desc=step.name,
        )
