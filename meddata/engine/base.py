"""The engine interface: how a list of steps gets executed over data.

The pipeline runner (:mod:`meddata.pipeline`) owns ordering, checkpoints, stats, drop logs
and the conservation check; an engine only executes one step at a time. A Ray engine
implements the same three methods without touching any step.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from datasets import Dataset, Features

from meddata.steps import Builder, GlobalResult, GlobalStep, Mapper, StepContext


@dataclass
class ReadResult:
    dataset: Dataset
    #: Rows the builder dropped on purpose and malformed records, as written to JSONL files.
    dropped: int
    quarantined: int


class Engine(ABC):
    name: str = ""

    def __init__(self, num_proc: int = 1, **options):
        self.num_proc = num_proc
        self.options = options

    @abstractmethod
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
        """Stream a builder's rows into a Dataset; drops/quarantines go to the callbacks."""

    @abstractmethod
    def map_rows(self, step: Mapper, dataset: Dataset, ctx: StepContext, scratch: Path) -> Dataset:
        """Apply a row-level step; return rows with ``__status__``/``__reason__``/``__stats__``."""

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
