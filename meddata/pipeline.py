"""The pipeline runner: inputs -> steps -> output, with checkpoints, stats and accounting.

It owns everything engine-independent: step order, fingerprints and reuse of finished
steps, drop logs and quarantine, per-step stats and the conservation check
(rows read = rows out + dropped + quarantined - rows created by generators).
Checkpoints that still hold raw PHI live in a temporary folder removed at the end of the
run, so PHI never lingers in a cache.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import sys
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import datasets
import pyarrow.compute as pc
from datasets import Dataset, Features, concatenate_datasets, load_from_disk

from meddata import __version__
from meddata.engine import Engine, get_engine
from meddata.engine.batch import CONSUMED_STAT, STATS_COLUMN
from meddata.recipe import Recipe
from meddata.records import BASE_FEATURES, REASON_COLUMN, STATUS_COLUMN
from meddata.steps import Builder, GlobalStep, Mapper, Step, StepContext

logger = logging.getLogger("meddata")


class ConservationError(RuntimeError):
    """Rows were lost or invented: the counts do not add up."""


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

    @property
    def rows_out(self) -> int:
        return self.totals["out"]


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


def _phi_counts(ds: Dataset) -> dict[str, int]:
    """``meta.phi_status`` value counts, computed in Arrow (also on selected views)."""
    if len(ds) == 0:
        return {}
    meta = ds.with_format("arrow")["meta"]
    counts = pc.value_counts(pc.struct_field(meta, "phi_status")).to_pylist()
    return {c["values"]: c["counts"] for c in counts if c["values"] is not None}


def _withhold_if_raw(row: dict) -> dict:
    """Drop-log rows keep content only when they carry no raw PHI."""
    meta = row.get("meta") or {}
    if meta.get("phi_status") == "raw":
        return {
            "id": row.get("id"),
            "source": row.get("source"),
            "meta": {k: meta.get(k) for k in ("builder", "file", "locator", "phi_status")},
            "content": "withheld: raw PHI (de-identify before this step to keep content in the drop log)",
        }
    return {k: v for k, v in row.items() if v is not None and not k.startswith("__")}


class _JsonlSink:
    def __init__(self, path: Path):
        self.path = path
        self.count = 0
        self._fh = None

    def write(self, obj: dict) -> None:
        if self._fh is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fh = self.path.open("w", encoding="utf-8")
        self._fh.write(json.dumps(obj, ensure_ascii=False, default=str) + "\n")
        self.count += 1

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()


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
    ):
        self.recipe = recipe
        self.out_dir = Path(recipe.output_dir(out_dir)).resolve()
        self.num_proc = num_proc or recipe.engine.num_proc
        self.limit = limit
        self.engine_name = engine or recipe.engine.name
        self.work = self.out_dir / ".work"
        self.raw_work = Path(tempfile.mkdtemp(prefix="meddata-raw-"))
        self.features = schema_for(recipe)
        self.stats: list[StepStats] = []
        #: The checkpoint folder of each step of this run (saved or reused), by step index.
        self.checkpoints: dict[int, Path] = {}

    # -- checkpoints ----------------------------------------------------------------------
    def _ctx(self, step_dir: Path) -> StepContext:
        return StepContext(
            step_dir=step_dir,
            recipe_dir=self.recipe.base_dir,
            num_proc=self.num_proc,
            seed=self.recipe.seed,
            llm_configs=self.recipe.llms,
        )

    def _find_checkpoint(self, tag: str) -> Path | None:
        for root in (self.work, self.raw_work):
            d = root / tag
            if (d / "DONE").exists():
                return d
        return None

    def _save_checkpoint(self, tag: str, ds: Dataset, st: StepStats, drops: Path, quar: Path) -> Dataset:
        raw = st.phi_status.get("raw", 0) > 0 and not self.recipe.output.keep_raw_checkpoints
        root = self.raw_work if raw else self.work
        for store in (self.work, self.raw_work):  # an older checkpoint of this step may be in either
            for old in store.glob(f"{st.index:02d}-*"):
                if old.name != tag:
                    shutil.rmtree(old, ignore_errors=True)
        d = root / tag
        if d.exists():
            shutil.rmtree(d)
        d.mkdir(parents=True)
        # datasets writes no shard for an empty dataset and then cannot load it back
        ds.save_to_disk(str(d / "data"), num_shards=1 if len(ds) == 0 else None)
        for src in (drops, quar):
            if src.exists():
                shutil.move(str(src), d / src.name)
        (d / "stats.json").write_text(json.dumps(asdict(st), default=str))
        (d / "DONE").write_text("ok")
        self.checkpoints[st.index] = d
        return load_from_disk(str(d / "data"))

    def _load_checkpoint(self, d: Path, index: int) -> tuple[Dataset, StepStats]:
        st = StepStats(**json.loads((d / "stats.json").read_text()))
        st.index, st.reused = index, True
        self.checkpoints[index] = d
        return load_from_disk(str(d / "data")), st

    # -- running ----------------------------------------------------------------------------
    def run(self) -> BuildResult:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        datasets.disable_progress_bars()  # engines show one bar per step instead
        engine = get_engine(self.engine_name, num_proc=self.num_proc, **self.recipe.engine.options)
        try:
            ds, fp = self._read_inputs(engine)
            for i, step in enumerate(self.recipe.steps, start=len(self.recipe.inputs)):
                ds, fp = self._run_step(engine, i, step, ds, fp)
            return self._finish(ds)
        finally:
            engine.close()
            if "meddata.llm" in sys.modules:  # stop LLM clients' event-loop threads
                sys.modules["meddata.llm"].close_all()
            datasets.enable_progress_bars()
            shutil.rmtree(self.raw_work, ignore_errors=True)

    def _read_inputs(self, engine: Engine) -> tuple[Dataset, str]:
        parts, fps = [], []
        for i, builder in enumerate(self.recipe.inputs):
            tag = f"{i:02d}-{builder.name}"
            fp = _digest(__version__, tag, builder.params.model_dump(), builder.fingerprint_extra(self._ctx(self.work)),
                         self.limit, dict(self.features))
            tag = f"{tag}-{fp}"
            found = self._find_checkpoint(tag)
            if found:
                ds, st = self._load_checkpoint(found, i)
                logger.info("reused step %d %s (checkpoint %s)", i, builder.name, found.name)
            else:
                ds, st = self._read_one(engine, i, builder, tag)
            self.stats.append(st)
            parts.append(ds)
            fps.append(fp)
        ds = parts[0] if len(parts) == 1 else concatenate_datasets(parts)
        return ds, _digest(*fps)

    def _read_one(self, engine: Engine, i: int, builder: Builder, tag: str) -> tuple[Dataset, StepStats]:
        scratch = self.raw_work / f"scratch-{tag}"
        drops, quar = _JsonlSink(scratch / "dropped.jsonl"), _JsonlSink(scratch / "quarantine.jsonl")
        drop_reasons: Counter[str] = Counter()

        def on_drop(row: dict, reason: str) -> None:
            drop_reasons[reason] += 1
            drops.write({"step": builder.name, "reason": reason, **_withhold_if_raw(row)})

        def on_quarantine(entry: dict) -> None:
            quar.write({"step": builder.name, **entry})

        t0 = time.perf_counter()
        ctx = self._ctx(scratch)
        try:
            result = engine.read(builder, ctx, self.features, limit=self.limit, on_drop=on_drop,
                                 on_quarantine=on_quarantine, scratch=scratch)
        finally:
            drops.close()
            quar.close()
        st = StepStats(
            index=i, name=builder.name, kind="builder", rows_in=len(result.dataset) + result.dropped + result.quarantined,
            rows_out=len(result.dataset), dropped=dict(drop_reasons), quarantined=result.quarantined,
            seconds=time.perf_counter() - t0, counters=builder.take_stats(), params=builder.params.model_dump(),
            phi_status=_phi_counts(result.dataset),
        )
        ds = self._save_checkpoint(tag, result.dataset, st, drops.path, quar.path)
        shutil.rmtree(scratch, ignore_errors=True)
        return ds, st

    def _run_step(self, engine: Engine, i: int, step: Step, ds: Dataset, fp_in: str) -> tuple[Dataset, str]:
        fp = _digest(fp_in, __version__, step.name, step.params.model_dump(), step.fingerprint_extra(self._ctx(self.work)))
        tag = f"{i:02d}-{step.name}-{fp}"
        found = self._find_checkpoint(tag)
        if found:
            out, st = self._load_checkpoint(found, i)
            logger.info("reused step %d %s (checkpoint %s)", i, step.name, found.name)
            self.stats.append(st)
            return out, fp
        scratch = self.raw_work / f"scratch-{tag}"
        scratch.mkdir(parents=True, exist_ok=True)
        ctx = self._ctx(scratch)
        t0 = time.perf_counter()
        st = StepStats(index=i, name=step.name, kind=step.kind, rows_in=len(ds), params=step.params.model_dump())
        if isinstance(step, GlobalStep):
            kept, dropped, report = self._global(engine, step, ds, ctx)
            counters = step.take_stats()
            consumed = len(ds) - (len(dropped) if dropped is not None else 0)
            quarantined = None
        elif isinstance(step, Mapper):
            mapped = engine.map_rows(step, ds, ctx, scratch)
            kept, dropped, quarantined, counters, consumed = self._split_outcomes(mapped)
            report = {}
        else:
            raise TypeError(f"step {step.name!r} is a {step.kind}; only mappers, filters and global steps run here")
        st.rows_out = len(kept)
        drops, quar = scratch / "dropped.jsonl", scratch / "quarantine.jsonl"
        st.dropped = self._write_drops(step.name, dropped, drops)
        st.quarantined = self._write_quarantine(step.name, quarantined, quar)
        st.created = st.rows_out - consumed
        if st.created and not step.creates_rows:
            raise ConservationError(
                f"step {step.name!r} turned {consumed} rows into {st.rows_out} but does not declare "
                "creates_rows = True"
            )
        st.counters, st.report = counters, report
        st.seconds = time.perf_counter() - t0
        st.phi_status = _phi_counts(kept)
        out = self._save_checkpoint(tag, kept, st, drops, quar)
        shutil.rmtree(scratch, ignore_errors=True)
        self.stats.append(st)
        return out, fp

    def _global(self, engine: Engine, step: GlobalStep, ds: Dataset, ctx: StepContext):
        result = engine.apply_global(step, ds, ctx)
        extra = set(result.kept.column_names) - set(ds.column_names)
        if extra:
            raise RuntimeError(f"global step {step.name!r} added undeclared columns {sorted(extra)}")
        return result.kept, result.dropped, result.report

    @staticmethod
    def _split_outcomes(mapped: Dataset):
        statuses = mapped[STATUS_COLUMN]
        counters: Counter[str] = Counter()
        for s in mapped[STATS_COLUMN]:
            if s:
                counters.update(json.loads(s))
        consumed = int(counters.pop(CONSUMED_STAT, 0))
        idx = {"keep": [], "drop": [], "quarantine": []}
        for n, s in enumerate(statuses):
            idx[s].append(n)
        internal = [STATUS_COLUMN, STATS_COLUMN]
        kept = mapped.select(idx["keep"]).remove_columns([*internal, REASON_COLUMN])
        dropped = mapped.select(idx["drop"]).remove_columns(internal)
        quarantined = mapped.select(idx["quarantine"]).remove_columns(internal)
        return kept, dropped, quarantined, dict(counters), consumed

    @staticmethod
    def _write_drops(step_name: str, dropped: Dataset | None, path: Path) -> dict[str, int]:
        reasons: Counter[str] = Counter()
        if dropped is None or len(dropped) == 0:
            return {}
        sink = _JsonlSink(path)
        for row in dropped:
            reason = row.pop(REASON_COLUMN)
            reasons[reason] += 1
            sink.write({"step": step_name, "reason": reason, **_withhold_if_raw(row)})
        sink.close()
        return dict(reasons)

    @staticmethod
    def _write_quarantine(step_name: str, quarantined: Dataset | None, path: Path) -> int:
        if quarantined is None or len(quarantined) == 0:
            return 0
        sink = _JsonlSink(path)
        for row in quarantined:
            info = json.loads(row[REASON_COLUMN])
            sink.write({"step": step_name, "id": row.get("id"), "error": info["error"], "where": info["where"]})
        sink.close()
        return sink.count

    # -- output ------------------------------------------------------------------------------
    def _finish(self, ds: Dataset) -> BuildResult:
        from meddata.output import write_outputs

        dataset_dir = write_outputs(ds, self.recipe, self.out_dir)
        logs = self._collect_logs()
        totals = self._check_conservation(ds, logs)
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
            "phi_status": _phi_counts(ds),
        }, indent=2, default=str))
        result = BuildResult(self.out_dir, dataset_dir, stats_path, self.stats, totals)
        if self.recipe.output.card:
            from meddata.card import write_card

            write_card(result, self.recipe)
        return result

    def _collect_logs(self) -> dict[str, int]:
        """Copy every step's drop log and quarantine into the build folder; count lines."""
        drop_dir = self.out_dir / "dropped"
        shutil.rmtree(drop_dir, ignore_errors=True)
        quarantine = self.out_dir / "quarantine.jsonl"
        dropped_lines = quarantined_lines = 0
        with quarantine.open("w", encoding="utf-8") as qfh:
            for st in self.stats:
                d = self.checkpoints[st.index]
                if (d / "dropped.jsonl").exists():
                    drop_dir.mkdir(exist_ok=True)
                    target = drop_dir / f"{st.index:02d}-{st.name}.jsonl"
                    shutil.copyfile(d / "dropped.jsonl", target)
                    dropped_lines += sum(1 for _ in target.open(encoding="utf-8"))
                if (d / "quarantine.jsonl").exists():
                    for line in (d / "quarantine.jsonl").open(encoding="utf-8"):
                        qfh.write(line)
                        quarantined_lines += 1
        return {"dropped_lines": dropped_lines, "quarantine_lines": quarantined_lines}

    def _check_conservation(self, final: Dataset, logs: dict[str, int]) -> dict[str, int]:
        n_inputs = len(self.recipe.inputs)
        readers, steps = self.stats[:n_inputs], self.stats[n_inputs:]
        totals = {
            "read": sum(s.rows_in for s in readers),
            "out": len(final),
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
        if problems:
            raise ConservationError("counts do not add up:\n  " + "\n  ".join(problems))
        return totals


def run(recipe: Recipe, out_dir: str | Path | None = None, **kwargs: Any) -> BuildResult:
    """Run a recipe (see :class:`Runner` for options) and return where everything went."""
    return Runner(recipe, out_dir, **kwargs).run()
