"""Recipe ``instruction_tuning``: train the learned instruction head on MMEB-train rows.

After VLM2Vec (Jiang et al., ICLR 2025), whose training data (MMEB-train) pairs an
instruction-bearing query (text, image, or both) with a positive and hard negatives. Here the
towers of a frozen embedder (``mmembed-mini`` by default) embed every distinct part once; the
parts are cached and only the :class:`~mmembed.heads.learned.LearnedFusionHead` trains, with
in-batch and hard negatives and GradCache. The head starts equal to the weighted sum, so step
0 is the baseline; the run writes the embedder with its trained head as ``final/``::

    embedder = mmembed.load("runs/instruction_tuning/final")

MMEB texts carry the instruction and the ``<|image_1|>`` placeholder; an item becomes a text,
an image, or a document with the image where the placeholder stood (``mmembed.eval.data``).
With ``eval_data`` the recipe reports hit@1 and MRR before and after training, ranking each
query's positive among every candidate of its kind (texts or images) in those rows.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ...batching import embed_parts
from ...embedder import Embedder
from ...errors import InputError
from ...eval.data import MediaRoots, Placeholders, RowItem, to_input
from ...eval.metrics import ranked_relevance, reciprocal_rank
from ...heads.fusion import PartBatch
from ...heads.learned import LearnedFusionHead, LearnedHeadCfg
from ...processors.plan import plan_item
from ..config import TrainConfig
from ..data import PairDataset, PairSide, Sample, open_dataset
from ..options import InstructionTuningOptions
from .base import Task, register_task

logger = logging.getLogger(__name__)

PART_FIELDS = ("embeddings", "weight", "position", "modality")  # per part, as in PartBatch
ItemParts = dict[str, Tensor]  # PART_FIELDS -> (K, D) / (K,) tensors of one item's K parts


class PartsTower(nn.Module):
    """Padded part embeddings of B items -> the head's ``(B, D)``.

    Input: ``PART_FIELDS`` tensors of shape ``(B, K, ...)`` and ``mask`` ``(B, K)``, True
    where a part is real; padding keeps each item's parts in one row, so GradCache can split
    the batch by items.
    """

    def __init__(self, head: nn.Module):
        super().__init__()
        self.head = head

    def forward(self, inputs: dict[str, Tensor]) -> Tensor:
        mask = inputs["mask"]  # (B, K)
        owner = torch.arange(mask.shape[0], device=mask.device).unsqueeze(1).expand_as(mask)
        parts = PartBatch(
            embeddings=inputs["embeddings"][mask],  # (P, D)
            item=owner[mask],
            weight=inputs["weight"][mask],
            position=inputs["position"][mask],
            modality=inputs["modality"][mask],
            num_items=mask.shape[0],
        )
        return self.head(parts)  # (B, D)


@register_task("instruction_tuning")
class InstructionTuningTask(Task):
    """The learned head embeds every side from cached part embeddings of a frozen embedder."""

    Options = InstructionTuningOptions
    sides = {"query": "head", "positive": "head", "negative": "head"}
    default_init = "mmembed-mini"

    def __init__(self, options: InstructionTuningOptions, config: TrainConfig):
        super().__init__(options, config)
        self.cache: dict[PairSide, ItemParts] = {}

    @property
    def embedder(self) -> Embedder:
        """The frozen embedder whose towers embed the parts (``init``; its head is not used)."""
        return self.model

    def build_model(self) -> Embedder:
        return super().build_model().to(self._device())

    def _device(self) -> str:
        return "cuda" if self.config.device != "cpu" and torch.cuda.is_available() else "cpu"

    def build_towers(self) -> nn.ModuleDict:
        """The head trains; it starts as the init embedder's head when that is a learned one."""
        cfg = LearnedHeadCfg(dim=self.embedder.dim, max_positions=self.options.max_positions)
        head = self.embedder.head
        if not isinstance(head, LearnedFusionHead) or head.cfg != cfg:
            head = LearnedFusionHead(cfg)
        return nn.ModuleDict({"head": PartsTower(head)})

    def final_model(self, towers: nn.ModuleDict) -> Embedder:
        """The init embedder's towers with the trained head (the init embedder is not changed)."""
        e = self.embedder
        cfg = dataclasses.replace(e.cfg)  # its own settings; the frozen Build is shared
        return Embedder(cfg, dict(e.towers), e.temporal, head=towers["head"].head, space=e.space)

    def build_dataset(self) -> PairDataset:
        """The rows, with every distinct item's parts embedded once into ``self.cache``."""
        dataset = open_dataset(self.config.data)
        self.cache_parts([item for r in dataset for item in (r.query, r.positive, *r.negatives)])
        return dataset

    def cache_parts(self, items: list[PairSide]) -> None:
        """Embed the parts of items not yet cached; unusable items are logged and left out."""
        todo = list(dict.fromkeys(item for item in items if item not in self.cache))
        if not todo:
            return
        embedder, planned, kept = self.embedder, [], []
        cfg = embedder.plan_cfg()
        for item in todo:
            try:
                planned.append(plan_item(as_mmembed_input(item), None, cfg))
                kept.append(item)
            except InputError as error:
                logger.warning("instruction_tuning: cannot use %s: %s", item, error.reason)
        size = self.options.embed_batch_size
        for start in range(0, len(kept), size):
            with torch.inference_mode():
                parts = embed_parts(
                    embedder.towers, embedder.temporal, planned[start : start + size], size,
                    embedder.device,
                )  # fmt: skip
            for offset, item in enumerate(kept[start : start + size]):
                rows = parts.item == offset
                self.cache[item] = {f: getattr(parts, f)[rows].cpu() for f in PART_FIELDS}
        logger.info("instruction_tuning: embedded the parts of %d items once", len(kept))

    def prepare(self, sample: Sample) -> dict[str, Any]:
        record = sample.record
        prepared: dict[str, Any] = {
            "query": self._parts(record.query),
            "positive": self._parts(record.positive),
        }
        if record.negatives:
            prepared["negative"] = [self._parts(item) for item in record.negatives]
        return prepared

    def _parts(self, item: PairSide) -> ItemParts:
        if item not in self.cache:
            raise InputError(f"no embedded parts for {item} (see the warnings when caching)")
        return self.cache[item]

    def stack(self, prepared: list[dict[str, Any]]) -> dict[str, Any]:
        """Per side, pad items to the side's most parts: ``PART_FIELDS`` plus ``mask``."""
        batch = {}
        for side in prepared[0] if prepared else ():
            items: list[ItemParts] = []
            for one in prepared:
                value = one[side]
                items.extend(value if isinstance(value, list) else [value])
            batch[side] = pad_parts(items)
        return batch

    def evaluate(self, towers: nn.ModuleDict) -> dict[str, float]:
        """hit@1 and MRR of each ``eval_data`` query's positive among its kind's candidates."""
        if self.options.eval_data is None:
            return {}
        rows = list(open_dataset(self.options.eval_data))
        self.cache_parts([item for r in rows for item in (r.query, r.positive, *r.negatives)])
        rows = [r for r in rows if all(i in self.cache for i in (r.query, r.positive))]
        hits, ranks = [], []
        for has_image in (False, True):
            group = [r for r in rows if bool(r.positive.image) == has_image]
            pool = list(
                dict.fromkeys(
                    i for r in group for i in (r.positive, *r.negatives) if i in self.cache
                )
            )
            if not group:
                continue
            queries = self._embed(towers, [r.query for r in group])  # (Q, D)
            scores = (queries @ self._embed(towers, pool).T).cpu().numpy()  # (Q, C)
            for row, values in zip(group, scores, strict=True):
                relevance = np.array([float(item == row.positive) for item in pool])
                ranked = ranked_relevance(values, relevance, ties="pessimistic")
                hits.append(float(ranked[0] > 0))
                ranks.append(reciprocal_rank(ranked))
        return {"hit_at_1": float(np.mean(hits)), "mrr": float(np.mean(ranks))}

    def _embed(self, towers: nn.ModuleDict, items: list[PairSide]) -> Tensor:
        """Unit head embeddings of cached items."""
        device = next(towers.parameters()).device
        batch = {
            key: value.to(device)
            for key, value in pad_parts([self.cache[i] for i in items]).items()
        }
        return nn.functional.normalize(towers["head"](batch), dim=-1)


def as_mmembed_input(item: PairSide, placeholders: Placeholders = "removed") -> Any:
    """An MMEB text (instruction and ``<|image_1|>`` placeholder) and image as an input.

    ``removed`` for towers without a media token (this recipe's), ``in_place`` for VLMs; see
    ``mmembed.eval.data.to_input``.
    """
    media = RowItem(item.text or "", item.image or "")
    return to_input(media, MediaRoots(Path(), Path()), placeholders)


def pad_parts(items: list[ItemParts]) -> dict[str, Tensor]:
    """Items of K_i parts each -> ``(B, max K_i, ...)`` tensors and a ``(B, K)`` mask."""
    longest = max(len(item["weight"]) for item in items)
    batch = {
        field: items[0][field].new_zeros((len(items), longest, *items[0][field].shape[1:]))
        for field in PART_FIELDS
    }
    batch["mask"] = torch.zeros(len(items), longest, dtype=torch.bool)
    for row, item in enumerate(items):
        count = len(item["weight"])
        for field in PART_FIELDS:
            batch[field][row, :count] = item[field]
        batch["mask"][row, :count] = True
    return batch
