"""Ray Data engine: row-level steps run as ``map_batches`` over a Ray cluster.

Uses the same :func:`~meddata.engine.batch.run_batch` glue as the local engine, so steps do
not know which engine runs them. Builders stream in the driver (their inputs are files on
this machine); global steps get the whole dataset, as on the local engine. Starts a local
cluster unless ``address`` is given (``engine: {name: ray, options: {address: auto}}``).
"""

from __future__ import annotations

import logging
from functools import partial
from pathlib import Path
from typing import Any

import pyarrow as pa
from datasets import Dataset

from meddata.engine.base import register_engine
from meddata.engine.batch import run_batch, with_internal
from meddata.engine.local import LocalEngine
from meddata.steps import Mapper, StepContext

logger = logging.getLogger("meddata")


def _apply(batch: pa.Table, *, step: Mapper, ctx: StepContext, columns: list[str], schema: pa.Schema) -> pa.Table:
    out = run_batch(batch.to_pydict(), step=step, ctx=ctx, columns=columns)
    return pa.Table.from_pydict(out, schema=schema)


@register_engine
class RayEngine(LocalEngine):
    name = "ray"

    def __init__(self, num_proc: int = 1, address: str | None = None, **options: Any):
        super().__init__(num_proc=num_proc, **options)
        try:
            import ray
        except ImportError:
            raise RuntimeError('the ray engine needs the ray extra: pip install "meddata[ray]"') from None
        self._ray = ray
        self._started = False
        if not ray.is_initialized():
            kwargs = {"address": address} if address else {"num_cpus": max(num_proc, 1)}
            ray.init(include_dashboard=False, log_to_driver=False, configure_logging=False, **kwargs)
            self._started = True
        ray.data.DataContext.get_current().execution_options.preserve_order = True

    def map_rows(self, step: Mapper, dataset: Dataset, ctx: StepContext, scratch: Path) -> Dataset:
        columns = list(dataset.features)
        schema = with_internal(dataset.features).arrow_schema
        table = dataset.with_format("arrow")[:]
        fn = partial(_apply, step=step, ctx=ctx, columns=columns, schema=schema)
        ds = self._ray.data.from_arrow(table).map_batches(
            fn, batch_format="pyarrow", batch_size=step.batch_size, zero_copy_batch=True
        )
        tables = [t for t in self._ray.get(ds.to_arrow_refs()) if t.num_rows]
        result = pa.concat_tables(tables).cast(schema) if tables else schema.empty_table()
        return Dataset(result)

    def close(self) -> None:
        if self._started:
            self._ray.shutdown()
            self._started = False
