"""The ``distributed:`` section -> an accelerate config file, and the launch command.

Multi-GPU runs are ordinary ``accelerate launch`` runs of ``meddata train``; transformers'
Trainer reads FSDP / DeepSpeed settings from the environment accelerate sets up. So the
config maps to an accelerate YAML (the same shape as TRL's ``accelerate_configs/``)::

    meddata train run.yaml --accelerate-config accelerate.yaml   # writes the file, prints:
    accelerate launch --config_file accelerate.yaml -m meddata.cli train run.yaml
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from meddata.trainers.config import DistributedSpec, TrainConfig

_SHARDING_V1 = {"full_shard": "FULL_SHARD", "shard_grad_op": "SHARD_GRAD_OP",
                "hybrid_shard": "HYBRID_SHARD", "no_shard": "NO_SHARD"}


def _mixed_precision(precision: str) -> str:
    # Multi-GPU means CUDA; "auto" picks bf16 (Ampere and newer). Use precision: fp16 on V100/T4.
    return {"auto": "bf16", "bf16": "bf16", "fp16": "fp16", "fp32": "no"}[precision]


def accelerate_config(config: TrainConfig) -> dict[str, Any]:
    d: DistributedSpec = config.distributed
    out: dict[str, Any] = {
        "compute_environment": "LOCAL_MACHINE",
        "debug": False,
        "downcast_bf16": "no",
        "machine_rank": 0,
        "main_training_function": "main",
        "mixed_precision": _mixed_precision(config.precision),
        "num_machines": d.num_machines,
        "num_processes": d.num_processes,
        "rdzv_backend": "static",
        "same_network": True,
        "use_cpu": False,
    }
    if d.strategy in ("none", "ddp"):
        out["distributed_type"] = "MULTI_GPU" if d.num_processes > 1 else "NO"
        out["gpu_ids"] = "all"
    elif d.strategy == "fsdp":
        f = d.fsdp
        fsdp: dict[str, Any] = {
            "fsdp_version": f.version,
            "fsdp_auto_wrap_policy": "TRANSFORMER_BASED_WRAP",
            "fsdp_cpu_ram_efficient_loading": True,
            "fsdp_offload_params": f.cpu_offload,
            "fsdp_activation_checkpointing": f.activation_checkpointing,
            "fsdp_state_dict_type": "FULL_STATE_DICT" if f.state_dict_type == "full" else "SHARDED_STATE_DICT",
        }
        if f.version == 1:
            fsdp.update({"fsdp_sharding_strategy": _SHARDING_V1[f.sharding], "fsdp_backward_prefetch": "BACKWARD_PRE",
                         "fsdp_forward_prefetch": True, "fsdp_sync_module_states": True,
                         "fsdp_use_orig_params": True})
        else:
            if f.sharding not in ("full_shard", "shard_grad_op"):
                raise ValueError(f"FSDP2 supports sharding full_shard or shard_grad_op, not {f.sharding}; "
                                 "use fsdp.version: 1")
            fsdp["fsdp_reshard_after_forward"] = f.sharding == "full_shard"
        out["distributed_type"] = "FSDP"
        out["fsdp_config"] = fsdp
    else:
        z = d.deepspeed
        out["distributed_type"] = "DEEPSPEED"
        out["deepspeed_config"] = {
            "deepspeed_multinode_launcher": "standard",
            "zero_stage": z.zero_stage,
            "offload_optimizer_device": "cpu" if z.offload_optimizer else "none",
            "offload_param_device": "cpu" if z.offload_params else "none",
            "zero3_init_flag": z.zero_stage == 3,
            "zero3_save_16bit_model": z.zero_stage == 3,
        }
    return out


def launch_command(config_file: str | Path, train_config: str | Path) -> str:
    return f"accelerate launch --config_file {config_file} -m meddata.cli train {train_config}"


def write_accelerate_config(config: TrainConfig, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("# written by `meddata train --accelerate-config`; edit freely\n"
                    + yaml.safe_dump(accelerate_config(config), sort_keys=True), encoding="utf-8")
    return path
