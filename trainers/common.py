"""What every stage shares: its inputs, the TRL arguments meddata sets, model preparation
and saving (full weights, or an adapter plus optionally merged weights)."""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, field
from typing import Any

from meddata.trainers import chat_templates, models
from meddata.trainers import speed as speed_settings
from meddata.trainers.config import ModelSpec
from meddata.trainers.speed import StageSpeed
from meddata.trainers.validate import Plan, StagePlan

log = logging.getLogger("meddata.trainers")


@dataclass
class StageInput:
    """A stage's starting point: the model folder (or Hub id) and whether a chat template
    still has to be fitted (only the first stage; later stages inherit the fitted one)."""

    model_path: str
    fit_template: bool
    merge_after: bool  # a later stage needs full weights from this one


@dataclass
class StageResult:
    name: str
    type: str
    model_dir: str | None  # full weights (trained, or merged from the adapter)
    adapter_dir: str | None
    metrics: dict[str, Any] = field(default_factory=dict)
    skipped: bool = False

    @property
    def output(self) -> str:
        """What the next stage / evaluation loads."""
        return self.model_dir or self.adapter_dir or ""

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "type": self.type, "model_dir": self.model_dir, "adapter_dir": self.adapter_dir,
                "metrics": self.metrics, "skipped": self.skipped}


def stage_speed(plan: Plan, stage: StagePlan) -> StageSpeed:
    """The stage's resolved ``speed`` settings (see :mod:`meddata.trainers.speed`), resolved once
    per plan by ``speed.resolve_plan``."""
    if stage.index not in plan.speeds:
        speed_settings.resolve_plan(plan)
    return plan.speeds[stage.index]


def common_args(plan: Plan, stage: StagePlan) -> dict[str, Any]:
    """TrainingArguments fields set from the stage (the same for SFT and DPO)."""
    spec = stage.spec
    precision = plan.precision
    has_eval = stage.eval is not None
    args: dict[str, Any] = {
        "output_dir": str(stage.out_dir / "checkpoints"),
        "num_train_epochs": spec.epochs,
        "max_steps": spec.max_steps,
        "learning_rate": spec.lr,
        "per_device_train_batch_size": spec.per_device_batch_size,
        "per_device_eval_batch_size": spec.per_device_batch_size,
        "gradient_accumulation_steps": spec.gradient_accumulation_steps,
        "lr_scheduler_type": spec.lr_scheduler,
        "warmup_steps": spec.warmup if spec.warmup < 1 else int(spec.warmup),
        "weight_decay": spec.weight_decay,
        "optim": spec.optim,
        "max_length": spec.max_length,
        "logging_steps": spec.logging_steps,
        "save_strategy": "steps",
        "save_steps": spec.save_steps,
        "save_total_limit": spec.save_total_limit,
        "eval_strategy": "steps" if has_eval else "no",
        "eval_steps": (spec.eval_steps or spec.save_steps) if has_eval else None,
        "bf16": precision == "bf16",
        "fp16": precision == "fp16",
        "seed": plan.config.seed,
        "report_to": list(plan.config.report_to) or "none",
        "disable_tqdm": True,
    }
    args.update(checkpointing_args(spec.gradient_checkpointing))
    args.update(speed_settings.training_args(stage_speed(plan, stage)))
    if not plan.hardware.cuda:
        args["use_cpu"] = True
    args.update(spec.trl_args)
    return args


def checkpointing_args(enabled: bool) -> dict[str, Any]:
    """Activation (gradient) checkpointing under the name this transformers version uses
    (``activation_checkpointing`` since 5.x; ``gradient_checkpointing`` before)."""
    import dataclasses

    from transformers import TrainingArguments

    names = {f.name for f in dataclasses.fields(TrainingArguments)}
    key = "activation_checkpointing" if "activation_checkpointing" in names else "gradient_checkpointing"
    args: dict[str, Any] = {key: enabled}
    if enabled:
        args[f"{key}_kwargs"] = {"use_reentrant": False}
    return args


def prepare(plan: Plan, stage: StagePlan, start: StageInput):
    """(model, tokenizer, peft_config) for a stage, template fitted, QLoRA prepared; weights
    dtype and attention as the stage's ``speed`` settings resolved."""
    spec: ModelSpec = speed_settings.model_spec(plan.config.model, stage_speed(plan, stage))
    template = plan.template if start.fit_template else None
    tok_path = spec.tokenizer if (start.fit_template and spec.tokenizer) else start.model_path
    tokenizer, added = models.load_tokenizer(tok_path, spec, template)
    peft_method = stage.spec.peft.method
    model = models.load_causal_lm(start.model_path, spec, plan.hardware, quantize_4bit=peft_method == "qlora",
                                  precision=plan.precision)
    added_ids = chat_templates.fit_model(model, tokenizer, added)
    if added:
        log.info("%s: added %d chat-template token(s) to the vocabulary", stage.where, len(added))
    peft_config = None
    if peft_method != "none":
        if peft_method == "qlora":
            model = models.prepare_for_kbit(model, stage.spec.gradient_checkpointing)
        peft_config = models.lora_config(stage.spec.peft, added_token_ids=added_ids)
    return model, tokenizer, peft_config, bool(added)


