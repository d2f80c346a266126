"""Optimizer, learning-rate schedule and parameter freezing."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

import torch
from torch import nn

from .config import OptimConfig

logger = logging.getLogger(__name__)


def freeze_by_prefix(module: nn.Module, prefixes: Sequence[str]) -> list[str]:
    """Stop gradients for parameters whose name starts with one of ``prefixes``.

    Names are those of ``module.named_parameters()``, e.g. ``towers.image.`` for a whole tower
    or ``towers.text.transformer.resblocks.0.`` for a layer group.

    Raises:
        ValueError: when a prefix matches no parameter (a typo would silently train everything).
    """
    names = [name for name, _ in module.named_parameters()]
    unmatched = [p for p in prefixes if not any(n.startswith(p) for n in names)]
    if unmatched:
        raise ValueError(
            f"freeze prefixes {unmatched} match no parameter; names look like {names[:3]}"
        )
    frozen = []
    for name, param in module.named_parameters():
        if any(name.startswith(p) for p in prefixes):
            param.requires_grad_(False)
            frozen.append(name)
    if frozen:
        count = sum(p.numel() for n, p in module.named_parameters() if n in set(frozen))
        logger.info(
            "froze %d tensors (%d parameters) matching %s", len(frozen), count, list(prefixes)
        )
    return frozen


def build_optimizer(module: nn.Module, config: OptimConfig) -> torch.optim.AdamW:
    """AdamW over trainable parameters; weight decay on matrices only.

    Biases, norm gains and scalars such as the logit scale are not decayed (decaying them
    pulls them to zero, which has no regularising meaning for them).
    """
    trainable = [(n, p) for n, p in module.named_parameters() if p.requires_grad]
    if not trainable:
        raise ValueError("every parameter is frozen; nothing to train")
    groups = [
        {"params": [p for _, p in trainable if p.ndim >= 2], "weight_decay": config.weight_decay},
        {"params": [p for _, p in trainable if p.ndim < 2], "weight_decay": 0.0},
    ]
    groups = [g for g in groups if g["params"]]
    return torch.optim.AdamW(groups, lr=config.lr, betas=tuple(config.betas), eps=config.eps)


def cosine_schedule(
    optimizer: torch.optim.Optimizer, warmup_steps: int, total_steps: int, min_lr_ratio: float = 0.0
) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warmup to the base learning rate, then cosine decay to ``min_lr_ratio`` of it."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = min((step - warmup_steps) / max(total_steps - warmup_steps, 1), 1.0)
        return min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
