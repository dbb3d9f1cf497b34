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

import functools
import logging
import os
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel, ConfigDict

from meddata.errors import StepSetupError, UserError
from meddata.extras import install_hint
from meddata.io import file_stamps
from meddata.outcomes import Drop, Quarantine

if TYPE_CHECKING:  # `datasets` costs a second to import; the CLI's light verbs never need it
    from datasets import Dataset

logger = logging.getLogger("meddata")


class StepParams(BaseModel):
    """Base for a step's typed parameters. Unknown keys are an error (typos surface early)."""

    model_config = ConfigDict(extra="forbid", frozen=True)


Outcome = dict | list | Drop | Quarantine


@functools.lru_cache(maxsize=4096)
def _display_path(path: str, cwd: str) -> str:
    p = Path(path).resolve()
    try:
        return str(p.relative_to(cwd))
    except ValueError:
        return str(p)


@dataclass
class StepContext:
    """What a step may know about its run. Picklable, so it travels to worker processes."""

    step_dir: Path
    recipe_dir: Path = field(default_factory=Path.cwd)
    num_proc: int = 1
    seed: int = 0
    llm_configs: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    #: LLM name -> the cluster-wide rpm/tpm budget every worker's client draws from (set by the
    #: Ray engine; empty on one machine, where each client keeps its own limits).
    rate_budgets: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    #: Where a global step's parallel work runs: "local" (forked processes on this machine) or
    #: "ray" (tasks on the Ray cluster the engine joined; inputs on a path the cluster shares).
    executor: str = "local"
    #: The input files this task's builder reads: a contiguous slice of its sorted file list, set
    #: by an engine that splits the read across tasks (builders whose
    #: :meth:`~Builder.independent_files` lists them), listed once in the driver; None: every file.
    files: tuple[str, ...] | None = None

    def resolve(self, path: str | Path) -> Path:
        """Resolve a path from a recipe relative to the recipe's folder."""
        p = Path(path).expanduser()
        return p if p.is_absolute() else (self.recipe_dir / p)

    def display_path(self, path: str | Path) -> str:
        """A path as stored in ``meta.file``: relative to the working folder when inside it.
        Builders ask once per row, so the answer is cached per (path, working folder)."""
        return _display_path(str(path), os.getcwd())

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
    #: Attributes :meth:`setup` creates for one worker process (models, compiled patterns,
    #: vocabularies, LLM clients): never pickled to another process (each worker runs setup()
    #: itself) and released by :meth:`teardown`.
    worker_state: ClassVar[tuple[str, ...]] = ()
    #: Top-level modules the step needs beyond meddata's core dependencies (``("spacy",)``):
    #: checked when the recipe loads, so ``meddata validate`` names the missing extra.
    #: Override :meth:`requirements` when they depend on the parameters.
    requires: ClassVar[tuple[str, ...]] = ()

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
        """Load models, compile patterns. Runs once per worker process before the first row;
        store what it makes in attributes listed in :attr:`worker_state`."""

    def teardown(self) -> None:
        """Release what :meth:`setup` made. The runner calls it once the step has seen its last
        row (in the build process, and in each worker for its copy of the step); the default
        drops :attr:`worker_state`. Override to close clients or files, then call super()."""
        for name in self.worker_state:
            self.__dict__.pop(name, None)
        self._ready = False

    def requirements(self) -> tuple[str, ...]:
        """Modules this step, with these parameters, needs (default :attr:`requires`)."""
        return self.requires

    def ensure_setup(self, ctx: StepContext) -> None:
        if not self._ready:
            try:
                self.setup(ctx)
            except UserError:
                raise
            except ModuleNotFoundError as exc:
                raise StepSetupError(f"step {self.name!r} could not set up: {install_hint(exc.name or '')}") from exc
            except Exception as exc:
                raise StepSetupError(f"step {self.name!r} could not set up: {exc}") from exc
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

    #: True on a copy unpickled in a worker: the copy is torn down when its task ends.
    is_worker_copy: bool = False

    def __getstate__(self) -> dict:
        # Worker state stays behind; each worker process runs setup() itself.
        skip = set(self.worker_state)
        state = {k: v for k, v in self.__dict__.items() if k not in skip}
        state["_ready"] = False
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self.is_worker_copy = True


class Builder(Step):
    """Source -> rows. Streams its input; yields rows, :class:`Drop` or :class:`Quarantine`."""

    kind: ClassVar[str] = "builder"

    def read(self, ctx: StepContext) -> Iterator[dict | Drop | Quarantine]:
        raise NotImplementedError

    def independent_files(self, ctx: StepContext) -> list[Path]:
        """The input files a read visits, in reading order, when this read may be split across
        them; empty (the default) when it may not. A builder returns them only when each file's
        rows, ids, drops, quarantines and counters depend on that file alone: reading contiguous
        slices of the list in separate tasks and putting their shards in file order then gives
        exactly the rows of one read. Such a builder reads only ``ctx.files`` when it is set.
        Engines ask before a read: it lists files, never opens them."""
        return []

    def input_paths(self, ctx: StepContext) -> list[Path]:
        """Files this builder reads, for fingerprints. Default: ``params.path``."""
        path = getattr(self.params, "path", None)
        return [ctx.resolve(path)] if path else []

    def fingerprint_extra(self, ctx: StepContext) -> str:

        return file_stamps(self.input_paths(ctx))


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

    @property
    def rows_unchanged(self) -> bool:
        """True when kept rows leave the step exactly as they came (no annotation): the
        engines then keep them as a mask over the Arrow batch instead of rebuilding them."""
        return False

    def keep(self, row: dict, ctx: StepContext) -> bool | tuple[bool, str]:
        raise NotImplementedError

    def process(self, row: dict, ctx: StepContext) -> Outcome:
        verdict = self.keep(row, ctx)
        if isinstance(verdict, tuple):
            ok, reason = verdict
        else:
            ok, reason = bool(verdict), self.name
        return row if ok else Drop(row, reason)


