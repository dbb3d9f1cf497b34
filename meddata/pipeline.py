"""The pipeline runner: plan -> reuse or run each step -> account.

It owns everything engine-independent: step order, fingerprints and reuse of finished
steps, per-step stats, the conservation check (rows read = rows out + dropped +
quarantined - rows created by generators) and the checks that keep a failed build from
passing as a success (0 rows out, most of a step's input quarantined, unreachable services,
duplicate ids). Engines write each step's outcomes once, through step sinks
(:mod:`meddata.engine.sink`), into the step's checkpoint folder.

Checkpoints whose rows still hold raw PHI stay in a private (0700) folder of this run,
removed at the end, on SIGTERM/SIGINT, and (if the run was killed) at the next start.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import secrets
import shutil
import signal
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import datasets
from datasets import Features

from meddata._version import __version__
from meddata.engine import Engine, get_engine
from meddata.engine.checkpoint import Checkpoint, repeated_ids
from meddata.engine.sink import SinkReport, service_url
from meddata.errors import UserError
from meddata.recipe import Recipe
from meddata.records import BASE_FEATURES
from meddata.steps import Builder, GlobalStep, Mapper, Step, StepContext

logger = logging.getLogger("meddata")

RAW_PREFIX = ".raw-"


class BuildFailed(UserError, RuntimeError):
    """The build ran but its result is not a success (0 rows out, a step quarantined most of
    its input, rows waiting for a service). Outputs and logs are written; the message says
    which step and what to look at; ``result`` holds the :class:`BuildResult` when there is one."""

    def __init__(self, message: str, result: BuildResult | None = None):
        super().__init__(message)
        self.result = result


class ConservationError(BuildFailed):
    """Rows were lost or invented: the counts do not add up. A defect of a step or of meddata,
    never of the data: the message names the step; ``stats.json`` holds every count."""


class DuplicateIdError(UserError, ValueError):
    """A builder produced the same id twice: ids must identify rows."""


@dataclass
class StepStats:
    index: int
    name: str
    kind: str
    rows_in: int = 0
    rows_out: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    quarantined: int = 0
    created: int = 0
    seconds: float = 0.0
    reused: bool = False
    counters: dict[str, float] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    phi_status: dict[str, int] = field(default_factory=dict)
    report: dict[str, Any] = field(default_factory=dict)
    #: Quarantined rows a service failed to answer, by service: retried on the next run.
    retry: dict[str, int] = field(default_factory=dict)
    #: The driver process's peak RSS so far, in MB, when the step ended: the step where it
    #: rises is the one that grew the driver (worker processes are not counted).
    driver_peak_mb: float = 0.0

    @property
    def n_dropped(self) -> int:
        return sum(self.dropped.values())


@dataclass
class BuildResult:
    out_dir: Path
    dataset_dir: Path
    stats_path: Path
    steps: list[StepStats]
    totals: dict[str, int]
    #: Why this build is not a success (0 rows out, a step quarantined most of its input, rows
    #: waiting for a service), one line each; empty when it is. ``meddata build`` exits non-zero.
    problems: list[str] = field(default_factory=list)

    @property
    def rows_out(self) -> int:
        return self.totals["out"]

    @property
    def ok(self) -> bool:
        return not self.problems


def schema_for(recipe: Recipe) -> Features:
    """The Record schema plus every extra column a builder or step of the recipe declares."""
    extra: dict[str, Any] = {}
    for step in [*recipe.inputs, *recipe.steps]:
        extra.update(step.extra_features)
    return Features({**BASE_FEATURES, **extra})


def _digest(*parts: Any) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(json.dumps(p, sort_keys=True, default=str).encode())
        h.update(b"\x1e")
    return h.hexdigest()[:16]


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_raw(work: Path) -> list[Path]:
    """Raw-PHI folders of runs that were killed (their process is gone): removed."""
    removed = []
    for d in work.glob(f"{RAW_PREFIX}*"):
        try:
            pid = int(d.name[len(RAW_PREFIX):].split("-")[0])
        except ValueError:
            pid = -1
        if pid != os.getpid() and (pid < 0 or not _pid_alive(pid)):
            shutil.rmtree(d, ignore_errors=True)
            removed.append(d)
    if removed:
        logger.info("removed %d raw-PHI scratch folder(s) left by killed runs", len(removed))
    return removed


class _Terminated(SystemExit):
    """SIGTERM, turned into an exception so the run's cleanup (raw PHI) happens."""


