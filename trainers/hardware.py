"""What the machine can do, and the choices that follow from it (precision, QLoRA).

Decided once per run so every stage and every error message agrees; the checks run before
any model is loaded.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass

from meddata.extras import install_hint


@dataclass(frozen=True)
class Hardware:
    cuda: bool
    gpus: int
    bf16: bool  # the GPU supports bfloat16 (Ampere or newer)
    bitsandbytes: bool  # importable; only meaningful with CUDA
    device_name: str
    #: CUDA compute capability of GPU 0, e.g. (9, 0) for Hopper; None on CPU.
    capability: tuple[int, int] | None = None
    memory_gib: float = 0.0  # GPU 0's memory
    cpus: int = 1  # CPU cores this process may use
    #: Triton can build GPU kernels here (the package and a C compiler for its launcher):
    #: torch.compile, flex_attention and Liger need it.
    triton: bool = False

    @property
    def world_size(self) -> int:
        """Processes in this launch (accelerate/torchrun set WORLD_SIZE)."""
        return int(os.environ.get("WORLD_SIZE", "1"))

    @property
    def local_rank(self) -> int:
        return int(os.environ.get("LOCAL_RANK", "0"))


def detect() -> Hardware:
    import torch

    cuda = torch.cuda.is_available()
    return Hardware(
        cuda=cuda,
        gpus=torch.cuda.device_count() if cuda else 0,
        bf16=bool(cuda and torch.cuda.is_bf16_supported()),
        bitsandbytes=importlib.util.find_spec("bitsandbytes") is not None,
        device_name=torch.cuda.get_device_name(0) if cuda else "cpu",
        capability=tuple(torch.cuda.get_device_capability(0)) if cuda else None,
        memory_gib=torch.cuda.get_device_properties(0).total_memory / 2**30 if cuda else 0.0,
        cpus=len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1),
        triton=cuda and importlib.util.find_spec("triton") is not None and c_compiler() is not None,
    )


def c_compiler() -> str | None:
    """The C compiler Triton would use (``$CC``, else cc/gcc/clang on PATH), or None."""
    import shutil

    for name in (os.environ.get("CC"), "cc", "gcc", "clang"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


def precision_problem(requested: str, hw: Hardware) -> str | None:
    """Why ``requested`` precision cannot run here, or None."""
    if requested == "fp16" and not hw.cuda:
        return "precision fp16 needs a CUDA GPU; this machine has none (use auto or fp32)"
    if requested == "bf16" and hw.cuda and not hw.bf16:
        return f"precision bf16 is not supported by {hw.device_name} (use fp16 or auto)"
    return None


def resolve_precision(requested: str, hw: Hardware) -> str:
    """``auto`` -> bf16 on GPUs that support it, fp16 on older GPUs, fp32 on CPU."""
    if requested != "auto":
        return requested
    if not hw.cuda:
        return "fp32"
    return "bf16" if hw.bf16 else "fp16"


def qlora_problem(hw: Hardware) -> str | None:
    """Why QLoRA (4-bit bitsandbytes base weights) cannot run here, or None."""
    if not hw.cuda:
        return ("peft.method qlora loads 4-bit weights with bitsandbytes, which needs a CUDA GPU; "
                "this machine has none (use method: lora, or run on a GPU machine)")
    if not hw.bitsandbytes:
        return f"peft.method qlora needs the bitsandbytes package: {install_hint('bitsandbytes')}"
    return None


def compute_dtype(precision: str):
    import torch

    return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision, torch.float32)
