"""Recipe ``clip_realign``: tune CLIP's image tower for image retrieval, then realign the text.

After Schall et al., "Optimizing CLIP Models for Image Retrieval with Maintained
Joint-Embedding Alignment" (2024). Tuning the image tower alone for image-to-image retrieval
moves the image space away from the text tower, so text-to-image search breaks; the recipe
therefore runs in two stages, two configs chained by ``init`` (stage 2 starts from stage 1's
``final/``):

* ``stage: image``: two augmented views of a photo (or, with ``positive: class``, two photos
  sharing a caption or class label) are a positive pair; the text tower is frozen.
* ``stage: text``: the image tower is frozen and the text tower is trained with the
  image-text contrastive loss until captions find the new image embeddings again.

The pseudo-captions variant (``pseudo_captions: true`` in stage ``image``) adds each photo's
caption column (a captioner's output, or a class label through ``caption_template``) as a third
side with its own image-text term, so the text tower follows the image tower in one stage.

Each stage reports, before and after, in ``output_dir/eval.json``: image->image R@1 on
``eval_images`` (augmented views of each photo against the originals; use photos no stage
trains on) and text->image R@1 and R@5 on ``eval_captions`` (captions against their photos).
"""

from __future__ import annotations

import logging
import random
from collections import defaultdict
from functools import cached_property
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor, nn
from torchvision import transforms

from ...errors import InputError
from ...eval.metrics import mean_metrics
from ...processors.image import load_image
from ..config import DataConfig, TrainConfig
from ..data import PairDataset, PairSide, Sample, open_dataset
from ..distributed import DistEnv, gather_pairs
from ..options import ClipRealignOptions
from .base import register_task
from .clip_base import ClipTask

logger = logging.getLogger(__name__)

STAGES = ("image", "text")
POSITIVES = ("view", "class")
EVAL_SEED = 1_000_003  # evaluation views never reuse a training augmentation seed
EVAL_BATCH = 64  # images or texts per forward pass during evaluation


