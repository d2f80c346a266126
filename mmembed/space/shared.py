"""The shared space: normalisation and Matryoshka truncation, the last stage before a vector."""

from __future__ import annotations

import torch
from torch import nn


def truncate(embeddings: torch.Tensor, dim: int | None, normalize: bool) -> torch.Tensor:
    """Keep the first ``dim`` coordinates (Matryoshka) and renormalise when asked."""
    if dim is not None:
        if not 0 < dim <= embeddings.shape[-1]:
            raise ValueError(f"dim must be in 1..{embeddings.shape[-1]}, got {dim}")
        embeddings = embeddings[..., :dim]
    if normalize:
        embeddings = nn.functional.normalize(embeddings, dim=-1)
    return embeddings


class SharedSpace(nn.Module):
    """Optional linear projection into the shared space; identity for towers already aligned."""

    def __init__(self, projection: nn.Module | None = None):
        super().__init__()
        self.projection = projection if projection is not None else nn.Identity()

    def forward(self, embeddings: torch.Tensor) -> torch.Tensor:
        return self.projection(embeddings)
