"""The engine interface: how one step gets executed over data.

The pipeline runner (:mod:`meddata.pipeline`) owns ordering, checkpoints, stats, drop logs
and the conservation check; an engine only executes one step at a time, writing every
outcome into step sinks (:mod:`meddata.engine.sink`) under the step's folder. The rows a
step keeps are then ``<step_dir>/data/shard-*.arrow``, in shard order.

The driver never opens the data: steps get a :class:`~meddata.engine.checkpoint.Checkpoint`
(folders and a row count) and whatever touches rows runs in :meth:`Engine.run_task`, away
from the driver, so the driver's memory stays the same from a thousand rows to millions.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from datasets import Features

from meddata.engine.checkpoint import Checkpoint
from meddata.engine.globalstep import GlobalOutcome, run_global_step
from meddata.engine.sink import SinkReport
from meddata.registry import Registry
from meddata.steps import Builder, GlobalStep, Mapper, StepContext

T = TypeVar("T")


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
    def map_rows(self, step: Mapper, source: Checkpoint, ctx: StepContext, features: Features,
                 step_dir: Path) -> SinkReport:
        """Apply a row-level step to ``source``'s rows into ``step_dir``'s sinks."""

    @abstractmethod
    def run_task(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` away from the driver (a picklable module-level ``fn``); its result, or
        its exception raised here."""

    def run_global(self, step: GlobalStep, source: Checkpoint, ctx: StepContext, features: Features,
                   step_dir: Path) -> GlobalOutcome:
        """Apply a global step to ``source`` and write its outcome into ``step_dir``'s sink."""
        return self.run_task(run_global_step, step, source, ctx, features, step_dir)

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
