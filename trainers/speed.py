"""Fast defaults: each field of the config's ``speed:`` section resolved for one stage on
this machine, with the reason, before any model is loaded.

On a CUDA GPU ``auto`` means: bf16 weights with fp32 master weights in the optimizer,
padding-free packing with an attention that skips the masks between packed documents
(flash-attention when installed, else PyTorch's flex_attention), fused AdamW, the decoder
layers compiled once on one static batch shape, and DataLoader workers. On CPU the same
config runs in fp32 with SDPA, no compile and no workers. ``meddata train --check`` prints
the resolved settings (:func:`describe`); ``run.json`` records them per stage.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from typing import Any

from meddata.trainers.config import ModelSpec, StageSpec, TrainConfig, TrainConfigError
from meddata.trainers.hardware import Hardware

from meddata.extras import install_hint

#: meddata's optimizer for bf16 weights: AdamW on fp32 master copies (:mod:`meddata.trainers.optim`).
MASTER_ADAMW = "adamw_fp32_master"
DEFAULT_OPTIM = StageSpec.model_fields["optim"].default
NO_TRITON = "this machine lacks one of them: install gcc, or the triton package that matches torch"
FLASH_PACKAGES = {"flash_attention_3": "flash_attn_interface", "flash_attention_2": "flash_attn"}


@dataclass(frozen=True)
class Choice:
    value: Any
    why: str


@dataclass(frozen=True)
class StageSpeed:
    """What one stage runs with. ``static_shapes``: batches padded to one shape (what compiled
    code needs to avoid recompiling); ``padding_free``: packed rows flattened into one
    sequence with per-document positions (TRL's BFD packing)."""

    weights: Choice  # "bf16" | "fp32" | "fp16" | "4bit"
    attention: Choice  # an attn_implementation name
    optimizer: Choice  # MASTER_ADAMW or a TrainingArguments optim name
    liger: Choice  # bool
    compile: Choice  # bool
    padding_free: Choice  # bool
    dataloader_workers: Choice  # int

    fused: bool = False  # the AdamW step is one fused kernel

    @property
    def static_shapes(self) -> bool:
        return bool(self.compile.value)

    def items(self) -> list[tuple[str, Choice]]:
        return [("weights", self.weights), ("attention", self.attention), ("optimizer", self.optimizer),
                ("liger", self.liger), ("compile", self.compile), ("padding_free", self.padding_free),
                ("dataloader_workers", self.dataloader_workers)]

    def to_json(self) -> dict[str, Any]:
        return {name: c.value for name, c in self.items()}


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def _weights(cfg: TrainConfig, stage: StageSpec, precision: str, hw: Hardware) -> Choice:
    speed, model = cfg.speed, cfg.model
    if stage.peft.method == "qlora":
        return Choice("4bit", f"qlora: 4-bit NF4 base weights, compute in {precision}")
    if model.dtype != "auto":
        return Choice({"bfloat16": "bf16", "float16": "fp16", "float32": "fp32"}[model.dtype], "model.dtype is set")
    if speed.weights != "auto":
        if speed.weights == "bf16" and precision == "fp16":
            raise TrainConfigError("speed.weights bf16 cannot train with precision fp16; use precision bf16 or auto")
        return Choice(speed.weights, "speed.weights is set")
    if cfg.distributed.strategy in ("fsdp", "deepspeed"):
        return Choice("fp32", f"{cfg.distributed.strategy} keeps fp32 shards and computes in {precision} itself")
    if precision == "bf16":
        kept = "the base stays frozen in bf16" if stage.peft.method != "none" else \
            "the optimizer keeps fp32 master weights and Adam state"
        where = "GPU with bf16" if hw.cuda else "precision bf16"
        return Choice("bf16", f"{where}: half the activation memory and no autocast casts; {kept}")
    if not hw.cuda:
        return Choice("fp32", "CPU: fp32 weights and compute")
    return Choice("fp32", f"precision {precision}: fp32 weights, autocast computes in {precision}")


def _attention(cfg: TrainConfig, hw: Hardware, padding_free: bool) -> Choice:
    speed, model = cfg.speed, cfg.model
    if model.attn_implementation:
        return Choice(model.attn_implementation, "model.attn_implementation is set")
    wanted = speed.attention
    if wanted in FLASH_PACKAGES:
        if not hw.cuda:
            raise TrainConfigError(f"speed.attention {wanted} needs a CUDA GPU; this machine has none (use auto)")
        if not _installed(FLASH_PACKAGES[wanted]):
            raise TrainConfigError(f"speed.attention {wanted} needs the {FLASH_PACKAGES[wanted]} package, which is "
                                   "not installed (pip install flash-attn), or use auto")
    if wanted == "flex_attention" and not hw.cuda:
        raise TrainConfigError("speed.attention flex_attention needs a CUDA GPU to train (PyTorch's flex_attention "
                               "has no CPU backward); use auto or sdpa")
    if wanted == "flex_attention" and not hw.triton:
        raise TrainConfigError(f"speed.attention flex_attention needs Triton and a C compiler; {NO_TRITON}")
    if wanted != "auto":
        return Choice(wanted, "speed.attention is set")
    if not hw.cuda:
        return Choice("sdpa", "CPU: PyTorch scaled-dot-product attention")
    cap = hw.capability or (0, 0)
    if cap >= (9, 0) and _installed("flash_attn_interface"):
        return Choice("flash_attention_3", "flash-attention 3 is installed (Hopper): varlen kernels for packed rows")
    if cap >= (8, 0) and _installed("flash_attn"):
        return Choice("flash_attention_2", "flash-attention 2 is installed: varlen kernels for packed rows")
    if padding_free and not hw.triton:
        return Choice("sdpa", f"packed rows, but flex_attention needs Triton and a C compiler ({NO_TRITON})")
    if padding_free:
        return Choice("flex_attention", "packed rows without flash-attention: flex_attention skips the blocks "
                                        "between documents (SDPA would fill a dense mask over the whole batch)")
    return Choice("sdpa", "unpacked rows: SDPA's fused causal kernel")


def _compile(cfg: TrainConfig, stage: StageSpec, hw: Hardware, attention: str) -> Choice:
    wanted = cfg.speed.compile
    if wanted != "auto":
        return Choice(wanted == "on", "speed.compile is set")
    if not hw.cuda:
        return Choice(False, "CPU: compiling costs more than it saves")
    if stage.type == "dpo":
        return Choice(False, "dpo: chosen/rejected batches change shape every step")
    if stage.peft.method == "qlora":
        return Choice(False, "qlora: bitsandbytes 4-bit layers break compiled graphs")
    if cfg.distributed.strategy in ("fsdp", "deepspeed"):
        return Choice(False, f"{cfg.distributed.strategy} wraps the model in its own sharded modules")
    if attention.startswith("flash_attention"):
        return Choice(False, "flash-attention's varlen batches change shape every step")
    if not hw.triton:
        return Choice(False, f"torch.compile's GPU kernels need Triton and a C compiler ({NO_TRITON})")
    return Choice(True, "GPU: decoder layers compiled once on one static batch shape (fuses norms, RoPE, SwiGLU)")


def _liger(cfg: TrainConfig, hw: Hardware, compiled: bool) -> Choice:
    wanted = cfg.speed.liger
    if wanted == "on":
        if not hw.cuda:
            raise TrainConfigError("speed.liger on needs a CUDA GPU (Liger's kernels are Triton); use auto or off")
        if not _installed("liger_kernel"):
            raise TrainConfigError(f"speed.liger on needs the liger-kernel package: {install_hint('liger_kernel')}")
        if not hw.triton:
            raise TrainConfigError(f"speed.liger on needs Triton and a C compiler; {NO_TRITON}")
        return Choice(True, "speed.liger is on")
    if wanted == "off":
        return Choice(False, "speed.liger is off")
    if not hw.cuda:
        return Choice(False, "CPU: Liger's kernels are Triton (GPU only)")
    if not _installed("liger_kernel"):
        return Choice(False, install_hint("liger_kernel"))
    if not hw.triton:
        return Choice(False, f"Liger's kernels need Triton and a C compiler ({NO_TRITON})")
    if compiled:
        return Choice(False, "torch.compile already fuses the norm/RoPE/SwiGLU ops Liger replaces")
    return Choice(True, "liger-kernel is installed: fused RMSNorm, RoPE and SwiGLU kernels")


def _fused(cfg: TrainConfig, hw: Hardware) -> bool:
    return hw.cuda if cfg.speed.fused_adamw == "auto" else cfg.speed.fused_adamw == "on"


def _optimizer(cfg: TrainConfig, stage: StageSpec, hw: Hardware, weights: str) -> Choice:
    if "optim" in stage.model_fields_set and stage.optim != DEFAULT_OPTIM:
        return Choice(stage.optim, "the stage's optim is set")
    wanted = cfg.speed.fused_adamw
    fused = _fused(cfg, hw)
    how = "fused" if fused else "per-tensor"
    if weights == "bf16" and stage.peft.method == "none":
        return Choice(MASTER_ADAMW, f"bf16 weights: {how} AdamW on fp32 master weights, copied back to bf16")
    if fused:
        why = "speed.fused_adamw is on" if wanted == "on" else "GPU: one fused AdamW kernel for all parameters"
        return Choice("adamw_torch_fused", why)
    return Choice(DEFAULT_OPTIM, "CPU: PyTorch's AdamW" if wanted == "auto" else "speed.fused_adamw is off")


def _workers(cfg: TrainConfig, hw: Hardware) -> Choice:
    wanted = cfg.speed.dataloader_workers
    if wanted != "auto":
        return Choice(int(wanted), "speed.dataloader_workers is set")
    if not hw.cuda:
        return Choice(0, "CPU: batches are collated in the training process")
    per_process = max(1, hw.cpus // max(1, hw.world_size))
    n = max(1, min(4, per_process - 1))
    return Choice(n, f"GPU: {n} worker(s) collate the next batches while the GPU trains")


def resolve(cfg: TrainConfig, stage: StageSpec, hw: Hardware, precision: str) -> StageSpeed:
    """The settings ``stage`` runs with; TrainConfigError for a setting this machine cannot run."""
    packs = stage.use_packing and stage.type in ("sft", "pretrain")
    padding_free = Choice(packs, "packed rows are flattened into one sequence with per-document positions "
                                 "(TRL's BFD packing): no padding" if packs else
                          ("dpo: TRL pads chosen/rejected pairs" if stage.type == "dpo" else
                           "packing is off for this stage (set packing: true to pack short rows)"))
    weights = _weights(cfg, stage, precision, hw)
    attention = _attention(cfg, hw, packs)
    compiled = _compile(cfg, stage, hw, attention.value)
    return StageSpeed(
        weights=weights,
        attention=attention,
        optimizer=_optimizer(cfg, stage, hw, weights.value),
        liger=_liger(cfg, hw, compiled.value),
        compile=compiled,
        padding_free=padding_free,
        dataloader_workers=_workers(cfg, hw),
        fused=_fused(cfg, hw),
    )


def resolve_plan(plan) -> dict[int, StageSpeed]:
    """Every stage's settings, raising TrainConfigError (naming the stage) before any model loads;
    kept on ``plan.speeds`` so the stage runners read them instead of resolving again."""
    out: dict[int, StageSpeed] = {}
    for stage in plan.stages:
        try:
            out[stage.index] = resolve(plan.config, stage.spec, plan.hardware, plan.precision)
        except TrainConfigError as exc:
            raise TrainConfigError(f"{stage.where}: {exc}") from None
    plan.speeds = out
    return out


def describe(speed: StageSpeed) -> list[str]:
    """One line per setting: ``name: value  (why)``."""
    return [f"{name:<19}{_show(c.value):<20}{c.why}" for name, c in speed.items()]


def _show(value: Any) -> str:
    return {True: "on", False: "off"}.get(value, str(value)) if isinstance(value, bool) else str(value)


def model_spec(spec: ModelSpec, speed: StageSpeed) -> ModelSpec:
    """The ModelSpec the stage loads with: weights dtype and attention as resolved."""
    dtype = {"bf16": "bfloat16", "fp32": "float32", "fp16": "float16"}.get(speed.weights.value, spec.dtype)
    return spec.model_copy(update={"dtype": dtype, "attn_implementation": speed.attention.value})


def training_args(speed: StageSpeed) -> dict[str, Any]:
    """TrainingArguments fields that follow from the resolved settings."""
    workers = int(speed.dataloader_workers.value)
    args: dict[str, Any] = {
        "optim": "adamw_torch" if speed.optimizer.value == MASTER_ADAMW else speed.optimizer.value,
        "dataloader_num_workers": workers,
        "dataloader_persistent_workers": workers > 0,
    }
    if speed.liger.value:
        # TRL applies its own fused LM head; Liger contributes the layer kernels only.
        args.update({"use_liger_kernel": True, "liger_kernel_config": {"fused_linear_cross_entropy": False}})
    return args