def accelerate(trainer: Any, plan: Plan, stage: StagePlan) -> Any:
    """Wire the stage's speed settings into a constructed trainer (optimizer, batch shapes,
    compiled layers, throughput callback); returns the callback whose summary goes into the
    stage's metrics."""
    from meddata.trainers import fastpath

    return fastpath.attach(trainer, stage_speed(plan, stage), device_name=plan.hardware.device_name,
                           cuda=plan.hardware.cuda, max_length=stage.spec.max_length,
                           batch_size=stage.spec.per_device_batch_size)


def latest_checkpoint(stage: StagePlan) -> str | None:
    ckpts = sorted((stage.out_dir / "checkpoints").glob("checkpoint-*"),
                   key=lambda p: int(p.name.rsplit("-", 1)[-1]) if p.name.rsplit("-", 1)[-1].isdigit() else -1)
    return str(ckpts[-1]) if ckpts else None


def loss_summary(log_history: list[dict[str, Any]]) -> dict[str, Any]:
    """First/last training loss, final eval loss and the curve, from the Trainer's log."""
    losses = [(h["step"], h["loss"]) for h in log_history if "loss" in h and "step" in h]
    evals = [(h["step"], h["eval_loss"]) for h in log_history if "eval_loss" in h]
    out: dict[str, Any] = {"loss_curve": [[s, round(v, 5)] for s, v in losses]}
    if losses:
        out["first_loss"], out["last_loss"] = losses[0][1], losses[-1][1]
    if evals:
        out["eval_loss"] = evals[-1][1]
        if math.isfinite(evals[-1][1]):
            out["eval_perplexity"] = math.exp(min(evals[-1][1], 50))
    tokens = [h["num_tokens"] for h in log_history if "num_tokens" in h and "eval_loss" not in h]
    if tokens:
        out["num_tokens"] = tokens[-1]  # TRL's count of tokens trained on (padding excluded)
    for h in log_history:  # DPO: the last logged reward accuracy / margin
        for key in ("rewards/accuracies", "rewards/margins"):
            if key in h:
                out[key.replace("/", "_")] = h[key]
    for h in log_history:
        if "train_runtime" in h:
            out["train_loss"] = h.get("train_loss")
            out["train_runtime_s"] = h["train_runtime"]
            out["train_samples_per_second"] = h.get("train_samples_per_second")
    return out


def finish(plan: Plan, stage: StagePlan, start: StageInput, trainer: Any, tokenizer: Any,
           speed_callback: Any = None) -> StageResult:
    """Save the trained weights (or adapter), merge when needed, write the stage marker."""
    out = stage.out_dir
    is_peft = stage.spec.peft.method != "none"
    if getattr(trainer, "is_fsdp_enabled", False):
        trainer.accelerator.state.fsdp_plugin.set_state_dict_type("FULL_STATE_DICT")
    target = out / ("adapter" if is_peft else "model")
    trainer.save_model(str(target))
    main = trainer.accelerator.is_main_process
    metrics = loss_summary(trainer.state.log_history)
    metrics["global_step"] = trainer.state.global_step
    if speed_callback is not None:
        metrics.update(speed_callback.summary)
        if "train_tokens" in metrics:
            metrics["num_tokens"] = metrics["train_tokens"]  # real tokens; TRL's count includes static padding
    metrics["speed"] = stage_speed(plan, stage).to_json()
    result = StageResult(stage.spec.name, stage.spec.type, None if is_peft else str(target),
                         str(target) if is_peft else None, metrics)
    merge = is_peft and (start.merge_after or stage.spec.peft.merge)
    merged = out / "model"
    if main:
        tokenizer.save_pretrained(str(target))
        if merge and stage.spec.peft.method == "lora" and plan.hardware.world_size == 1:
            trainer.model.merge_and_unload().save_pretrained(str(merged))
            tokenizer.save_pretrained(str(merged))
        elif merge:  # QLoRA (merge into 16-bit weights) or sharded training: reload the base
            models.merge_adapter(target, start.model_path, plan.config.model, plan.hardware, plan.precision,
                                 merged, tokenizer)
        (out / "metrics.json").write_text(json.dumps(metrics, indent=2), encoding="utf-8")
    trainer.accelerator.wait_for_everyone()  # every rank starts the next stage from the same folder
    if merge:
        result.model_dir = str(merged)
    return result
