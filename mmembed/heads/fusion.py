"""The instruction head: one vector per item from the embeddings of its parts.

An item becomes parts (its image, its text with the instruction in it, a document's segments,
a table's chunks). The default head is the score-level fusion MMEB uses for CLIP-style
baselines: a weighted sum of the unit part embeddings. A learned head (trained by
``mmembed.train``) takes the same ``PartBatch`` and returns the same ``(N, D)`` tensor.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class PartBatch:
    """Embedded parts of N items, flattened; one row per part."""

    embeddings: torch.Tensor  # (P, D) unit-norm part embeddings
    item: torch.Tensor  # (P,) long: which item (0..N-1) each part belongs to
    weight: torch.Tensor  # (P,) float: the part's weight inside its item
    position: torch.Tensor  # (P,) long: the part's order inside its item (document position)
    modality: torch.Tensor  # (P,) long: index into PART_KINDS
    num_items: int


PART_KINDS = ("text", "image", "video", "page", "sequence")


class WeightedSumHead(nn.Module):
    """Score-level fusion: sum of ``weight * part`` per item (normalised later by the space)."""

    def forward(self, parts: PartBatch) -> torch.Tensor:
        weighted = parts.embeddings * parts.weight.unsqueeze(-1).to(parts.embeddings.dtype)
        fused = torch.zeros(
            parts.num_items,
            parts.embeddings.shape[1],
            dtype=parts.embeddings.dtype,
            device=parts.embeddings.device,
        )
        return fused.index_add_(0, parts.item, weighted)  # (N, D)
