"""AdamW for bf16 weights that keeps fp32 master weights and fp32 Adam state.

Training in bf16 weights (rather than fp32 weights under autocast) halves activation
memory and removes the per-step weight casts, but bf16 has 8 bits of mantissa: an update
of ``lr * step`` smaller than about 1/256 of a weight rounds to nothing, so fine-tuning at
1e-5 would silently stop learning. This optimizer keeps an fp32 copy of every trained
weight, runs (fused) AdamW on the copies and writes them back rounded to bf16, the way
mixed-precision training has always done it. Gradients are widened to fp32 one chunk of
parameters at a time, so the extra memory is the fp32 copy (4 bytes per weight) plus one
chunk: 16 bytes per weight in all, the same as fp32 weights with fp32 AdamW.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

#: Parameters whose fp32 gradients exist at one time (elements): 256M = 1 GiB.
CHUNK_ELEMENTS = 1 << 28


class MasterWeightAdamW(torch.optim.AdamW):
    """``torch.optim.AdamW`` over fp32 copies of the model's (bf16/fp16) parameters.

    The LR scheduler, gradient clipping and checkpointing see an ordinary AdamW: its
    ``param_groups`` hold the fp32 copies, clipping acts on the model's gradients before
    ``step``, and ``state_dict`` carries the master weights so a resumed run continues
    from exactly the same fp32 values."""

    def __init__(self, params: Iterable[Any], lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.01, fused: bool | None = None,
                 chunk_elements: int = CHUNK_ELEMENTS):
        groups = list(params)
        if groups and not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        self._model_params: list[torch.Tensor] = []
        master_groups = []
        for group in groups:
            masters = []
            for p in group["params"]:
                masters.append(p.detach().to(torch.float32, copy=True))
                self._model_params.append(p)
            master_groups.append({**group, "params": masters})
        super().__init__(master_groups, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, fused=fused)
        self._masters = [m for g in self.param_groups for m in g["params"]]
        self._chunks = _chunks([m.numel() for m in self._masters], chunk_elements)

    @torch.no_grad()
    def step(self, closure=None):  # type: ignore[override]
        loss = closure() if closure is not None else None
        for chunk in self._chunks:
            pairs = [(self._masters[i], self._model_params[i]) for i in chunk
                     if self._model_params[i].grad is not None]
            if not pairs:
                continue
            for master, param in pairs:
                master.grad = param.grad.to(torch.float32)
            super().step()
            for master, param in pairs:
                param.copy_(master)
                master.grad = None
        return loss

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self._model_params:
            if set_to_none:
                p.grad = None
            elif p.grad is not None:
                p.grad.zero_()

    def state_dict(self) -> dict[str, Any]:
        out = super().state_dict()
        out["master_weights"] = [m.detach().clone() for m in self._masters]
        return out

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        state_dict = dict(state_dict)
        masters = state_dict.pop("master_weights", None)
        super().load_state_dict(state_dict)
        if masters is not None:
            with torch.no_grad():
                for mine, saved, param in zip(self._masters, masters, self._model_params, strict=True):
                    mine.copy_(saved)
                    param.copy_(mine)


def _chunks(sizes: list[int], limit: int) -> list[list[int]]:
    """Consecutive index groups of at most ``limit`` elements (a larger tensor is a group alone)."""
    chunks: list[list[int]] = []
    current: list[int] = []
    total = 0
    for i, n in enumerate(sizes):
        if current and total + n > limit:
            chunks.append(current)
            current, total = [], 0
        current.append(i)
        total += n
    if current:
        chunks.append(current)
    return chunks
