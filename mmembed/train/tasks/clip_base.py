"""A base for recipes on open_clip towers: tiny_clip's tiny model, or any named architecture.

Tests and demos build the tiny random model from the ``TinyClipOptions`` fields; a real run
names an open_clip architecture and pretrained tag, whose input size, normalisation and
tokenizer then replace the tiny ones.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import open_clip
from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD
from torch import Tensor, nn
from torchvision import transforms

from ...errors import InputError
from ..config import TrainConfig
from ..data import Item
from .tiny_clip import TinyClipOptions, TinyClipTask


@dataclass
class ClipOptions(TinyClipOptions):
    architecture: str | None = None  # open_clip architecture ("ViT-B-32"); None: the tiny model
    pretrained: str | None = None  # open_clip pretrained tag of ``architecture`` (None: random)


class ClipTask(TinyClipTask):
    """``TinyClipTask`` whose towers may come from a named open_clip architecture.

    Subclasses get ``self.normalize`` (the towers' pixel normalisation), ``self.tokenizer``
    (texts -> ``(B, L)`` token ids) and ``self.transform`` (training crops, as tiny_clip).
    """

    Options = ClipOptions

    def __init__(self, options: ClipOptions, config: TrainConfig):
        mean, std = OPENAI_DATASET_MEAN, OPENAI_DATASET_STD
        if options.architecture:
            size, mean, std = open_clip_preprocessing(options.architecture, options.pretrained)
            options = dataclasses.replace(options, image_size=size)
        super().__init__(options, config)
        self.normalize = transforms.Normalize(mean, std)
        self.transform.transforms[-1] = self.normalize  # tiny_clip's crops, these statistics
        self.tokenizer: Callable[[list[str]], Tensor] = (
            open_clip.get_tokenizer(options.architecture)
            if options.architecture
            else lambda texts: open_clip.tokenize(texts, context_length=options.context_length)
        )

    def build_towers(self) -> nn.ModuleDict:
        o = self.options
        if not o.architecture:
            return super().build_towers()
        clip = open_clip.create_model(
            o.architecture, pretrained=o.pretrained, force_custom_text=True
        )
        return nn.ModuleDict({"image": clip.visual, "text": clip.text})

    def _tokens(self, item: Item) -> Tensor:
        if not item.text:
            raise InputError(f"{type(self).__name__} needs a caption text")
        return self.tokenizer([item.text])[0]  # (L,)


def open_clip_preprocessing(architecture: str, pretrained: str | None) -> tuple[int, Any, Any]:
    """Input size, mean and std of an open_clip architecture (and pretrained tag)."""
    model_cfg = open_clip.get_model_config(architecture)
    if model_cfg is None:
        raise ValueError(f"unknown open_clip architecture {architecture!r}")
    size = model_cfg["vision_cfg"]["image_size"]
    size = size[0] if isinstance(size, list | tuple) else size
    tag_cfg = open_clip.get_pretrained_cfg(architecture, pretrained) if pretrained else {}
    mean = tag_cfg.get("mean") or OPENAI_DATASET_MEAN
    std = tag_cfg.get("std") or OPENAI_DATASET_STD
    return int(size), mean, std