@register_task("clip_realign")
class ClipRealignTask(ClipTask):
    """Image tower on image pairs (stage ``image``) or text tower on captions (stage ``text``)."""

    Options = ClipRealignOptions

    def __init__(self, options: ClipRealignOptions, config: TrainConfig):
        _check_options(options)
        super().__init__(options, config)
        self.sides = _sides(options)
        self.classmates: dict[int, list[int]] = {}
        self.dataset: PairDataset | None = None
        self._eval_cache: dict[str, list[tuple[Image.Image, str]]] = {}

    # ------------------------------------------------------------------ towers and data

    @cached_property
    def view_transform(self) -> transforms.Compose:
        """An augmented view: crop, flip and colour jitter, then the embedder's preprocessing."""
        return transforms.Compose(
            [
                transforms.RandomResizedCrop(self.image_size, scale=(self.options.min_crop, 1.0)),
                transforms.RandomHorizontalFlip(),
                transforms.ColorJitter(0.3, 0.3, 0.3),
                transforms.Lambda(self.preprocess),
            ]
        )

    def eval_transform(self, image: Image.Image) -> Tensor:
        """A gallery photo as the embedder reads it."""
        return self.preprocess(image)

    def build_dataset(self) -> PairDataset:
        """Photos with captions; photos sharing a caption are classmates (``positive: class``)."""
        self.dataset = open_dataset(self.config.data)
        by_label: dict[str, list[int]] = defaultdict(list)
        for index, record in enumerate(self.dataset):
            by_label[record.positive.text or ""].append(index)
        self.classmates = {
            index: [m for m in members if m != index]
            for members in by_label.values()
            for index in members
        }
        return self.dataset

    def prepare(self, sample: Sample) -> dict[str, Any]:
        if self.options.stage == "text":
            return super().prepare(sample)  # image query, caption positive (and negatives)
        record = sample.record
        if not record.query.image:
            raise InputError("clip_realign needs an image per row")
        image = load_image(record.query.image)
        partner = image
        mates = self.classmates.get(sample.index) if self.options.positive == "class" else None
        if mates and self.dataset is not None:
            partner = load_image(self.dataset[random.Random(sample.seed).choice(mates)].query.image)
        prepared = {
            "query": self._view(image, sample.seed),
            "positive": self._view(partner, sample.seed + 1),
        }
        if self.options.pseudo_captions:
            prepared["caption"] = self._tokens(record.positive)
        return prepared

    def loss_parts(
        self, loss: nn.Module, embeddings: dict[str, Tensor], env: DistEnv
    ) -> dict[str, Tensor]:
        """Image-image parts, plus ``caption_*`` image-text parts in the pseudo-caption variant."""
        parts = super().loss_parts(loss, embeddings, env)
        if "caption" in embeddings:
            weight = self.options.pseudo_caption_weight
            for name, value in loss(
                gather_pairs(embeddings["query"], embeddings["caption"], None, env)
            ).items():
                parts[f"caption_{name}"] = weight * value if name.endswith("_loss") else value
        return parts

    def _view(self, image: Image.Image, seed: int) -> Tensor:
        return self.augmented(image, seed, self.view_transform)  # (3, H, W)

    def _tokens(self, item: PairSide) -> Tensor:
        text = self.options.caption_template.format(item.text) if item.text else None
        return super()._tokens(PairSide(text=text))

    # ------------------------------------------------------------------ evaluation

    def evaluate(self, towers: nn.ModuleDict) -> dict[str, float]:
        """Image->image R@1 on ``eval_images``; text->image R@1, R@5 on ``eval_captions``.

        The galleries are the tables' photos (resized, centre-cropped); image queries are
        ``eval_views`` augmented views of each photo, from seeds no training step uses.
        """
        o, metrics = self.options, {}
        device = next(towers.parameters()).device
        if o.eval_images:
            images = [image for image, _ in self._eval_table(o.eval_images)]
            gallery = _embed(towers["image"], [self.eval_transform(i) for i in images], device)
            queries = [
                self._view(image, EVAL_SEED + index * o.eval_views + view)
                for index, image in enumerate(images)
                for view in range(o.eval_views)
            ]
            owners = [index for index in range(len(images)) for _ in range(o.eval_views)]
            scores = _embed(towers["image"], queries, device) @ gallery.T  # (Q, N)
            metrics["image_to_image_r1"] = _mean_recall(scores, owners, 1)
        if o.eval_captions:
            table = self._eval_table(o.eval_captions)
            gallery = _embed(towers["image"], [self.eval_transform(i) for i, _ in table], device)
            texts = [self._tokens(PairSide(text=caption)) for _, caption in table]
            scores = _embed(towers["text"], texts, device) @ gallery.T  # (N, N)
            metrics["text_to_image_r1"] = _mean_recall(scores, list(range(len(table))), 1)
            metrics["text_to_image_r5"] = _mean_recall(scores, list(range(len(table))), 5)
        return metrics

    def _eval_table(self, data: DataConfig) -> list[tuple[Image.Image, str]]:
        """(image, caption) of every row of an image-caption data source; read once."""
        key = f"{data.format}:{data.path}"
        if key not in self._eval_cache:
            rows = [(load_image(r.query.image), r.positive.text or "") for r in open_dataset(data)]
            if len(rows) < 2:
                raise ValueError(f"evaluation data {key}: need at least 2 photos")
            self._eval_cache[key] = rows
        return self._eval_cache[key]


def _sides(options: ClipRealignOptions) -> dict[str, str]:
    if options.stage == "text":
        return {"query": "image", "positive": "text", "negative": "text"}
    sides = {"query": "image", "positive": "image"}
    if options.pseudo_captions:
        sides["caption"] = "text"
    return sides


def _check_options(options: ClipRealignOptions) -> None:
    if options.stage not in STAGES:
        raise ValueError(f"task_options.stage must be one of {STAGES}, got {options.stage!r}")
    if options.positive not in POSITIVES:
        raise ValueError(
            f"task_options.positive must be one of {POSITIVES}, got {options.positive!r}"
        )
    if options.pseudo_captions and options.stage != "image":
        raise ValueError("task_options.pseudo_captions applies to stage 'image' only")
    if options.eval_views < 1:
        raise ValueError(f"task_options.eval_views must be >= 1, got {options.eval_views}")


def _embed(tower: nn.Module, inputs: list[Tensor], device: torch.device) -> Tensor:
    """Unit embeddings ``(N, D)`` of stacked tower inputs, a batch at a time."""
    chunks = [
        tower(torch.stack(inputs[start : start + EVAL_BATCH]).to(device)).float()
        for start in range(0, len(inputs), EVAL_BATCH)
    ]
    return nn.functional.normalize(torch.cat(chunks), dim=-1)


def _mean_recall(scores: Tensor, targets: list[int], k: int) -> float:
    """Mean recall@k of each query row against its one target column (a tie is a miss)."""
    values = scores.double().cpu().numpy()
    relevance = np.eye(values.shape[1])[targets]
    return mean_metrics(values, relevance, (f"recall@{k}",), ties="pessimistic")[f"recall@{k}"]
