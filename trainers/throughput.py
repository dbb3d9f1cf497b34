"""Tokens per second and model FLOPs utilisation (MFU) of a training run.

MFU = model FLOPs per second / the device's peak. Model FLOPs per token are the matmul
FLOPs of a forward and backward pass over the parameter count N: 2N forward, 2N for the
activation gradients and 2N for the weight gradients of the trained weights (6N in full
fine-tuning, about 4N with LoRA); recomputation (activation checkpointing) and attention
scores are not counted, as is usual (PaLM's appendix B). The peak is measured once with a
bf16 matmul on the device (what the hardware actually reaches, usually 70-85 % of the data
sheet), and the data-sheet number for known GPUs is reported alongside. On CPU there is no
meaningful peak, so MFU is n/a and only tokens/s is reported.

Timing starts after the warm-up steps (compilation, allocator growth, DataLoader start) and
ends after the last step, with the device synchronised at both ends.
"""

from __future__ import annotations

import functools
import time
from typing import Any

#: Dense bf16 tensor-core peak in TFLOP/s from NVIDIA's data sheets (no sparsity), matched
#: against torch.cuda.get_device_name(); the longest matching key wins.
SPEC_PEAK_TFLOPS = {
    "H200": 989.0, "GH200": 989.0, "H100": 989.0, "H100 PCIe": 756.0, "H100 NVL": 835.0, "H800": 989.0,
    "B200": 2250.0, "B100": 1750.0, "A100": 312.0, "A800": 312.0, "L40S": 362.0, "L40": 181.0, "L4": 121.0,
    "A10G": 70.0, "A10": 125.0, "A6000": 155.0, "RTX 6000 Ada": 365.0, "RTX 4090": 165.0, "RTX 3090": 71.0,
}


def spec_peak_flops(device_name: str) -> float | None:
    """The data-sheet bf16 peak (FLOP/s) of a GPU by name, or None when unknown."""
    hits = [k for k in SPEC_PEAK_TFLOPS if k.lower() in device_name.lower()]
    return SPEC_PEAK_TFLOPS[max(hits, key=len)] * 1e12 if hits else None


@functools.lru_cache(maxsize=1)
def measured_peak_flops(n: int = 8192, iters: int = 20) -> float | None:
    """bf16 FLOP/s of an ``n``³ matmul on CUDA device 0 (None without CUDA)."""
    import torch

    if not torch.cuda.is_available():
        return None
    a = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(iters):
        a @ b
    end.record()
    torch.cuda.synchronize()
    seconds = start.elapsed_time(end) / 1000
    del a, b
    torch.cuda.empty_cache()
    return 2 * n**3 * iters / seconds


def device_peak(device_name: str, cuda: bool) -> tuple[float | None, str]:
    """(peak FLOP/s, where it comes from) for MFU."""
    if not cuda:
        return None, "n/a on CPU"
    measured = measured_peak_flops()
    if measured:
        return measured, "measured: 8192^3 bf16 matmul"
    spec = spec_peak_flops(device_name)
    return spec, f"data sheet ({device_name})" if spec else "unknown device"


def model_flops_per_token(model: Any) -> tuple[float, int]:
    """(training FLOPs per token, parameter count N excluding the input embedding)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    base = getattr(base, "_orig_mod", base)
    n = int(base.num_parameters(exclude_embeddings=True))
    trainable = sum(p.numel() for name, p in base.named_parameters()
                    if p.requires_grad and "embed_tokens" not in name)
    return 4.0 * n + 2.0 * min(trainable, n), n


class TokenMeter:
    """Real (not padding) tokens seen by the training steps, counted on the CPU batch.

    ``pad_id``: set when a padding-free batch may already be padded at its end (TRL's
    ``pad_to_multiple_of``); the trailing run of pad tokens with no label and position 0
    is then not counted."""

    def __init__(self, pad_id: int | None = None) -> None:
        self.tokens = 0
        self.pad_id = pad_id

    def count(self, inputs: dict[str, Any]) -> int:
        if "attention_mask" in inputs:
            n = int(inputs["attention_mask"].sum())
        elif "input_ids" not in inputs:  # a trainer with other inputs (DPO's chosen/rejected pairs)
            n = sum(int(v.sum()) for k, v in inputs.items() if k.endswith("attention_mask"))
        else:  # padding-free: one flattened row
            ids = inputs["input_ids"]
            n = int(ids.numel())
            if self.pad_id is not None and "position_ids" in inputs and "labels" in inputs and ids.shape[0] == 1:
                padding = (ids[0] == self.pad_id) & (inputs["labels"][0] == -100) & (inputs["position_ids"][0] == 0)
                n -= trailing_true(padding)
        self.tokens += n
        return n


def trailing_true(mask) -> int:
    """Length of the run of True at the end of a 1-D boolean tensor."""
    flipped = (~mask.flip(0)).int()
    if not bool(flipped.any()):
        return int(mask.numel())
    return int(flipped.argmax())


def callback(meter: TokenMeter, flops_per_token: float, params: int, peak: float | None, peak_source: str,
             warmup_steps: int):
    """A TrainerCallback timing the steps after ``warmup_steps`` (``.summary`` holds the numbers)."""
    from transformers import TrainerCallback

    class ThroughputCallback(TrainerCallback):
        def __init__(self) -> None:
            self.summary: dict[str, Any] = {}
            self._t0: float | None = None
            self._tok0 = 0
            self._step0 = 0
            self._warmup = warmup_steps

        def _mark(self, state) -> None:
            _sync()
            self._t0, self._tok0, self._step0 = time.perf_counter(), meter.tokens, state.global_step

        def on_train_begin(self, args, state, control, **kwargs):
            self._warmup = min(warmup_steps, max(0, state.max_steps // 2)) if state.max_steps > 0 else warmup_steps
            _reset_peak_memory()
            if self._warmup == 0:
                self._mark(state)

        def on_step_end(self, args, state, control, **kwargs):
            if self._t0 is None and state.global_step - self._step0 >= self._warmup:
                self._mark(state)

        def on_train_end(self, args, state, control, **kwargs):
            _sync()
            self.summary = summarise(meter.tokens, self._tok0, self._t0, state.global_step - self._step0,
                                     flops_per_token, peak, peak_source)
            self.summary.update({"params": params, "warmup_steps": self._warmup})

    return ThroughputCallback()


def summarise(tokens: int, tokens_at_start: int, t0: float | None, steps: int, flops_per_token: float,
              peak: float | None, peak_source: str) -> dict[str, Any]:
    """Throughput numbers for the timed window (from ``t0`` to now)."""
    out: dict[str, Any] = {"train_tokens": tokens, "model_flops_per_token": flops_per_token,
                           "peak_flops": peak, "peak_source": peak_source, "mfu": None}
    if t0 is None or steps <= 0:
        out["timing_note"] = "too few steps after warm-up to time"
        return out
    seconds = time.perf_counter() - t0
    timed_tokens = tokens - tokens_at_start
    out.update({"timed_steps": steps, "timed_tokens": timed_tokens, "timed_s": round(seconds, 3),
                "tokens_per_s": timed_tokens / seconds if seconds > 0 else None})
    if out["tokens_per_s"]:
        out["model_tflops_per_s"] = out["tokens_per_s"] * flops_per_token / 1e12
        if peak:
            out["mfu"] = out["tokens_per_s"] * flops_per_token / peak
    mem = _peak_memory_gib()
    if mem is not None:
        out["peak_memory_gib"] = mem
    return out


def _sync() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def _reset_peak_memory() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()


def _peak_memory_gib() -> float | None:
    import torch

    return torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else None
