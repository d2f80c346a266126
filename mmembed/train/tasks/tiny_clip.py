"""Recipe ``tiny_clip``: a small randomly initialised open_clip model on image-caption pairs.

It runs end to end on a CPU in seconds, which makes it the smoke test of the whole training
path (data, GradCache, checkpoints, logging) and the template for recipes on real models.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import open_clip
import torch
from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD
from open_clip.model import CustomTextCLIP
from torch import nn
from torchvision import transforms

from ...errors import InputError
from ..data import Item, Sample, load_image
from .base import Task, register_task


@dataclass
class TinyClipOptions:
    embed_dim: int = 64  # size of the shared embedding space
    image_size: int = 32  # square input resolution in pixels
    patch_size: int = 8  # vision transformer patch size in pixels
    width: int = 64  # transformer width of both towers
    layers: int = 2  # transformer blocks per tower
    heads: int = 2  # attention heads per block
    context_length: int = 16  # text tokens per caption (longer captions are cut)
    augment: bool = True  # random resized crop and horizontal flip of training images


@register_task("tiny_clip")
class TinyClipTask(Task):
    """Image tower embeds queries (photos); text tower embeds positives and negatives (captions)."""

    Options = TinyClipOptions
    sides = {"query": "image", "positive": "text", "negative": "text"}

    def __init__(self, options: TinyClipOptions, config: Any):
        super().__init__(options, config)
        size = options.image_size
        resize = (
            [
                transforms.RandomResizedCrop(size, scale=(0.5, 1.0)),
                transforms.RandomHorizontalFlip(),
            ]
            if options.augment
            else [transforms.Resize(size), transforms.CenterCrop(size)]
        )
        self.transform = transforms.Compose(
            [
                *resize,
                transforms.ToTensor(),
                transforms.Normalize(OPENAI_DATASET_MEAN, OPENAI_DATASET_STD),
            ]
        )

    def build_towers(self) -> nn.ModuleDict:
        o = self.options
        clip = CustomTextCLIP(
            embed_dim=o.embed_dim,
            vision_cfg={
                "image_size": o.image_size,
                "patch_size": o.patch_size,
                "width": o.width,
                "layers": o.layers,
                "head_width": o.width // o.heads,
            },
            text_cfg={
                "context_length": o.context_length,
                "width": o.width,
                "heads": o.heads,
                "layers": o.layers,
            },
        )
        return nn.ModuleDict({"image": clip.visual, "text": clip.text})

    def prepare(self, sample: Sample) -> dict[str, Any]:
        record = sample.record
        if not record.query.image:
            raise InputError("tiny_clip needs an image query")
        image = load_image(record.query.image)
        with torch.random.fork_rng(devices=[]):  # augmentations depend on the sample seed only
            torch.manual_seed(sample.seed)
            pixels = self.transform(image)  # (3, H, W)
        prepared = {"query": pixels, "positive": self._tokens(record.positive)}
        if record.negatives:
            prepared["negative"] = [self._tokens(item) for item in record.negatives]
        return prepared

    def _tokens(self, item: Item) -> torch.Tensor:
        if not item.text:
            raise InputError("tiny_clip needs a caption text")
        tokens = open_clip.tokenize([item.text], context_length=self.options.context_length)
        return tokens[0]  # (L,)
