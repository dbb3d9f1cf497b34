"""The step contract: builders, mappers, filters and global steps.

One small contract (after datatrove's ``PipelineStep``): a step is a class with a registered
``name``, a one-line ``description``, typed ``Params`` (pydantic, validated when a recipe
loads) and one processing method. Steps never see the engine; they get a picklable
:class:`StepContext` and report counters with :meth:`Step.stat_update`.

Row-level outcomes (what ``process``/``keep``/``read`` may produce per input):

* a row ``dict`` (or a list of them, for generators that expand one input into several),
* :class:`Drop` – the row is removed on purpose, with a reason (lands in the drop log),
* :class:`Quarantine` – the input is malformed; file, locator and error land in
  ``quarantine.jsonl``.

A step never loses a row silently: every input maps to at least one outcome.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel, ConfigDict

if TYPE_CHECKING:  # `datasets` costs a second to import; the CLI's light verbs never need it
    from datasets import Dataset

logger = logging.getLogger("meddata")


class StepParams(BaseModel):
    """Base for a step's typed parameters. Unknown keys are an error (typos surface early)."""

    model_config = ConfigDict(extra="forbid", frozen=True)


@dataclass(frozen=True)
class Drop:
    """Remove ``row`` on purpose. ``reason`` is a short snake_case label (``too_short``)."""

    row: Mapping[str, Any]
    reason: str


@dataclass(frozen=True)
class Quarantine:
    """Malformed input. ``error`` must name the field and say what was expected, never
    quote the value (it may hold PHI)."""

    error: str
    file: str | None = None
    locator: str | None = None
    row: Mapping[str, Any] | None = None


Outcome = dict | list | Drop | Quarantine


@dataclass
class StepContext:
    """What a step may know about its run. Picklable, so it travels to worker processes."""

    step_dir: Path
    recipe_dir: Path = field(default_factory=Path.cwd)
    num_proc: int = 1
    seed: int = 0
    llm_configs: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    options: Mapping[str, Any] = field(default_factory=dict)

    def resolve(self, path: str | Path) -> Path:
        """Resolve a path from a recipe relative to the recipe's folder."""
        p = Path(path).expanduser()
        return p if p.is_absolute() else (self.recipe_dir / p)

    def display_path(self, path: str | Path) -> str:
        """A path as stored in ``meta.file``: relative to the working folder when inside it."""
        p = Path(path).resolve()
        try:
            return str(p.relative_to(Path.cwd()))
        except ValueError:
            return str(p)

    def llm(self, name: str):
        """The LLM client named in the recipe's ``llms`` section (created lazily per process)."""
        from meddata.llm import client_for  # the core's LLM client; imported on first use

        if name not in self.llm_configs:
            known = ", ".join(sorted(self.llm_configs)) or "none"
            raise KeyError(f"no LLM named {name!r} in the recipe's 'llms' section (defined: {known})")
        return client_for(name, self.llm_configs[name], self)


class Step:
    """Base of every step. Subclasses set ``name``, ``description`` and usually ``Params``."""

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    kind: ClassVar[str] = "step"
    Params: ClassVar[type[StepParams]] = StepParams
    #: Columns the step reads and writes (documentation and plan-time checks).
    input_columns: ClassVar[tuple[str, ...]] = ()
    output_columns: ClassVar[tuple[str, ...]] = ()
    #: Extra dataset columns this step adds beyond the Record schema, as datasets features.
    extra_features: ClassVar[Mapping[str, Any]] = {}
    #: True for steps that may turn one input row into several (generators, upsampling).
    creates_rows: ClassVar[bool] = False
    #: Rows per call of ``process_batch`` (LLM steps raise it to fill concurrency).
    batch_size: ClassVar[int] = 256

    def __init__(self, params: StepParams | Mapping[str, Any] | None = None, **kwargs: Any):
        if isinstance(params, StepParams):
            if kwargs:
                params = params.model_copy(update=kwargs)
        else:
            params = self.Params(**{**dict(params or {}), **kwargs})
        self.params = params
        self._stats: Counter[str] = Counter()
        self._ready = False

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.params.model_dump()})"

    def setup(self, ctx: StepContext) -> None:
        """Load models, compile patterns. Runs once per worker process before the first row."""

    def ensure_setup(self, ctx: StepContext) -> None:
        if not self._ready:
            self.setup(ctx)
            self._ready = True

    def stat_update(self, key: str, value: int | float = 1) -> None:
        """Count something (``phi.NAME``, ``llm.tokens_in``); summed into stats.json."""
        self._stats[key] += value

    def take_stats(self) -> dict[str, float]:
        stats, self._stats = dict(self._stats), Counter()
        return stats

    def fingerprint_extra(self, ctx: StepContext) -> str:
        """Anything besides params that changes the output (input files' size and mtime)."""
        return ""

    def __getstate__(self) -> dict:
        # Loaded models stay behind; each worker process runs setup() itself.
        state = {k: v for k, v in self.__dict__.items() if not k.startswith("_model")}
        state["_ready"] = False
        return state


