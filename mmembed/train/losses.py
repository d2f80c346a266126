"""Contrastive losses: take embeddings, return a dict of named parts.

Parts whose name ends in ``_loss`` are summed by the trainer into the training objective;
every part is logged. Losses normalise the embeddings themselves, so towers return raw
vectors and Matryoshka truncation happens before normalisation.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .config import LossConfig


@dataclass(frozen=True)
class PairEmbeddings:
    """What a contrastive loss sees: this process's rows and every process's rows.

    In one process the ``all_*`` tensors are the local ones. With several processes they are
    gathered with gradients, so a loss over local anchors against global candidates, scaled by
    ``weight``, gives after gradient averaging exactly the single-process full-batch gradient.
    """

    query: Tensor  # (B, D) this process's queries
    positive: Tensor  # (B, D) their matching documents
    all_query: Tensor  # (N, D) every process's queries, N = global batch
    all_positive: Tensor  # (N, D) every process's positives
    all_negative: Tensor | None = None  # (M, D) every process's hard negatives
    offset: int = 0  # row of this process's first query in all_query
    weight: float = 1.0  # B * world_size / N: turns a local mean into its share of the global mean

    @classmethod
    def single(
        cls, query: Tensor, positive: Tensor, negative: Tensor | None = None
    ) -> PairEmbeddings:
        """Embeddings of a single process: the local rows are all the rows."""
        return cls(query, positive, query, positive, negative)

    def truncate(self, dim: int) -> PairEmbeddings:
        """The first ``dim`` coordinates of every embedding (a Matryoshka prefix)."""
        if dim > self.query.shape[-1]:
            raise ValueError(f"cannot truncate {self.query.shape[-1]}-dim embeddings to {dim}")

        def cut(x: Tensor | None) -> Tensor | None:
            return None if x is None else x[..., :dim]

        return replace(
            self,
            query=cut(self.query),
            positive=cut(self.positive),
            all_query=cut(self.all_query),
            all_positive=cut(self.all_positive),
            all_negative=cut(self.all_negative),
        )


class InfoNCELoss(nn.Module):
    """Symmetric InfoNCE (CLIP loss) with in-batch and explicit hard negatives.

    Query to document: each query scores every positive in the global batch plus every hard
    negative (hard negatives are extra candidates shared by all queries). Document to query
    (when ``symmetric``): each positive scores every query. Needs ``PairEmbeddings``; see
    :class:`MatryoshkaLoss` to train several prefix dims at once.

    Args:
        temperature: softmax temperature at the start; the logit scale is ``1 / temperature``.
        learn_temperature: learn ``log(logit_scale)``; otherwise it is a fixed buffer.
        max_logit_scale: the clamp on the learned scale (CLIP: 100), applied by :meth:`post_step`.
        symmetric: add the document-to-query direction.
    """

    def __init__(
        self,
        temperature: float = 0.07,
        learn_temperature: bool = True,
        max_logit_scale: float = 100.0,
        symmetric: bool = True,
    ):
        super().__init__()
        if temperature <= 0 or 1.0 / temperature > max_logit_scale:
            raise ValueError(
                f"temperature {temperature} is below 1/max_logit_scale or not positive"
            )
        log_scale = torch.tensor(math.log(1.0 / temperature))
        if learn_temperature:
            self.log_logit_scale = nn.Parameter(log_scale)
        else:
            self.register_buffer("log_logit_scale", log_scale)
        self.max_log_logit_scale = math.log(max_logit_scale)
        self.symmetric = symmetric

    def forward(self, emb: PairEmbeddings) -> dict[str, Tensor]:
        scale = self.log_logit_scale.exp()
        query = F.normalize(emb.query, dim=-1)  # (B, D)
        candidates = (
            [emb.all_positive] if emb.all_negative is None else [emb.all_positive, emb.all_negative]
        )
        candidates = F.normalize(torch.cat(candidates), dim=-1)  # (N + M, D)
        labels = torch.arange(query.shape[0], device=query.device) + emb.offset  # (B,)

        query_logits = scale * query @ candidates.T  # (B, N + M)
        loss = F.cross_entropy(query_logits, labels, reduction="sum")
        if self.symmetric:
            positive = F.normalize(emb.positive, dim=-1)  # (B, D)
            doc_logits = scale * positive @ F.normalize(emb.all_query, dim=-1).T  # (B, N)
            loss = (loss + F.cross_entropy(doc_logits, labels, reduction="sum")) / 2
        # sum / B * weight == local mean share of the global mean; 0 rows give 0, not NaN.
        rows = max(query.shape[0], 1)
        accuracy = (query_logits.argmax(dim=-1) == labels).float().sum() / rows
        return {
            "contrastive_loss": loss / rows * emb.weight,
            "logit_scale": scale.detach(),
            "accuracy": accuracy.detach(),
        }

    @torch.no_grad()
    def post_step(self) -> None:
        """Clamp a learned scale to [1, max_logit_scale] after each optimizer step, as CLIP does."""
        if isinstance(self.log_logit_scale, nn.Parameter):
            self.log_logit_scale.clamp_(0.0, self.max_log_logit_scale)


class MatryoshkaLoss(nn.Module):
    """Applies a base loss to several embedding prefixes and weights the results.

    Each prefix is truncated, then renormalised by the base loss, so every prefix is a usable
    embedding on its own (Kusupati et al. 2022). Loss parts are renamed ``<part>_d<dim>_loss``
    and multiplied by the dim's weight; the sum over parts is the weighted sum over dims.

    Args:
        base: a loss taking :class:`PairEmbeddings`, e.g. :class:`InfoNCELoss`.
        dims: prefix sizes to train, e.g. ``[768, 256, 64]``.
        weights: one weight per dim (default: all 1).
    """

    def __init__(
        self, base: nn.Module, dims: Sequence[int], weights: Sequence[float] | None = None
    ):
        super().__init__()
        if not dims:
            raise ValueError("MatryoshkaLoss needs at least one dim")
        weights = list(weights) if weights else [1.0] * len(dims)
        if len(weights) != len(dims):
            raise ValueError(f"{len(dims)} dims but {len(weights)} weights")
        self.base = base
        self.dims = [int(d) for d in dims]
        self.weights = [float(w) for w in weights]

    def forward(self, emb: PairEmbeddings) -> dict[str, Tensor]:
        parts: dict[str, Tensor] = {}
        for dim, weight in zip(self.dims, self.weights, strict=True):
            for name, value in self.base(emb.truncate(dim)).items():
                if name.endswith("_loss"):
                    parts[f"{name.removesuffix('_loss')}_d{dim}_loss"] = weight * value
                else:
                    parts[f"{name}_d{dim}"] = value
        return parts

    def post_step(self) -> None:
        """Forward the base loss's post-step hook (e.g. temperature clamping)."""
        hook = getattr(self.base, "post_step", None)
        if hook is not None:
            hook()


def build_loss(config: LossConfig) -> nn.Module:
    """The loss a :class:`LossConfig` describes."""
    loss: nn.Module = InfoNCELoss(
        temperature=config.temperature,
        learn_temperature=config.learn_temperature,
        max_logit_scale=config.max_logit_scale,
        symmetric=config.symmetric,
    )
    if config.matryoshka_dims:
        loss = MatryoshkaLoss(loss, config.matryoshka_dims, config.matryoshka_weights or None)
    return loss


def total_loss(parts: dict[str, Tensor]) -> Tensor:
    """The training objective: the sum of the parts whose name ends in ``_loss``."""
    losses = [value for name, value in parts.items() if name.endswith("_loss")]
    if not losses:
        raise ValueError(f"loss returned no part ending in '_loss': {sorted(parts)}")
    return torch.stack(losses).sum()