class Runner:
    """Runs one recipe once. Use :func:`run` unless you need the pieces."""

    def __init__(
        self,
        recipe: Recipe,
        out_dir: str | Path | None = None,
        *,
        num_proc: int | None = None,
        limit: int | None = None,
        engine: str | None = None,
        engine_options: dict[str, Any] | None = None,
        strict: bool = True,
    ):
        self.recipe = recipe
        #: Raise :class:`BuildFailed` for a build with problems (default, as ``meddata build``
        #: exits non-zero). ``strict=False`` returns the result instead: the problems are logged
        #: and listed in ``BuildResult.problems`` (``result.ok`` is False), for callers that
        #: inspect a failed build themselves.
        self.strict = strict
        self.out_dir = Path(recipe.output_dir(out_dir)).resolve()
        self.num_proc = num_proc or recipe.engine.num_proc
        self.limit = limit
        self.engine_name = engine or recipe.engine.name
        self.engine_options = {**recipe.engine.options, **(engine_options or {})}
        self.work = self.out_dir / ".work"
        self.raw_work = self.work / f"{RAW_PREFIX}{os.getpid()}-{secrets.token_hex(4)}"
        self.features = schema_for(recipe)
        self.stats: list[StepStats] = []
        #: The checkpoint folder of each step of this run (saved or reused), by step index.
        self.checkpoints: dict[int, Path] = {}
        #: The checkpoint folders whose shards, in order, hold the dataset the next step reads.

    # -- checkpoints ----------------------------------------------------------------------
    def _ctx(self, step_dir: Path) -> StepContext:
        return StepContext(step_dir=step_dir, recipe_dir=self.recipe.base_dir, num_proc=self.num_proc,
                           seed=self.recipe.seed, llm_configs=self.recipe.llms,
                           executor="ray" if self.engine_name == "ray" else "local")

    def _find(self, tag: str) -> Path | None:
        for root in (self.work, self.raw_work):
            d = root / tag
            if (d / "DONE").exists():
                return d
        return None

    @staticmethod
    def _has_data(d: Path | None) -> bool:
        return d is not None and (d / "data").is_dir()

    def _reuse(self, d: Path, index: int) -> StepStats:
        st = StepStats(**json.loads((d / "stats.json").read_text()))
        st.index, st.reused = index, True
        self.checkpoints[index] = d
        self.stats.append(st)
        logger.info("reused step %d %s (checkpoint %s)", index, st.name, d.name)
        return st

    def _prune(self, index: int) -> None:
        """keep_checkpoints: last/none: an input no longer needed keeps its logs, not its rows."""
        if self.recipe.output.keep_checkpoints == "all":
            return
        d = self.checkpoints.get(index)
        if d is not None and d.parent == self.work:
            shutil.rmtree(d / "data", ignore_errors=True)

    def _settle(self, tag: str, st: StepStats, d: Path) -> Path:
        """Place a finished step's folder: .work, or the run's raw-PHI folder while rows are raw."""
        raw = st.phi_status.get("raw", 0) > 0 and not self.recipe.output.keep_raw_checkpoints
        for store in (self.work, self.raw_work):  # an older checkpoint of this step may be in either
            for old in store.glob(f"{st.index:02d}-*"):
                if old != d:
                    shutil.rmtree(old, ignore_errors=True)
        shutil.rmtree(d / "scratch", ignore_errors=True)
        if not raw:
            target = self.work / tag
            d.rename(target)
            d = target
        (d / "stats.json").write_text(json.dumps(asdict(st), default=str))
        if st.retry:
            urls = ", ".join(f"{s} at {service_url(s, self.recipe.llms)}" for s in st.retry)
            logger.warning("step %d %s: %d rows got no answer from %s; they are retried on the next run",
                           st.index, st.name, sum(st.retry.values()), urls)
        else:
            (d / "DONE").write_text("ok")
        self.checkpoints[st.index] = d
        return d

    # -- running ----------------------------------------------------------------------------
    def run(self) -> BuildResult:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.work.mkdir(exist_ok=True)
        remove_stale_raw(self.work)
        self.raw_work.mkdir(mode=0o700)
        os.chmod(self.raw_work, 0o700)  # mkdir's mode is filtered by the umask
        previous = self._catch_sigterm()
        datasets.disable_progress_bars()  # engines show one bar per step instead
        engine = None
        try:
            engine = get_engine(self.engine_name, num_proc=self.num_proc, **self.engine_options)
            return self._finish(engine, self._run_all(engine))
        finally:
            if engine is not None:
                engine.close()
            for step in [*self.recipe.inputs, *self.recipe.steps]:  # the step contract: setup ... teardown
                step.teardown()
            if "meddata.llm" in sys.modules:  # stop LLM clients' event-loop threads
                sys.modules["meddata.llm"].close_all()
            datasets.enable_progress_bars()
            shutil.rmtree(self.raw_work, ignore_errors=True)
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)

    @staticmethod
    def _catch_sigterm():
        if threading.current_thread() is not threading.main_thread():
            return None

        def _raise(signum, frame):
            raise _Terminated(128 + signum)

        return signal.signal(signal.SIGTERM, _raise)

    def _plan(self) -> list[tuple[int, Step, str]]:
        """(index, step, checkpoint tag) for every input and step; tags chain fingerprints."""
        plan, fps = [], []
        for i, builder in enumerate(self.recipe.inputs):
            tag = f"{i:02d}-{builder.name}"
            fp = _digest(__version__, tag, builder.params.model_dump(), builder.fingerprint_extra(self._ctx(self.work)),
                         self.limit, dict(self.features))
            plan.append((i, builder, f"{tag}-{fp}"))
            fps.append(fp)
        fp = _digest(*fps)
        for i, step in enumerate(self.recipe.steps, start=len(self.recipe.inputs)):
            fp = _digest(fp, __version__, step.name, step.params.model_dump(), step.fingerprint_extra(self._ctx(self.work)))
            plan.append((i, step, f"{i:02d}-{step.name}-{fp}"))
        return plan

    def _resume_point(self, plan: list[tuple[int, Step, str]]) -> int:
        """The last step whose rows are on disk and whose predecessors all finished, or -1."""
        n_inputs = len(self.recipe.inputs)
        found = [self._find(tag) for _, _, tag in plan]
        best = -1
        for k in range(n_inputs, len(plan)):
            if all(found[: k + 1]) and self._has_data(found[k]):
                best = k
        return best

    def _run_all(self, engine: Engine) -> Checkpoint:
        plan = self._plan()
        n_inputs = len(self.recipe.inputs)
        resume = self._resume_point(plan)
        if resume >= 0:
            for index, _, tag in plan[: resume + 1]:
                self._reuse(self._find(tag), index)
            source = self._checkpoint(resume)
        else:
            parts: list[Checkpoint] = []
            for index, builder, tag in plan[:n_inputs]:
                found = self._find(tag)
                if self._has_data(found):
                    self._reuse(found, index)
                else:
                    self._read_one(engine, index, builder, tag)
                parts.append(self._checkpoint(index))
            self._check_ids(engine, parts)
            source = Checkpoint(tuple(d for part in parts for d in part.dirs), sum(len(part) for part in parts))
        for index, step, tag in plan[max(resume + 1, n_inputs):]:
            found = self._find(tag)
            if self._has_data(found):
                self._reuse(found, index)
            else:
                self._run_step(engine, index, step, tag, source)
            source = self._checkpoint(index)
            for prev in (range(n_inputs) if index == n_inputs else [index - 1]):
                self._prune(prev)
        return source

    def _checkpoint(self, index: int) -> Checkpoint:
        rows = next(s.rows_out for s in self.stats if s.index == index)
        return Checkpoint((self.checkpoints[index],), rows)

    def _check_ids(self, engine: Engine, inputs: list[Checkpoint]) -> None:
        """Ids must be unique, within an input and across inputs: fail naming the builder."""
        found = engine.run_task(repeated_ids, inputs)
        if found is not None:
            index, what = found
            name = self.recipe.inputs[index].name
            raise DuplicateIdError(
                f"inputs[{index}] {name!r}: {what}; every row needs a unique id (fix the builder's id "
                "rule, or give the inputs different sources)"
            )

    def _step_dir(self, tag: str) -> Path:
        d = self.raw_work / tag
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir(parents=True)
        return d

    def _read_one(self, engine: Engine, i: int, builder: Builder, tag: str) -> None:
        d = self._step_dir(tag)
        t0 = time.perf_counter()
        report = engine.read(builder, self._ctx(d / "scratch"), self.features, d, limit=self.limit)
        n_in = report.kept + sum(report.dropped.values()) + report.quarantined
        st = self._stats_from(i, builder, report, rows_in=n_in, seconds=time.perf_counter() - t0)
        self._settle(tag, st, d)
        self.stats.append(st)

    def _stats_from(self, i: int, step: Step, report: SinkReport, *, rows_in: int, seconds: float) -> StepStats:
        return StepStats(
            index=i, name=step.name, kind=step.kind, rows_in=rows_in, rows_out=report.kept,
            dropped=dict(report.dropped), quarantined=report.quarantined, seconds=seconds,
            counters=dict(report.counters), params=step.params.model_dump(), phi_status=dict(report.phi_status),
            retry=dict(report.retry), driver_peak_mb=_driver_peak_mb(),
        )

    def _run_step(self, engine: Engine, i: int, step: Step, tag: str, source: Checkpoint) -> None:
        d = self._step_dir(tag)
        ctx = self._ctx(d / "scratch")
        (d / "scratch").mkdir()
        t0 = time.perf_counter()
        step_report: dict[str, Any] = {}
        if isinstance(step, GlobalStep):
            outcome = engine.run_global(step, source, ctx, self.features, d)
            report, step_report = outcome.sink, outcome.report
            consumed = len(source) - sum(report.dropped.values()) - report.quarantined
        elif isinstance(step, Mapper):
            report = engine.map_rows(step, source, ctx, self.features, d)
            consumed = report.consumed
        else:
            raise TypeError(f"step {step.name!r} is a {step.kind}; only mappers, filters and global steps run here")
        st = self._stats_from(i, step, report, rows_in=len(source), seconds=0.0)
        st.created = st.rows_out - consumed
        if st.created < 0:
            raise ConservationError(
                f"step {i} {step.name!r} lost {-st.created:,} rows: {st.rows_in:,} in, {st.n_dropped:,} dropped, "
                f"{st.quarantined:,} quarantined, {st.rows_out:,} out. A defect of the step: every row it does not "
                "keep must be dropped with a reason or quarantined"
            )
        if st.created and not step.creates_rows:
            raise ConservationError(
                f"step {step.name!r} turned {consumed} rows into {st.rows_out} but does not declare creates_rows = True"
            )
        st.report = step_report
        st.seconds = time.perf_counter() - t0
        self._settle(tag, st, d)
        self.stats.append(st)

    # -- output ------------------------------------------------------------------------------
    def _finish(self, engine: Engine, source: Checkpoint) -> BuildResult:
        from meddata.output import write_outputs_from

        dataset_dir, written = engine.run_task(write_outputs_from, source, self.recipe.output, self.out_dir)
        logs = self._collect_logs()
        totals, mismatches = self._check_conservation(written, logs)
        stats_path = self.out_dir / "stats.json"
        stats_path.write_text(json.dumps({
            "recipe": self.recipe.name,
            "meddata_version": __version__,
            "engine": self.engine_name,
            "num_proc": self.num_proc,
            "limit": self.limit,
            "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "totals": totals,
            "steps": [asdict(s) for s in self.stats],
            "phi_status": dict(self.stats[-1].phi_status) if self.stats else {},
            "conservation_errors": mismatches,
            "driver_peak_mb": _driver_peak_mb(),
        }, indent=2, default=str))
        if mismatches:
            more = f" (and {len(mismatches) - 1} more)" if len(mismatches) > 1 else ""
            raise ConservationError(
                f"counts do not add up: {mismatches[0]}{more}; every count is in {stats_path}. Rows were lost "
                "or invented by a step, not by the data: report it with that file"
            )
        result = BuildResult(self.out_dir, dataset_dir, stats_path, self.stats, totals)
        if self.recipe.output.keep_checkpoints == "none":
            for index in list(self.checkpoints):
                self._prune(index)
        result.problems = self._problems(result)
        for line in result.problems:
            logger.warning("build problem: %s", line)
        if result.problems and self.strict:
            raise BuildFailed(result.problems[0], result)
        return result

    def _problems(self, result: BuildResult) -> list[str]:
        """A build that lost its rows is a failure, whatever the counts say."""
        rate = self.recipe.output.max_quarantine_rate
        problems = []
        for s in self.stats:
            if s.retry:
                services = ", ".join(f"{k} at {service_url(k, self.recipe.llms)}" for k in s.retry)
                problems.append(
                    f"step {s.index} {s.name!r}: cannot reach {services} for {sum(s.retry.values()):,} of "
                    f"{s.rows_in:,} rows; re-run when it is reachable: only those rows are sent again"
                )
            elif s.rows_in and s.quarantined / s.rows_in > rate:
                problems.append(
                    f"step {s.index} {s.name!r} quarantined {s.quarantined:,} of {s.rows_in:,} rows (more than "
                    f"output.max_quarantine_rate {rate:g}); see {self.out_dir / 'quarantine.jsonl'}"
                )
        if result.totals["out"] == 0:
            last = next((s for s in self.stats if s.rows_out == 0), None)
            where = f"; no rows left after step {last.index} {last.name!r}" if last is not None else ""
            problems.append(f"the build produced 0 rows{where} (see {self.out_dir / 'stats.json'} and the drop log)")
        return problems

    def _collect_logs(self) -> dict[str, int]:
        """Concatenate every step's drop and quarantine shards into the build folder; count lines."""
        drop_dir = self.out_dir / "dropped"
        shutil.rmtree(drop_dir, ignore_errors=True)
        quarantine = self.out_dir / "quarantine.jsonl"
        dropped_lines = quarantined_lines = 0
        with quarantine.open("wb") as qfh:
            for st in self.stats:
                logs = self.checkpoints[st.index] / "logs"
                shards = sorted(logs.glob("dropped-*.jsonl"))
                if shards:
                    drop_dir.mkdir(exist_ok=True)
                    with (drop_dir / f"{st.index:02d}-{st.name}.jsonl").open("wb") as dfh:
                        dropped_lines += sum(_append(p, dfh) for p in shards)
                quarantined_lines += sum(_append(p, qfh) for p in sorted(logs.glob("quarantine-*.jsonl")))
        return {"dropped_lines": dropped_lines, "quarantine_lines": quarantined_lines}

    def _check_conservation(self, written: int, logs: dict[str, int]) -> tuple[dict[str, int], list[str]]:
        """Totals, and every count that does not add up (one line each; empty when all do)."""
        n_inputs = len(self.recipe.inputs)
        readers, steps = self.stats[:n_inputs], self.stats[n_inputs:]
        totals = {
            "read": sum(s.rows_in for s in readers),
            "out": written,
            "dropped": sum(s.n_dropped for s in self.stats),
            "quarantined": sum(s.quarantined for s in self.stats),
            "created": sum(s.created for s in self.stats),
        }
        problems = []
        for s in readers:
            if s.rows_in != s.rows_out + s.n_dropped + s.quarantined:
                problems.append(f"input {s.name}: {s.rows_in} read != {s.rows_out} out + {s.n_dropped} dropped + {s.quarantined} quarantined")
        prev = sum(s.rows_out for s in readers)
        for s in steps:
            if s.rows_in != prev:
                problems.append(f"step {s.index} {s.name}: got {s.rows_in} rows but the previous step produced {prev}")
            if s.rows_out != s.rows_in - s.n_dropped - s.quarantined + s.created:
                problems.append(f"step {s.index} {s.name}: {s.rows_in} in - {s.n_dropped} dropped - {s.quarantined} quarantined + {s.created} created != {s.rows_out} out")
            prev = s.rows_out
        if prev != totals["out"]:
            problems.append(f"the last step produced {prev} rows but {totals['out']} were written")
        if logs["dropped_lines"] != totals["dropped"]:
            problems.append(f"drop logs hold {logs['dropped_lines']} rows, stats say {totals['dropped']}")
        if logs["quarantine_lines"] != totals["quarantined"]:
            problems.append(f"quarantine.jsonl holds {logs['quarantine_lines']} rows, stats say {totals['quarantined']}")
        if totals["read"] != totals["out"] + totals["dropped"] + totals["quarantined"] - totals["created"]:
            problems.append("rows read != rows out + dropped + quarantined - created")
        return totals, problems


def _append(src: Path, dst) -> int:
    """Copy ``src`` onto the open binary file ``dst``; return its line count."""
    lines = 0
    with src.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            dst.write(chunk)
            lines += chunk.count(b"\n")
    return lines


def _driver_peak_mb() -> float:
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return round(peak / (2**20 if sys.platform == "darwin" else 2**10), 1)


def run(recipe: Recipe, out_dir: str | Path | None = None, **kwargs: Any) -> BuildResult:
    """Run a recipe (see :class:`Runner` for options) and return where everything went.

    A build that is not a success raises :class:`BuildFailed` (its ``result`` attribute holds
    the :class:`BuildResult`), as ``meddata build`` exits non-zero; pass ``strict=False`` to get
    the result back instead and read ``result.ok`` / ``result.problems``."""
    return Runner(recipe, out_dir, **kwargs).run()
