"""Run a validated plan: stages in order, each starting from the previous stage's output.

A LoRA stage followed by another stage is merged into full weights first, so the next
stage (or evaluation) loads an ordinary checkpoint. Each finished stage writes a marker
with a hash of everything that shaped it; with ``resume: true`` a rerun skips finished
stages and continues an interrupted one from its last checkpoint. ``run.json`` in the
output folder records every stage's outputs and loss curve.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from meddata.trainers import common, models, publish, speed
from meddata.trainers.config import TrainConfigError
from meddata.trainers.validate import Plan, StagePlan

from meddata.registry import Registry

log = logging.getLogger("meddata.trainers")

#: Stage runners by stage type: ``run(plan, stage, start, resume_from) -> StageResult``.
#: Third-party ones through the ``meddata.trainer_stages`` entry-point group.
RUNNERS: Registry[Any] = Registry("trainer stage", "meddata.trainer_stages")
for _type in ("sft", "pretrain", "dpo"):
    RUNNERS.register_lazy(_type, f"meddata.trainers.{_type}:run")
MARKER = "stage.json"
CKPT_HASH = "meddata_stage_hash"


@dataclass
class RunResult:
    output_dir: Path
    base_model: str
    stages: list[common.StageResult]
    hub_url: str | None = None

    @property
    def final_model(self) -> str:
        return self.stages[-1].output

    def to_json(self) -> dict[str, Any]:
        last = self.stages[-1]
        return {"base_model": self.base_model, "final_model": last.output, "final_model_dir": last.model_dir,
                "final_adapter_dir": last.adapter_dir, "hub_url": self.hub_url,
                "stages": [s.to_json() for s in self.stages]}


def stage_hash(plan: Plan, stage: StagePlan, start_path: str, previous: str) -> str:
    """Everything that shapes a stage's result: its spec, its input, the model spec."""
    payload = {
        "stage": stage.spec.model_dump(mode="json"),
        "start": start_path,
        "previous": previous,
        "model": plan.config.model.model_dump(mode="json"),
        "precision": plan.precision,
        "speed": plan.config.speed.model_dump(mode="json"),
        "seed": plan.config.seed,
        "rows": len(stage.train),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def _read_marker(stage: StagePlan) -> dict[str, Any] | None:
    path = stage.out_dir / MARKER
    if not path.is_file():
        return None
    return json.loads(path.read_text(encoding="utf-8"))


def _resume_point(plan: Plan, stage: StagePlan, digest: str) -> str | None:
    ckpt = common.latest_checkpoint(stage)
    if not (plan.config.resume and ckpt):
        return None
    hash_file = stage.out_dir / "checkpoints" / CKPT_HASH
    if not hash_file.is_file() or hash_file.read_text().strip() != digest:
        raise TrainConfigError(f"{stage.where}: {stage.out_dir / 'checkpoints'} holds checkpoints of a different "
                               "config or input; delete that folder or set resume: false")
    return ckpt


def run(plan: Plan) -> RunResult:
    """Train every stage of ``plan`` (already validated) and write ``run.json``."""
    import accelerate

    speed.resolve_plan(plan)  # a setting this machine cannot run fails before any model loads
    out_dir = plan.loaded.output_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    is_main = accelerate.PartialState().is_main_process
    base = models.resolve_model_path(plan.config.model.name_or_path, plan.loaded.base_dir)
    start_path, previous = base, "base"
    results: list[common.StageResult] = []
    for i, stage in enumerate(plan.stages):
        start = common.StageInput(model_path=start_path, fit_template=i == 0,
                                  merge_after=i < len(plan.stages) - 1)
        digest = stage_hash(plan, stage, start_path, previous)
        marker = _read_marker(stage)
        if plan.config.resume and marker and marker.get("hash") == digest:
            result = common.StageResult(**{**marker["result"], "skipped": True})
            log.info("%s: finished earlier with the same config; reusing %s", stage.where, result.output)
        else:
            resume_from = _resume_point(plan, stage, digest)
            stage.out_dir.mkdir(parents=True, exist_ok=True)
            (stage.out_dir / "checkpoints").mkdir(exist_ok=True)
            if is_main:
                (stage.out_dir / "checkpoints" / CKPT_HASH).write_text(digest)
            t0 = time.time()
            result = RUNNERS[stage.spec.type](plan, stage, start, resume_from)
            result.metrics["wall_s"] = round(time.time() - t0, 2)
            if is_main:
                (stage.out_dir / MARKER).write_text(json.dumps({"hash": digest, "result": result.to_json()},
                                                               indent=2), encoding="utf-8")
        results.append(result)
        start_path, previous = result.output, digest
    run_result = RunResult(out_dir, base, results)
    if is_main and plan.config.hub is not None:
        run_result.hub_url = publish.push(plan, run_result)
    if is_main:
        (out_dir / "run.json").write_text(json.dumps(run_result.to_json(), indent=2), encoding="utf-8")
    return run_result


def load_run(path: str | Path) -> dict[str, Any]:
    """``run.json`` of a finished run (path: the run folder or the file)."""
    path = Path(path)
    file = path / "run.json" if path.is_dir() else path
    if not file.is_file():
        raise FileNotFoundError(f"{file}: no run.json; is this a `meddata train` output folder?")
    return json.loads(file.read_text(encoding="utf-8"))
