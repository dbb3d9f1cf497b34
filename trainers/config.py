"""Training configs: YAML -> validated pydantic models.

One file describes a whole run: the starting model, then one or more stages (continued
pretraining, SFT, DPO) each starting from the previous stage's output. Loading only checks
shape and values; :mod:`meddata.trainers.validate` then checks the things that need the
datasets and the hardware, all before any model is loaded.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from meddata.errors import UserError
from meddata.params import format_validation
from meddata.yamlfile import read_yaml

StageType = Literal["sft", "pretrain", "dpo"]


class TrainConfigError(UserError, ValueError):
    """The config is invalid; the message names the file, the stage and the field."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, protected_namespaces=())


class ModelSpec(_Strict):
    """The starting checkpoint (a local folder or a Hub id) and how to load it."""

    name_or_path: str
    tokenizer: str | None = None
    #: None: the tokenizer's own template; a name (chatml, llama-3) or a .jinja file.
    chat_template: str | None = None
    revision: str | None = None
    #: Weights dtype when loading; "auto" leaves it to ``speed.weights`` (bf16 on bf16 GPUs, fp32 on CPU).
    dtype: Literal["auto", "bfloat16", "float16", "float32"] = "auto"
    attn_implementation: str | None = None
    trust_remote_code: bool = False


class DatasetSpec(_Strict):
    """A meddata build folder, a saved DatasetDict, a .jsonl/.json/.parquet file or a Hub id."""

    path: str
    split: str = "train"
    #: "auto": the "validation" split when present; None: no evaluation.
    eval_split: str | None = "auto"
    #: Hold out this fraction of the train split for evaluation when there is no eval split.
    eval_fraction: float | None = Field(default=None, gt=0, lt=1)
    max_rows: int | None = Field(default=None, ge=1)
    #: Hub dataset config name (load_dataset's second argument).
    config_name: str | None = None


class PeftSpec(_Strict):
    method: Literal["none", "lora", "qlora"] = "none"
    r: int = Field(default=16, ge=1)
    alpha: int = Field(default=32, ge=1)
    dropout: float = Field(default=0.05, ge=0, lt=1)
    target_modules: str | list[str] = "all-linear"
    modules_to_save: list[str] | None = None
    #: Merge the adapter into the weights after the stage (always done when a stage follows).
    merge: bool = False