class GlobalResult:
    """What a global step returns. Two forms:

    * decisions (preferred; what :func:`split_by_reasons` builds): ``source`` plus one drop
      reason per row (``None`` = keep), optional ``drop_notes`` (row index -> annotations
      merged into the dropped row's ``meta.annotations``) and ``new_columns`` (name -> one
      value per row, e.g. split labels). The runner streams ``source`` once and writes kept
      rows and the drop log from them: no copy of the dataset is ever built in memory.
    * datasets: ``kept`` and, optionally, ``dropped`` (with a ``__reason__`` column), for steps
      that reorder or rewrite rows (mixing). ``kept``/``dropped`` are also available, computed
      on first use, from the decision form.
    """

    def __init__(
        self,
        kept: Dataset | None = None,
        dropped: Dataset | None = None,
        report: dict[str, Any] | None = None,
        *,
        source: Dataset | None = None,
        reasons: Sequence[str | None] | None = None,
        drop_notes: Mapping[int, Mapping[str, Any]] | None = None,
        new_columns: Mapping[str, Sequence[Any]] | None = None,
    ):
        if kept is None and source is None:
            raise ValueError("GlobalResult needs kept rows or a source with per-row reasons")
        if source is not None:
            reasons = list(reasons) if reasons is not None else [None] * len(source)
            if len(reasons) != len(source):
                raise ValueError(f"got {len(reasons)} reasons for {len(source)} rows")
        self._kept, self._dropped = kept, dropped
        self.report: dict[str, Any] = dict(report or {})
        self.source, self.reasons = source, reasons
        self.drop_notes = dict(drop_notes or {})
        # a numpy array stays one (a split's labels: one pointer per row to a few shared strings)
        self.new_columns = {k: v if type(v).__module__ == "numpy" else list(v) for k, v in (new_columns or {}).items()}

    @property
    def decided(self) -> bool:
        """True when the result is per-row decisions over ``source`` (see the class docstring)."""
        return self.source is not None

    @property
    def kept(self) -> Dataset:
        if self._kept is None:
            keep_idx = [i for i, r in enumerate(self.reasons) if r is None]
            kept = self.source.select(keep_idx)
            for name, values in self.new_columns.items():
                if name in kept.column_names:
                    kept = kept.remove_columns(name)
                kept = kept.add_column(name, [values[i] for i in keep_idx])
            self._kept = kept
        return self._kept

    @kept.setter
    def kept(self, value: Dataset) -> None:
        self._kept, self.source, self.reasons = value, None, None

    @property
    def dropped(self) -> Dataset | None:
        if self._dropped is None and self.source is not None:
            import pyarrow as pa
            from datasets import Dataset

            from meddata.records import REASON_COLUMN

            drop_idx = [i for i, r in enumerate(self.reasons) if r is not None]
            src = self.source
            table = src.select(drop_idx).with_format("arrow")[:] if drop_idx else src.with_format("arrow")[:0]
            if self.drop_notes:
                rows = table.to_pylist()
                for i, row in zip(drop_idx, rows):
                    annotate_row(row, self.drop_notes.get(i))
                table = pa.Table.from_pylist(rows, schema=table.schema)
            table = table.append_column(REASON_COLUMN, pa.array([self.reasons[i] for i in drop_idx], pa.string()))
            self._dropped = Dataset(table)
        return self._dropped

    @dropped.setter
    def dropped(self, value: Dataset | None) -> None:
        self._dropped = value


def annotate_row(row: dict, note: Mapping[str, Any] | None) -> dict:
    """Merge ``note`` into ``row["meta"]["annotations"]`` (a JSON object string)."""
    import json

    if note and isinstance(row.get("meta"), dict):
        ann = json.loads(row["meta"].get("annotations") or "{}")
        ann.update(note)
        row["meta"]["annotations"] = json.dumps(ann, sort_keys=True, default=str)
    return row


class GlobalStep(Step):
    """Sees the whole dataset: dedup, split, mix, decontamination."""

    kind: ClassVar[str] = "global"

    def apply(self, dataset: Dataset, ctx: StepContext) -> GlobalResult:
        raise NotImplementedError


def split_by_reasons(dataset: Dataset, reasons: Iterable[str | None]) -> GlobalResult:
    """Per-row drop reasons (None = keep) over ``dataset``, as a decision-form result."""
    return GlobalResult(source=dataset, reasons=list(reasons))


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
