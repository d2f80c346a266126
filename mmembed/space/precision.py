"""Tower precision: fp32 (exact) or bf16 weights.

bf16 changes the vectors slightly; ``benchmarks`` reports its cosine similarity to fp32 next
to its speed, so it is opt-in (``mmembed.load(..., precision="bf16")``). Dynamic int8
quantisation of Linear layers is measured by the benchmark but not offered: on this project's
CPU it was slower than fp32 and it moved mmembed-mini's ConSE vectors too far (cosine ~0.91).
"""

from __future__ import annotations

import logging

import torch
from torch import nn

logger = logging.getLogger(__name__)

PRECISIONS = ("fp32", "bf16", "fp16")


def apply_precision(tower: nn.Module, precision: str) -> nn.Module:
    """Return ``tower`` with its weights in ``precision``."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision == "fp32":
        return tower.float()
    return tower.to(torch.bfloat16 if precision == "bf16" else torch.float16)


def input_dtype(tower: nn.Module) -> torch.dtype:
    """The floating dtype a tower's pixel input must have (its first float parameter's)."""
    for parameter in tower.parameters():
        if parameter.is_floating_point():
            return parameter.dtype
    return torch.float32
