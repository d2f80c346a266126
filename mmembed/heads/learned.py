"""A learned instruction head: gated fusion of an item's parts, then a linear map of the space.

It takes the same ``PartBatch`` as ``WeightedSumHead`` and returns the same ``(N, D)``
tensor, so it drops into an ``Embedder`` (``embedder.head = LearnedFusionHead.load(path)``).
Every learned piece starts neutral, so before training it returns exactly what the weighted
sum returns and a recipe that trains it (``mmembed.train``'s ``instruction_tuning``) starts
from the baseline:

* a gate per part, ``weight * 2 * sigmoid(g)`` with ``g = <w, part> + kind_bias[kind] +
  position_bias[position]``: it can learn, say, to quiet an instruction segment that follows
  an image, or to trust images more than text in documents; ``g = 0`` gives gate = weight;
* a square projection, identity at initialisation, applied to the fused vector.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from ..hub.atomic import write_atomic
from .fusion import PART_KINDS, PartBatch


@dataclass(frozen=True)
class LearnedHeadCfg:
    dim: int  # width of the part embeddings (and of the output)
    max_positions: int = (
        16  # document positions with their own gate bias; later ones share the last
    )
    num_kinds: int = len(PART_KINDS)  # part kinds with their own gate bias (PART_KINDS order)


class LearnedFusionHead(nn.Module):
    """Gated weighted sum of part embeddings and an identity-initialised projection.

    Args:
        cfg: sizes of the gate tables and of the embeddings.
    """

    def __init__(self, cfg: LearnedHeadCfg):
        super().__init__()
        self.cfg = cfg
        self.gate = nn.Linear(cfg.dim, 1)
        self.kind_bias = nn.Embedding(cfg.num_kinds, 1)
        self.position_bias = nn.Embedding(cfg.max_positions, 1)
        self.projection = nn.Linear(cfg.dim, cfg.dim, bias=False)
        for table in (
            self.gate.weight,
            self.gate.bias,
            self.kind_bias.weight,
            self.position_bias.weight,
        ):
            nn.init.zeros_(table)
        nn.init.eye_(self.projection.weight)

    def forward(self, parts: PartBatch) -> torch.Tensor:
        embeddings = parts.embeddings.float()  # (P, D)
        position = parts.position.clamp(max=self.cfg.max_positions - 1)
        logits = (
            self.gate(embeddings).squeeze(-1)
            + self.kind_bias(parts.modality).squeeze(-1)
            + self.position_bias(position).squeeze(-1)
        )  # (P,)
        gates = parts.weight.to(embeddings.dtype) * 2 * torch.sigmoid(logits)  # (P,)
        fused = torch.zeros(
            parts.num_items, embeddings.shape[1], dtype=embeddings.dtype, device=embeddings.device
        )
        fused = fused.index_add(0, parts.item, embeddings * gates.unsqueeze(-1))  # (N, D)
        return self.projection(fused)  # (N, D)

    def save(self, path: str | os.PathLike) -> Path:
        """Write weights and config to one safetensors file (config in its metadata)."""
        path = Path(path)
        state = {
            name: value.detach().cpu().contiguous() for name, value in self.state_dict().items()
        }
        metadata = {"config": json.dumps(dataclasses.asdict(self.cfg))}
        write_atomic(path, lambda temporary: save_file(state, temporary, metadata=metadata))
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> LearnedFusionHead:
        """A head written by :meth:`save`, in eval mode on the CPU."""
        with safe_open(str(path), framework="pt") as stream:
            metadata = stream.metadata() or {}
            if "config" not in metadata:
                raise ValueError(f"{path}: not a LearnedFusionHead file (no config metadata)")
            state = {name: stream.get_tensor(name) for name in stream.keys()}
        head = cls(LearnedHeadCfg(**json.loads(metadata["config"])))
        head.load_state_dict(state)
        return head.eval()
