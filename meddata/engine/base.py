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


_ENGINES: dict[str, type[Engine]] = {}


def register_engine(cls: type[Engine]) -> type[Engine]:
    _ENGINES[cls.name] = cls
    return cls


def get_engine(name: str, num_proc: int = 1, **options) -> Engine:
    if name == "ray" and "ray" not in _ENGINES:
        import meddata.engine.ray_engine  # noqa: F401  (optional extra; registers itself)
    if name not in _ENGINES:
        raise ValueError(f"unknown engine {name!r}; available: {', '.join(sorted(_ENGINES))}")
    return _ENGINES[name](num_proc=num_proc, **options)
