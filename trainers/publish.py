"""Push a run's final model or adapter to the Hugging Face Hub, with a short model card.

Only on request (``hub:`` in the config). The card names the base model, the stages and
their datasets and losses; it never includes training rows.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from meddata.trainers.stages import RunResult
    from meddata.trainers.validate import Plan

log = logging.getLogger("meddata.trainers")


def model_card(plan: Plan, run: RunResult, what: str) -> str:
    cfg = plan.config
    lines = [
        "---",
        "library_name: " + ("peft" if what == "adapter" else "transformers"),
        f"base_model: {cfg.model.name_or_path}",
        "tags: [meddata, trl, medical]",
        "---",
        f"# {cfg.name}",
        "",
        cfg.description or "Fine-tuned with `meddata train` (TRL).",
        "",
        "| stage | type | dataset | peft | steps | first loss | last loss |",
        "|---|---|---|---|---|---|---|",
    ]
    for spec, res in zip(cfg.stages, run.stages, strict=True):
        m = res.metrics
        lines.append(f"| {spec.name} | {spec.type} | `{spec.dataset.path}` | {spec.peft.method} | "
                     f"{m.get('global_step', '')} | {_num(m.get('first_loss'))} | {_num(m.get('last_loss'))} |")
    lines += ["", "Medical models need clinical validation before any use with patients."]
    return "\n".join(lines) + "\n"


def _num(v) -> str:
    return "" if v is None else f"{v:.4f}"


def push(plan: Plan, run: RunResult) -> str:
    """Upload the final model (or adapter) folder; returns the repo URL."""
    from huggingface_hub import HfApi

    hub = plan.config.hub
    assert hub is not None
    last = run.stages[-1]
    what = hub.what
    if what == "auto":
        what = "adapter" if last.adapter_dir and not last.model_dir else "model"
    folder = last.adapter_dir if what == "adapter" else last.model_dir
    if not folder:
        raise ValueError(f"hub.what is {what!r} but the last stage produced no {what} folder "
                         "(set peft.merge: true to push merged weights of a LoRA stage)")
    Path(folder, "README.md").write_text(model_card(plan, run, what), encoding="utf-8")
    api = HfApi()
    repo = api.create_repo(hub.repo_id, private=hub.private, exist_ok=True)
    api.upload_folder(folder_path=folder, repo_id=hub.repo_id, commit_message=hub.commit_message,
                      ignore_patterns=["checkpoints/*", "*.pt", "optimizer*", "rng_state*"])
    log.info("pushed %s to %s", what, repo)
    return str(repo)