class StageSpec(_Strict):
    """One training stage. Hyperparameters map 1:1 to TRL's SFTConfig / DPOConfig."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    type: StageType
    dataset: DatasetSpec
    peft: PeftSpec = Field(default_factory=PeftSpec)
    # optimisation
    epochs: float = Field(default=1.0, gt=0)
    max_steps: int = Field(default=-1, ge=-1)
    learning_rate: float | None = Field(default=None, gt=0)
    per_device_batch_size: int = Field(default=4, ge=1)
    gradient_accumulation_steps: int = Field(default=1, ge=1)
    lr_scheduler: str = "cosine"
    #: Warmup: a whole number of steps, or a fraction (< 1) of all steps.
    warmup: float = Field(default=0.0, ge=0)
    weight_decay: float = Field(default=0.0, ge=0)
    optim: str = "adamw_torch"
    gradient_checkpointing: bool = True
    # data shaping
    max_length: int = Field(default=1024, ge=8)
    #: None: on for pretrain, off otherwise.
    packing: bool | None = None
    #: "assistant_only": loss on assistant turns (messages) / the completion (prompt+completion).
    loss: Literal["assistant_only", "all"] = "assistant_only"
    # DPO
    beta: float = Field(default=0.1, gt=0)
    dpo_loss: str = "sigmoid"
    # bookkeeping
    logging_steps: int = Field(default=10, ge=1)
    eval_steps: int | None = Field(default=None, ge=1)
    save_steps: int = Field(default=500, ge=1)
    save_total_limit: int | None = Field(default=2, ge=1)
    #: Extra SFTConfig/DPOConfig fields, passed through as is (names are checked).
    trl_args: dict[str, Any] = Field(default_factory=dict)

    @property
    def use_packing(self) -> bool:
        return self.type == "pretrain" if self.packing is None else self.packing

    @property
    def lr(self) -> float:
        if self.learning_rate is not None:
            return self.learning_rate
        return {"pretrain": 2e-5, "sft": 2e-5, "dpo": 1e-6}[self.type] * (10 if self.peft.method != "none" else 1)

    @model_validator(mode="after")
    def _check(self) -> StageSpec:
        if self.type == "dpo" and self.packing:
            raise ValueError("packing is not available for dpo stages")
        if self.type == "pretrain" and self.loss == "assistant_only" and "loss" in self.model_fields_set:
            raise ValueError("loss: assistant_only does not apply to pretrain stages (text rows have no turns)")
        return self


class HubSpec(_Strict):
    """Push the final model (or adapter) to the Hub. The token comes from HF_TOKEN / the login."""

    repo_id: str = Field(pattern=r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")
    private: bool = True
    #: "auto": the adapter for LoRA runs, the full model otherwise.
    what: Literal["auto", "model", "adapter"] = "auto"
    commit_message: str = "meddata train"


class FsdpSpec(_Strict):
    version: Literal[1, 2] = 2
    sharding: Literal["full_shard", "shard_grad_op", "hybrid_shard", "no_shard"] = "full_shard"
    cpu_offload: bool = False
    activation_checkpointing: bool = False
    state_dict_type: Literal["full", "sharded"] = "full"


class DeepSpeedSpec(_Strict):
    zero_stage: Literal[1, 2, 3] = 2
    offload_optimizer: bool = False
    offload_params: bool = False


class DistributedSpec(_Strict):
    """How ``accelerate launch`` runs the config on several GPUs (see ``--accelerate-config``)."""

    strategy: Literal["none", "ddp", "fsdp", "deepspeed"] = "none"
    num_processes: int = Field(default=1, ge=1)
    num_machines: int = Field(default=1, ge=1)
    fsdp: FsdpSpec = Field(default_factory=FsdpSpec)
    deepspeed: DeepSpeedSpec = Field(default_factory=DeepSpeedSpec)


Switch = Literal["auto", "on", "off"]


class SpeedSpec(_Strict):
    """How close to the hardware's limit a run goes. Every field defaults to ``auto``: fast
    settings on a CUDA GPU, plain fp32 eager settings on CPU. ``meddata train --check``
    prints what each field resolved to and why (see :mod:`meddata.trainers.speed`)."""

    #: dtype of the trained weights in full fine-tuning. ``bf16`` keeps an fp32 master copy and
    #: fp32 Adam state in the optimizer, so small updates are not rounded away.
    weights: Literal["auto", "bf16", "fp32"] = "auto"
    attention: Literal["auto", "flash_attention_3", "flash_attention_2", "flex_attention", "sdpa", "eager"] = "auto"
    #: Fused AdamW kernel (one launch for all parameters) instead of the per-tensor loop.
    fused_adamw: Switch = "auto"
    #: Liger kernels (RMSNorm, RoPE, SwiGLU) from the ``liger-kernel`` package (``meddata[gpu]``).
    liger: Switch = "auto"
    #: ``torch.compile`` of the decoder layers, with batches padded to one static shape.
    compile: Switch = "auto"
    #: DataLoader worker processes (collation off the training loop); ``auto``: up to 4 per GPU, 0 on CPU.
    dataloader_workers: int | Literal["auto"] = "auto"

    @field_validator("dataloader_workers")
    @classmethod
    def _workers(cls, value: int | str) -> int | str:
        if isinstance(value, int) and value < 0:
            raise ValueError("dataloader_workers must be 0 or more, or auto")
        return value


class TrainConfig(_Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    description: str = ""
    #: Where stage outputs go (relative to the config file); default out/train/<name>.
    output_dir: str | None = None
    model: ModelSpec
    stages: list[StageSpec] = Field(min_length=1)
    precision: Literal["auto", "bf16", "fp16", "fp32"] = "auto"
    seed: int = 42
    #: Skip finished stages and continue from the last checkpoint of an interrupted one.
    resume: bool = True
    hub: HubSpec | None = None
    distributed: DistributedSpec = Field(default_factory=DistributedSpec)
    speed: SpeedSpec = Field(default_factory=SpeedSpec)
    report_to: list[str] = Field(default_factory=list)

    @field_validator("stages")
    @classmethod
    def _unique_names(cls, stages: list[StageSpec]) -> list[StageSpec]:
        seen: set[str] = set()
        for s in stages:
            if s.name in seen:
                raise ValueError(f"stage name {s.name!r} is used twice; stage names name output folders")
            seen.add(s.name)
        return stages


class LoadedConfig:
    """A validated config with the folder its relative paths resolve against."""

    def __init__(self, config: TrainConfig, source: str, base_dir: Path):
        self.config = config
        self.source = source
        self.base_dir = base_dir

    def resolve(self, path: str) -> Path:
        p = Path(path).expanduser()
        return p if p.is_absolute() else (self.base_dir / p)

    @property
    def output_dir(self) -> Path:
        if self.config.output_dir:
            return self.resolve(self.config.output_dir)
        return Path("out") / "train" / self.config.name

    def stage_dir(self, stage: StageSpec) -> Path:
        return self.output_dir / stage.name

    def where(self, index: int) -> str:
        stage = self.config.stages[index]
        return f"{self.source}: stage {index} '{stage.name}' ({stage.type})"


def _fmt_loc(loc: tuple, data: dict[str, Any]) -> str:
    """``('stages', 1, 'peft', 'method')`` -> ``stages[1] 'dpo'.peft.method``."""
    out = ""
    for i, part in enumerate(loc):
        if isinstance(part, int):
            out += f"[{part}]"
            if i > 0 and loc[i - 1] == "stages":
                try:
                    out += f" '{data['stages'][part]['name']}'"
                except (KeyError, IndexError, TypeError):
                    pass
        else:
            out += ("." if out else "") + str(part)
    return out or "(top level)"


def from_dict(data: Any, *, source: str = "<config>", base_dir: Path | None = None) -> LoadedConfig:
    if not isinstance(data, dict):
        raise TrainConfigError(f"{source}: a train config must be a mapping, got {type(data).__name__}")
    try:
        config = TrainConfig.model_validate(data)
    except ValidationError as exc:
        lines = format_validation(exc, source, "field", lambda loc: _fmt_loc(loc, data))
        raise TrainConfigError(lines) from None
    return LoadedConfig(config, source, base_dir or Path.cwd())


def load(path: str | Path) -> LoadedConfig:
    path = Path(path)
    data = read_yaml(path, TrainConfigError, "config")
    return from_dict(data, source=str(path), base_dir=path.parent.resolve())
