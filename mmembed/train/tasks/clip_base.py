"""A base for recipes on an open_clip ``Embedder``: its towers, its preprocessing, its tokenizer.

The towers that train are the embedder's own open_clip modules (``model.visual`` and
``model.text``), images go through the embedder's own preprocessing (training augmentations
act on the photo before it), texts through its own tokenizer, so what trains is what
``mmembed.load(OUTPUT/final)`` runs.
"""

from __future__ import annotations

from functools import cached_property
from typing import Any

import torch
from PIL import Image
from torch import Tensor, nn
from torchvision import transforms

from ...embedder import Embedder
from ...errors import InputError
from ...processors.image import load_image
from ..data import PairSide, Sample
from ..model import TINY, load_init, open_clip_train_model
from ..options import ClipOptions
from .base import Task


class ClipTask(Task):
    """Image tower embeds queries (photos); text tower embeds positives and negatives (captions).

    Subclasses use ``self.preprocess`` (the embedder's image preprocessing), ``self.image_size``,
    ``self.transform`` (augmentations, then that preprocessing) and ``self._tokens``.
    """

    Options = ClipOptions
    sides = {"query": "image", "positive": "text", "negative": "text"}
    default_init = TINY

    def build_model(self) -> Embedder:
        return open_clip_train_model(load_init(self.init, self.options.tiny), self.init)

    def build_towers(self) -> nn.ModuleDict:
        clip = self.model.towers["image"].model  # a CustomTextCLIP: image and text apart
        return nn.ModuleDict({"image": clip.visual, "text": clip.text})

    @property
    def preprocess(self):
        """The embedder's own image preprocessing: PIL -> (3, H, W)."""
        return self.model.towers["image"].preprocess

    @cached_property
    def image_size(self) -> int:
        return self.model.cfg.build.cfg.image_size  # an OpenCLIPCfg (open_clip_train_model)

    @cached_property
    def transform(self) -> transforms.Compose:
        """Training augmentations (when ``augment``) on the photo, then the preprocessing."""
        size = self.image_size
        augment = (
            [
                transforms.RandomResizedCrop(size, scale=(0.5, 1.0)),
                transforms.RandomHorizontalFlip(),
            ]
            if self.options.augment
            else []
        )
        return transforms.Compose([*augment, transforms.Lambda(self.preprocess)])

    def prepare(self, sample: Sample) -> dict[str, Any]:
        record = sample.record
        if not record.query.image:
            raise InputError(f"{type(self).__name__} needs an image query")
        image = load_image(record.query.image)
        prepared = {"query": self.augmented(image, sample.seed, self.transform)}
        prepared["positive"] = self._tokens(record.positive)
        if record.negatives:
            prepared["negative"] = [self._tokens(item) for item in record.negatives]
        return prepared

    @staticmethod
    def augmented(image: Image.Image, seed: int, transform) -> Tensor:
        with torch.random.fork_rng(devices=[]):  # augmentations depend on the sample seed only
            torch.manual_seed(seed)
            return transform(image)  # (3, H, W)

    def _tokens(self, item: PairSide) -> Tensor:
        if not item.text:
            raise InputError(f"{type(self).__name__} needs a caption text")
        return self.model.towers["text"].tokenizer([item.text])[0]  # (L,) the embedder's own
