"""Ray engine: row-level steps run as Ray tasks over a cluster, one task per row range.

Each task opens the step's input (memory-mapped Arrow shards on a path the cluster shares: one
machine's folder, or a shared mount) and writes its own shard, drop log and quarantine file
through the same :class:`~meddata.engine.sink.StepSink` as the local engine, so rows never pass
through the driver. A builder whose files are read independently reads contiguous slices of its
file list as Ray tasks, one shard each (as on the local engine). Other builders, global steps
and the outputs run as one Ray task each (:meth:`RayEngine.run_task`); a global step fans its
own work out over the cluster (``StepContext.executor == "ray"``). Starts a local cluster
unless ``address`` is given (``--address auto`` or
``engine: {name: ray, options: {address: auto}}``).

LLM steps: every LLM with an ``rpm``/``tpm`` limit gets one token bucket for the whole
cluster (a named Ray actor, :class:`meddata.llm.ratelimit.TokenBucket`) instead of one per
worker process, and the request cache path is resolved once in the driver (absolute), so
every worker opens the same cache file (on a cluster: put it on a shared mount with
``cache: /shared/llm.sqlite`` or ``$MEDDATA_CACHE_DIR``). Worker logs reach the driver's log.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from datasets import Features
from tqdm.auto import tqdm

from meddata.engine.base import register_engine
from meddata.engine.checkpoint import Checkpoint
from meddata.engine.globalstep import GlobalOutcome
from meddata.engine.local import LocalEngine, _map_shard, plan_read_parts, plan_shards, read_into_sink
from meddata.engine.sink import SinkReport
from meddata.steps import Builder, GlobalStep, Mapper, StepContext

T = TypeVar("T")

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
        self._buckets: dict[str, Any] = {}  # actor name -> handle (kept alive while the engine is)

    def _cluster_ctx(self, ctx: StepContext) -> StepContext:
        """``ctx`` with one shared rate budget per limited LLM and absolute cache paths."""
        if not ctx.llm_configs:
            return ctx
        from meddata.llm.client import resolve_cache_path
        from meddata.llm.config import parse_config
        from meddata.llm.ratelimit import NAMESPACE, TokenBucket

        configs, budgets = {}, {}
        for name, raw in ctx.llm_configs.items():
            cfg = parse_config(name, raw)
            cache = resolve_cache_path(cfg, ctx)
            configs[name] = {**raw, "cache": str(cache.resolve()) if cache is not None else False}
            for kind, per_minute in (("rpm", cfg.rpm), ("tpm", cfg.tpm)):
                if not per_minute:
                    continue
                actor = f"meddata-{os.getpid()}-{name}-{kind}"
                if actor not in self._buckets:
                    self._buckets[actor] = self._ray.remote(TokenBucket).options(
                        name=actor, namespace=NAMESPACE, get_if_exists=True, num_cpus=0).remote(per_minute)
                budgets.setdefault(name, {})[kind] = actor
        return dataclasses.replace(ctx, llm_configs=configs, rate_budgets=budgets)

    def _workers(self) -> int:
        return max(self.num_proc, int(self._ray.cluster_resources().get("CPU", 1)))

    def run_task(self, fn: Callable[..., T], *args: Any) -> T:
        """One Ray task; its exception (a meddata error keeps its type) is raised here."""
        ref = self._ray.remote(fn).options(max_retries=0).remote(*args)
        try:
            return self._get(ref)
        except BaseException:
            self._ray.cancel(ref, force=True)
            raise

    @staticmethod
    def _get(ref: Any) -> Any:
        """A task's result; its exception (a meddata error keeps its type) is raised here."""
        from meddata.engine.ray_ops import get

        return get(ref)

    def read(self, builder: Builder, ctx: StepContext, features: Features, step_dir: Path, *,
             limit: int | None) -> SinkReport:
        ctx = self._cluster_ctx(ctx)
        parts = plan_read_parts(builder, ctx, self._workers(), limit)
        if not parts:
            return self.run_task(read_into_sink, builder, ctx, features, step_dir, limit)
        remote = self._ray.remote(read_into_sink).options(max_retries=0)
        pending = {remote.remote(builder, dataclasses.replace(ctx, files=files), features, step_dir, None, k, False):
                   len(files) for k, files in enumerate(parts)}
        return self._gather(pending, total=sum(map(len, parts)), desc=f"read {builder.name}", unit=" files")

    def run_global(self, step: GlobalStep, source: Checkpoint, ctx: StepContext, features: Features,
                   step_dir: Path) -> GlobalOutcome:
        """One Ray task, which fans the step's work out as Ray tasks when the cluster has more than
        one node; on one node its forked workers do the same work without the object store's
        copies (the results are identical either way)."""
        executor = "ray" if self.nodes() > 1 else "local"
        return super().run_global(step, source, dataclasses.replace(self._cluster_ctx(ctx), executor=executor),
                                  features, step_dir)

    def nodes(self) -> int:
        """Live nodes of the cluster."""
        return sum(1 for node in self._ray.nodes() if node.get("Alive"))

    def map_rows(self, step: Mapper, source: Checkpoint, ctx: StepContext, features: Features,
                 step_dir: Path) -> SinkReport:
        shards = plan_shards(len(source), self._workers(), step.batch_size)
        ctx = self._cluster_ctx(ctx)
        pending = {self._remote.remote(step, ctx, source, features, step_dir, k, start, stop): stop - start
                   for k, (start, stop) in enumerate(shards)}
        return self._gather(pending, total=len(source), desc=step.name, unit=" rows")

    def _gather(self, pending: dict[Any, int], *, total: int, desc: str, unit: str) -> SinkReport:
        """The merged reports of shard tasks (task -> its weight on the progress bar); on an
        error or Ctrl-C the tasks still running are cancelled."""
        merged = SinkReport()
        bar = tqdm(total=total, desc=desc, unit=unit, leave=False)
        try:
            while pending:
                done, _ = self._ray.wait(list(pending), num_returns=1)
                for ref in done:
                    merged.merge(self._get(ref))
                    bar.update(pending.pop(ref))
        except BaseException:
            for ref in pending:
                self._ray.cancel(ref, force=True)
            raise
        finally:
            bar.close()
        return merged

    def close(self) -> None:
        for handle in self._buckets.values():
            self._ray.kill(handle)
        self._buckets.clear()
        if self._started:
            self._ray.shutdown()
            self._started = False
