"""CLIP-family towers through open_clip: any architecture, any pretrained tag."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import open_clip
import torch
from PIL import Image
from torch import nn

from ..processors.text import split_to_window

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class OpenCLIPCfg:
    architecture: str  # open_clip model name, e.g. "ViT-B-32" or "hf-hub:org/repo"
    pretrained: str | None = None  # open_clip pretrained tag or weights file; None = random weights


def create_open_clip(cfg: OpenCLIPCfg) -> tuple[nn.Module, object, object]:
    """(model, eval preprocess, tokenizer) in eval mode; random weights warn, as open_clip does."""
    if cfg.pretrained is None and not cfg.architecture.startswith("hf-hub:"):
        logger.warning(
            "open_clip:%s has no pretrained tag: weights are random (fine for tests and "
            "benchmarks, useless for search)",
            cfg.architecture,
        )
    model, _, preprocess = open_clip.create_model_and_transforms(
        cfg.architecture, pretrained=cfg.pretrained
    )
    tokenizer = open_clip.get_tokenizer(cfg.architecture)
    return model.eval(), preprocess, tokenizer


class OpenCLIPImageTower(nn.Module):
    def __init__(self, model: nn.Module, preprocess):
        super().__init__()
        self.model = model
        self._preprocess = preprocess
        self.dim = int(model.visual.output_dim)

    def preprocess(self, image: Image.Image) -> torch.Tensor:
        return self._preprocess(image)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.model.encode_image(pixels)


class OpenCLIPTextTower(nn.Module):
    def __init__(self, model: nn.Module, tokenizer):
        super().__init__()
        self.model = model
        self.tokenizer = tokenizer
        self.max_tokens = int(getattr(tokenizer, "context_length", 77))
        self.dim = int(model.visual.output_dim)  # CLIP towers share one output width

    def tokenize(self, texts: list[str]) -> dict[str, torch.Tensor]:
        return {"input_ids": self.tokenizer(texts)}

    def forward(self, tokens: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.model.encode_text(tokens["input_ids"])

    def count_tokens(self, texts: list[str]) -> list[int]:
        ids = self.tokenizer(texts)  # (B, context) with start/end tokens and zero padding
        return [max(int((row != 0).sum()) - 2, 1) for row in ids]

    def split_to_window(self, text: str) -> list[str]:
        return split_to_window(text, self.count_tokens, self.max_tokens - 2)
