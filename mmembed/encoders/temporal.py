"""Temporal modules: per-frame embeddings of a video -> one video embedding."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class TemporalCfg:
    kind: str = "mean"  # "mean" pooling, or "attention" (a zero-initialised residual block)
    num_heads: int = 4  # attention heads of the temporal block
    # Temporal position embeddings: the frame count the block was trained up to (the video
    # curriculum grows it with ``resize_positions``); longer videos read a stretched table.
    max_frames: int = 8


class MeanTemporalPool(nn.Module):
    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        return frames.mean(dim=1)  # (B, T, D) -> (B, D)


class TemporalAttentionPool(nn.Module):
    """Residual self-attention over frames, then mean pooling.

    The position embeddings and the attention's output projection start at zero, so at
    initialisation the block is the identity and a video of one still frame equals the image
    embedding. The video curriculum (Frozen in Time) trains it up from there.
    """

    def __init__(self, dim: int, num_heads: int, max_frames: int):
        super().__init__()
        self.positions = nn.Parameter(torch.zeros(max_frames, dim))
        self.norm = nn.LayerNorm(dim)
        self.attention = nn.MultiheadAttention(dim, num_heads, batch_first=True)
        nn.init.zeros_(self.attention.out_proj.weight)
        nn.init.zeros_(self.attention.out_proj.bias)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        num_frames = frames.shape[1]
        positions = self.positions
        if num_frames > positions.shape[0]:  # more frames than trained: stretch the table
            positions = stretch_positions(positions, num_frames)
        x = frames + positions[:num_frames].to(frames.dtype)  # (B, T, D)
        normed = self.norm(x)
        attended, _ = self.attention(normed, normed, normed, need_weights=False)
        return (x + attended).mean(dim=1)  # (B, D)

    @torch.no_grad()
    def resize_positions(self, max_frames: int) -> None:
        """Stretch the position table to ``max_frames`` by linear interpolation over time."""
        self.positions = nn.Parameter(stretch_positions(self.positions.data, max_frames))


def stretch_positions(table: torch.Tensor, frames: int) -> torch.Tensor:
    """(T, D) position table -> (frames, D), linearly interpolated over time."""
    resized = nn.functional.interpolate(
        table.T.unsqueeze(0), size=frames, mode="linear", align_corners=True
    )  # (1, D, frames)
    return resized.squeeze(0).T.contiguous()


def build_temporal(cfg: TemporalCfg, dim: int) -> nn.Module:
    if cfg.kind == "mean":
        return MeanTemporalPool()
    if cfg.kind == "attention":
        return TemporalAttentionPool(dim, cfg.num_heads, cfg.max_frames)
    raise ValueError(f"unknown temporal module {cfg.kind!r}; use 'mean' or 'attention'")
