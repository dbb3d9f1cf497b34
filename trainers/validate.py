"""Check a whole training run before any model is loaded.

Everything that can be known without weights is checked here, for every stage, so a
three-stage run does not fail in stage 3 after hours of stage 1: hardware requirements
(QLoRA, precision), TRL argument names, each stage's dataset (opens, has the split, holds
one row type, the type fits the trainer, messages are well formed), the chat template, the
Hub token. The opened datasets are kept in the plan for the run to use.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from meddata.trainers import chat_templates, data, models
from meddata.trainers.config import LoadedConfig, StageSpec, TrainConfigError
from meddata.trainers.hardware import Hardware, detect, precision_problem, qlora_problem, resolve_precision

from meddata.models import is_model_reference

log = logging.getLogger("meddata.trainers")

#: Fields meddata sets itself from the stage; trl_args may not set them (one place per knob).
OWNED_ARGS = frozenset({
    "output_dir", "num_train_epochs", "max_steps", "learning_rate", "per_device_train_batch_size",
    "per_device_eval_batch_size", "gradient_accumulation_steps", "lr_scheduler_type", "warmup_steps",
    "weight_decay", "optim", "gradient_checkpointing", "activation_checkpointing", "max_length", "packing", "assistant_only_loss",
    "completion_only_loss", "dataset_text_field", "beta", "loss_type", "logging_steps", "eval_steps",
    "save_steps", "save_total_limit", "eval_strategy", "save_strategy", "bf16", "fp16", "seed",
    "report_to", "push_to_hub", "hub_model_id",
})


@dataclass
class StagePlan:
    index: int
    spec: StageSpec
    kind: str  # TRL row type of the training split
    train: Any  # datasets.Dataset, reduced to TRL columns
    eval: Any | None
    out_dir: Path
    where: str


@dataclass
class Plan:
    loaded: LoadedConfig
    hardware: Hardware
    precision: str  # resolved: bf16 / fp16 / fp32
    template: chat_templates.ChatTemplate | None
    stages: list[StagePlan]
    #: Stage index -> its resolved ``speed`` settings, filled once by ``speed.resolve_plan``.
    speeds: dict[int, Any] = field(default_factory=dict)

    @property
    def config(self):
        return self.loaded.config


def _trl_fields(stage_type: str) -> set[str]:
    from trl import DPOConfig, SFTConfig

    cls = DPOConfig if stage_type == "dpo" else SFTConfig
    return {f.name for f in dataclasses.fields(cls)}


def _check_trl_args(stage: StageSpec, where: str) -> None:
    if not stage.trl_args:
        return
    known = _trl_fields(stage.type)
    unknown = sorted(set(stage.trl_args) - known)
    if unknown:
        cls = "DPOConfig" if stage.type == "dpo" else "SFTConfig"
        raise TrainConfigError(f"{where}: trl_args {unknown} are not {cls} fields")
    owned = sorted(set(stage.trl_args) & OWNED_ARGS)
    if owned:
        raise TrainConfigError(f"{where}: trl_args {owned} are set from the stage's own fields; "
                               "use those instead (e.g. learning_rate, max_length, packing)")


def _check_model_path(loaded: LoadedConfig) -> str:
    spec = loaded.config.model
    if is_model_reference(spec.name_or_path):  # a local model's short name or a .gguf file
        return models.resolve_model_path(spec.name_or_path, loaded.base_dir)
    local = loaded.resolve(spec.name_or_path)
    if local.exists():
        if not (local / "config.json").is_file():
            raise TrainConfigError(f"{loaded.source}: field 'model.name_or_path': {local} has no config.json; "
                                   "it is not a model folder")
        return str(local)
    if spec.name_or_path.startswith((".", "/", "~")) or spec.name_or_path.count("/") > 1:
        raise TrainConfigError(f"{loaded.source}: field 'model.name_or_path': {local} does not exist")
    return spec.name_or_path  # a Hub id; downloaded when the first stage loads it


def _check_template(loaded: LoadedConfig, model_path: str, needs_chat: list[tuple[str, bool]]):
    """Resolve the chat template and check that conversational stages can use it."""
    spec = loaded.config.model
    template = None
    if spec.chat_template:
        try:
            template = chat_templates.resolve(spec.chat_template, loaded.base_dir)
        except (ValueError, FileNotFoundError) as exc:
            raise TrainConfigError(f"{loaded.source}: field 'model.chat_template': {exc}") from None
    if not needs_chat:
        return template
    source = template.source if template else _tokenizer_template(spec.tokenizer or model_path, spec)
    for where, assistant_only in needs_chat:
        if not source:
            raise TrainConfigError(f"{where}: the dataset is conversational but the tokenizer has no chat template; "
                                   f"set model.chat_template to one of {', '.join(chat_templates.NAMES)} "
                                   "or to a .jinja file")
        if assistant_only and not chat_templates.has_generation_markers(source) and not _trl_can_patch(
                spec.tokenizer or model_path, spec):
            raise TrainConfigError(
                f"{where}: loss on assistant turns needs a chat template with {{% generation %}} markers, and "
                "TRL has no training version of this model's template; set model.chat_template to one of "
                f"{', '.join(chat_templates.NAMES)} (or a .jinja with markers), or set loss: all")
    return template


def _tokenizer_template(path: str, spec) -> str | None:
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(path, revision=spec.revision, trust_remote_code=spec.trust_remote_code)
    except (OSError, ValueError) as exc:
        raise TrainConfigError(f"cannot load the tokenizer of {path}: {str(exc).splitlines()[0]}") from None
    tpl = tok.chat_template
    return tpl.get("default") if isinstance(tpl, dict) else tpl


def _trl_can_patch(path: str, spec) -> bool:
    from transformers import AutoTokenizer
    from trl.chat_template_utils import get_training_chat_template

    tok = AutoTokenizer.from_pretrained(path, revision=spec.revision, trust_remote_code=spec.trust_remote_code)
    try:
        get_training_chat_template(tok)
    except ValueError:
        return False
    return True


def _check_hub(loaded: LoadedConfig) -> None:
    if loaded.config.hub is None:
        return
    from huggingface_hub import get_token

    if not get_token():
        raise TrainConfigError(f"{loaded.source}: field 'hub': pushing to {loaded.config.hub.repo_id} needs a Hub "
                               "token; set HF_TOKEN or run `hf auth login` (checked now so training is not wasted)")


def _plan_stage(loaded: LoadedConfig, index: int) -> StagePlan:
    stage = loaded.config.stages[index]
    where = loaded.where(index)
    ds_where = f"{where}: dataset {stage.dataset.path}"
    try:
        dsd = data.open_dataset(stage.dataset.path, loaded.base_dir, stage.dataset.config_name)
        train, evalset = data.stage_splits(dsd, stage.dataset.split, stage.dataset.eval_split,
                                           stage.dataset.eval_fraction, loaded.config.seed, ds_where,
                                           max_rows=stage.dataset.max_rows)
        kind = data.dataset_kind(train, f"{ds_where} split {stage.dataset.split!r}")
    except data.DatasetError as exc:
        raise TrainConfigError(str(exc)) from None
    if kind not in data.ACCEPTS[stage.type]:
        hint = {
            "exam": "; format exam items into messages first (an exam task-maker step in the recipe)",
            "conversational": "; a dpo stage needs a preference set (e.g. physician vs model answers)"
            if stage.type == "dpo" else "; continued pretraining reads text rows",
            "preference": "; use a dpo stage for preference rows",
        }.get(kind, "")
        wanted = " or ".join(data.TYPE_WORDS[k] for k in data.ACCEPTS[stage.type])
        raise TrainConfigError(f"{ds_where}: a {stage.type} stage needs {wanted}, but split "
                               f"{stage.dataset.split!r} has {data.TYPE_WORDS[kind]}{hint}")
    try:
        msg_cols = tuple(c for c in data.TYPE_COLUMNS[kind] if c in ("messages", "prompt", "completion", "chosen",
                                                                       "rejected"))
        if msg_cols:
            data.check_messages(train, msg_cols, f"{ds_where} split {stage.dataset.split!r}")
        if evalset is not None:
            eval_kind = data.dataset_kind(evalset, f"{ds_where} eval split")
            if eval_kind != kind:
                raise data.DatasetError(f"{ds_where}: the eval split has {data.TYPE_WORDS[eval_kind]} but the train "
                                        f"split has {data.TYPE_WORDS[kind]}")
            if msg_cols:
                data.check_messages(evalset, msg_cols, f"{ds_where} eval split")
    except data.DatasetError as exc:
        raise TrainConfigError(str(exc)) from None
    return StagePlan(index=index, spec=stage, kind=kind, train=data.for_trl(train, kind),
                     eval=None if evalset is None else data.for_trl(evalset, kind),
                     out_dir=loaded.stage_dir(stage), where=where)


def _is_conversational(ds, kind: str) -> bool:
    col = data.TYPE_COLUMNS[kind][0]
    return kind != "language_modeling" and not str(ds.features[col]).startswith("Value")


def validate(loaded: LoadedConfig, hardware: Hardware | None = None) -> Plan:
    """The run plan, or TrainConfigError naming the config file, stage and field."""
    hw = hardware or detect()
    cfg = loaded.config
    problem = precision_problem(cfg.precision, hw)
    if problem:
        raise TrainConfigError(f"{loaded.source}: field 'precision': {problem}")
    for i, stage in enumerate(cfg.stages):
        if stage.peft.method == "qlora":
            problem = qlora_problem(hw)
            if problem:
                raise TrainConfigError(f"{loaded.where(i)}: field 'peft.method': {problem}")
        _check_trl_args(stage, loaded.where(i))
    model_path = _check_model_path(loaded)
    _check_hub(loaded)
    stages = [_plan_stage(loaded, i) for i in range(len(cfg.stages))]
    needs_chat = [(s.where, s.spec.type == "sft" and s.spec.loss == "assistant_only" and s.kind == "conversational")
                  for s in stages if _is_conversational(s.train, s.kind)]
    template = _check_template(loaded, model_path, needs_chat)
    if cfg.distributed.strategy != "none" and hw.world_size == 1:
        log.warning("distributed.strategy is %s but this is a single process; launch with "
                    "`meddata train %s --accelerate-config accelerate.yaml` and then `accelerate launch ...`",
                    cfg.distributed.strategy, loaded.source)
    return Plan(loaded=loaded, hardware=hw, precision=resolve_precision(cfg.precision, hw), template=template,
                stages=stages)
