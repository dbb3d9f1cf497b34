"""The engine interface: how one step gets executed over data.

The pipeline runner (:mod:`meddata.pipeline`) owns ordering, checkpoints, stats, drop logs
and the conservation check; an engine only executes one step at a time, writing every
outcome into step sinks (:mod:`meddata.engine.sink`) under the step's folder. The rows a
step keeps are then ``<step_dir>/data/shard-*.arrow``, in shard order.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path

from datasets import Dataset, Features

from meddata.engine.sink import SinkReport
from meddata.registry import Registry
from meddata.steps import Builder, GlobalResult, GlobalStep, Mapper, StepContext


class Engine(ABC):
    name: str = ""

    def __init__(self, num_proc: int = 1, **options):
        self.num_proc = num_proc
        self.options = options

    @abstractmethod
    def read(self, builder: Builder, ctx: StepContext, features: Features, step_dir: Path, *,
             limit: int | None) -> SinkReport:
        """Stream a builder's rows into ``step_dir``'s sinks."""

    @abstractmethod
    def map_rows(self, step: Mapper, dataset: Dataset, ctx: StepContext, features: Features,
                 step_dir: Path) -> SinkReport:
        """Apply a row-level step to ``dataset`` (flat, memory-mapped) into ``step_dir``'s sinks."""

    def apply_global(self, step: GlobalStep, dataset: Dataset, ctx: StepContext) -> GlobalResult:
        step.ensure_setup(ctx)
        return step.apply(dataset, ctx)

    def close(self) -> None:
        """Release workers or clusters the engine started."""


#: Engines by name (``engine.name`` in a recipe); third-party ones through ``meddata.engines``.
ENGINES: Registry[type[Engine]] = Registry("engine", "meddata.engines")
ENGINES.register_lazy("local", "meddata.engine.local:LocalEngine")
ENGINES.register_lazy("ray", "meddata.engine.ray_engine:RayEngine", requires=("ray",))  # imported when used


def register_engine(cls: type[Engine]) -> type[Engine]:
    return ENGINES.register(cls.name, cls)


def get_engine(name: str, num_proc: int = 1, **options) -> Engine:
    return ENGINES.get(name)(num_proc=num_proc, **options)
