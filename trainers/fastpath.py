"""What meddata adds to TRL's trainers at run time, following the resolved ``speed`` settings:
batches padded to one static shape for compiled layers, real-token counting, the decoder
layers compiled once (regional compilation), the fp32-master AdamW for bf16 weights, and the
throughput / MFU numbers in the stage's metrics.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from typing import Any

from meddata.trainers import throughput
from meddata.trainers.speed import MASTER_ADAMW, StageSpeed

log = logging.getLogger("meddata.trainers")

#: Keys TRL's padding-free collator adds for varlen (flash-attention) kernels; other attentions
#: read the document boundaries from position_ids, and these change shape every batch.
VARLEN_KEYS = ("cu_seq_lens_q", "cu_seq_lens_k", "max_length_q", "max_length_k", "seq_idx")
WARMUP_STEPS = {True: 5, False: 2}  # steps left out of the timing, with / without compilation


@dataclass(frozen=True)
class BatchShape:
    """How batches are reshaped before the model sees them. ``flat_length``: padding-free
    batches are padded to this many tokens; ``row_length``: padded rows to this width."""

    pad_id: int
    drop_varlen: bool
    flat_length: int | None = None
    row_length: int | None = None


def batch_shape(speed: StageSpeed, pad_id: int, batch_size: int, max_length: int | None) -> BatchShape:
    flash = str(speed.attention.value).startswith("flash_attention")
    static = speed.static_shapes and max_length is not None
    return BatchShape(pad_id=pad_id, drop_varlen=not flash,
                      flat_length=batch_size * max_length if static and max_length else None,
                      row_length=max_length if static else None)


def shape_batch(inputs: dict[str, Any], shape: BatchShape) -> dict[str, Any]:
    """Drop the varlen keys a non-flash attention does not read, and pad to the static shape.
    Padding is labelled -100 (no loss) and, in a padding-free batch, forms one extra document
    with its own positions, so no real token attends to it."""
    import torch

    if shape.drop_varlen:
        for key in VARLEN_KEYS:
            inputs.pop(key, None)
    ids = inputs.get("input_ids")
    if ids is None or ids.dim() != 2:
        return inputs
    padded_rows = "attention_mask" in inputs
    target = shape.row_length if padded_rows else shape.flat_length
    width = ids.shape[1]
    if not target or width >= target:
        return inputs
    extra = target - width
    out = dict(inputs)
    for key, value in inputs.items():
        if not (isinstance(value, torch.Tensor) and value.dim() == 2 and value.shape == ids.shape):
            continue
        if key == "input_ids":
            fill = torch.full((value.shape[0], extra), shape.pad_id, dtype=value.dtype)
        elif key == "labels":
            fill = torch.full((value.shape[0], extra), -100, dtype=value.dtype)
        elif key == "position_ids" and not padded_rows:
            fill = torch.arange(extra, dtype=value.dtype).expand(value.shape[0], extra)
        elif key == "position_ids":
            fill = value[:, -1:] + 1 + torch.arange(extra, dtype=value.dtype)
        else:  # attention_mask, completion/assistant masks: padding is not attended, not trained
            fill = torch.zeros((value.shape[0], extra), dtype=value.dtype)
        out[key] = torch.cat([value, fill.to(value.device)], dim=1)
    return out


@functools.lru_cache(maxsize=4)
def trainer_class(base: type) -> type:
    """``base`` (SFTTrainer or DPOTrainer) counting real tokens and shaping each batch."""

    class MeddataTrainer(base):  # type: ignore[misc, valid-type]
        meddata_meter: throughput.TokenMeter | None = None
        meddata_shape: BatchShape | None = None

        def training_step(self, model, inputs, num_items_in_batch=None):
            if self.meddata_meter is not None:
                self.meddata_meter.count(inputs)
            if self.meddata_shape is not None:
                inputs = shape_batch(inputs, self.meddata_shape)
            return super().training_step(model, inputs, num_items_in_batch)

        def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
            if self.meddata_shape is not None:
                inputs = shape_batch(inputs, self.meddata_shape)
            return super().prediction_step(model, inputs, prediction_loss_only, ignore_keys=ignore_keys)

    MeddataTrainer.__name__ = MeddataTrainer.__qualname__ = f"Meddata{base.__name__}"
    return MeddataTrainer


def decoder_layers(model: Any) -> list[Any]:
    """The model's repeated blocks: the longest ModuleList of one module class."""
    import torch

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    best: list[Any] = []
    for module in base.modules():
        if isinstance(module, torch.nn.ModuleList) and len(module) > len(best) \
                and len({type(m) for m in module}) == 1:
            best = list(module)
    return best


def compile_layers(model: Any) -> int:
    """Compile each decoder layer in place (one graph serves them all); returns how many."""
    layers = decoder_layers(model)
    for layer in layers:
        layer.compile()
    return len(layers)


def master_optimizer(trainer: Any, speed: StageSpeed) -> None:
    """Make ``trainer`` build meddata's fp32-master AdamW with its own hyperparameters."""
    from meddata.trainers.optim import MasterWeightAdamW

    args = trainer.args
    trainer.optimizer_cls_and_kwargs = (MasterWeightAdamW, {
        "lr": args.learning_rate, "betas": (args.adam_beta1, args.adam_beta2), "eps": args.adam_epsilon,
        "weight_decay": args.weight_decay, "fused": speed.fused})


def attach(trainer: Any, speed: StageSpeed, *, device_name: str, cuda: bool, max_length: int | None,
           batch_size: int) -> Any:
    """Wire the resolved settings into a constructed trainer; returns the throughput callback."""
    if speed.optimizer.value == MASTER_ADAMW:
        master_optimizer(trainer, speed)
    tokenizer = getattr(trainer, "processing_class", None)
    tokenizer = getattr(tokenizer, "tokenizer", tokenizer)
    pad_id = getattr(tokenizer, "pad_token_id", None)
    pad_id = 0 if pad_id is None else int(pad_id)
    trainer.meddata_meter = throughput.TokenMeter()
    trainer.meddata_shape = batch_shape(speed, pad_id, batch_size, max_length)
    if speed.compile.value:
        n = compile_layers(trainer.model)
        log.info("compiled %d decoder layers (static batch shape: %s tokens)", n,
                 trainer.meddata_shape.flat_length or trainer.meddata_shape.row_length)
    flops, params = throughput.model_flops_per_token(trainer.model)
    peak, source = throughput.device_peak(device_name, cuda)
    cb = throughput.callback(trainer.meddata_meter, flops, params, peak, source,
                             WARMUP_STEPS[bool(speed.compile.value)])
    trainer.add_callback(cb)
    return cb