class Builder(Step):
    """Source -> rows. Streams its input; yields rows, :class:`Drop` or :class:`Quarantine`."""

    kind: ClassVar[str] = "builder"

    def read(self, ctx: StepContext) -> Iterator[dict | Drop | Quarantine]:
        raise NotImplementedError

    def input_paths(self, ctx: StepContext) -> list[Path]:
        """Files this builder reads, for fingerprints. Default: ``params.path``."""
        path = getattr(self.params, "path", None)
        return [ctx.resolve(path)] if path else []

    def fingerprint_extra(self, ctx: StepContext) -> str:
        parts = []
        for root in self.input_paths(ctx):
            files = sorted(root.rglob("*")) if root.is_dir() else [root]
            for f in files:
                if f.is_file():
                    st = f.stat()
                    parts.append(f"{f}:{st.st_size}:{st.st_mtime_ns}")
        return "|".join(parts)


class Mapper(Step):
    """Row -> row(s). Override :meth:`process` or, for batch work, :meth:`process_batch`."""

    kind: ClassVar[str] = "mapper"

    def process(self, row: dict, ctx: StepContext) -> Outcome:
        raise NotImplementedError

    def process_batch(self, rows: list[dict], ctx: StepContext) -> list[Outcome]:
        """One outcome per input row, in order. Override to batch (``nlp.pipe``, LLM calls)."""
        return [self.process(row, ctx) for row in rows]


class Filter(Mapper):
    """Keep or drop, datatrove style: :meth:`keep` returns True, False or ``(False, reason)``."""

    kind: ClassVar[str] = "filter"

    def keep(self, row: dict, ctx: StepContext) -> bool | tuple[bool, str]:
        raise NotImplementedError

    def process(self, row: dict, ctx: StepContext) -> Outcome:
        verdict = self.keep(row, ctx)
        if isinstance(verdict, tuple):
            ok, reason = verdict
        else:
            ok, reason = bool(verdict), self.name
        return row if ok else Drop(row, reason)


@dataclass
class GlobalResult:
    """What a global step returns: the rows it keeps and, optionally, the rows it drops
    (with a ``__reason__`` column; build it with :func:`split_by_reasons`)."""

    kept: Dataset
    dropped: Dataset | None = None
    report: dict[str, Any] = field(default_factory=dict)


class GlobalStep(Step):
    """Sees the whole dataset: dedup, split, mix, decontamination."""

    kind: ClassVar[str] = "global"

    def apply(self, dataset: Dataset, ctx: StepContext) -> GlobalResult:
        raise NotImplementedError


def split_by_reasons(dataset: Dataset, reasons: Iterable[str | None]) -> GlobalResult:
    """Split ``dataset`` by a per-row list of drop reasons (None = keep)."""
    import pyarrow as pa
    from datasets import Dataset

    from meddata.records import REASON_COLUMN

    reasons = list(reasons)
    if len(reasons) != len(dataset):
        raise ValueError(f"got {len(reasons)} reasons for {len(dataset)} rows")
    keep_idx = [i for i, r in enumerate(reasons) if r is None]
    drop_idx = [i for i, r in enumerate(reasons) if r is not None]
    kept = dataset.select(keep_idx)
    # Dropped rows go through Arrow: add_column on a selected view is slow for many rows.
    table = dataset.select(drop_idx).with_format("arrow")[:] if drop_idx else dataset.data.table.slice(0, 0)
    table = table.append_column(REASON_COLUMN, pa.array([reasons[i] for i in drop_idx], pa.string()))
    return GlobalResult(kept=kept, dropped=Dataset(table))


def iter_outcomes(outcome: Outcome) -> Iterator[dict | Drop | Quarantine]:
    """Flatten one input's outcome into individual items."""
    if isinstance(outcome, (dict, Drop, Quarantine)):
        yield outcome
    elif isinstance(outcome, list):
        if not outcome:
            raise ValueError(
                "a step returned an empty list for a row; return Drop(row, reason) instead "
                "so the row is accounted for"
            )
        yield from outcome
    else:
        raise TypeError(f"a step returned {type(outcome).__name__}; expected dict, list, Drop or Quarantine")
