"""Ray engine: row-level steps run as Ray tasks over a cluster, one task per row range.

Each task opens the step's input (memory-mapped Arrow shards on a path the cluster shares:
one machine's folder, or a shared mount) and writes its own shard, drop log and quarantine
file through the same :class:`~meddata.engine.sink.StepSink` as the local engine, so rows
never pass through the driver. Starts a local cluster unless ``address`` is given
(``--address auto`` or ``engine: {name: ray, options: {address: auto}}``).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from datasets import Dataset, Features
from tqdm.auto import tqdm

from meddata.engine.base import register_engine
from meddata.engine.local import LocalEngine, _map_shard, plan_shards
from meddata.engine.sink import SinkReport
from meddata.steps import Mapper, StepContext

logger = logging.getLogger("meddata")


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
            # worker errors and warnings reach this process's log
            ray.init(include_dashboard=False, log_to_driver=True, configure_logging=False, **kwargs)
            self._started = True
        self._remote = ray.remote(_map_shard)

    def _workers(self) -> int:
        return max(self.num_proc, int(self._ray.cluster_resources().get("CPU", 1)))

    def map_rows(self, step: Mapper, dataset: Dataset, ctx: StepContext, features: Features,
                 step_dir: Path) -> SinkReport:
        shards = plan_shards(len(dataset), self._workers(), step.batch_size)
        total = SinkReport()
        pending = {self._remote.remote(step, ctx, dataset, features, step_dir, k, start, stop): stop - start
                   for k, (start, stop) in enumerate(shards)}
        bar = tqdm(total=len(dataset), desc=step.name, unit=" rows", leave=False)
        try:
            while pending:
                done, _ = self._ray.wait(list(pending), num_returns=1)
                for ref in done:
                    total.merge(self._ray.get(ref))
                    bar.update(pending.pop(ref))
        except BaseException:
            for ref in pending:
                self._ray.cancel(ref, force=True)
            raise
        finally:
            bar.close()
        return total

    def close(self) -> None:
        if self._started:
            self._ray.shutdown()
            self._started = False
