"""VLM2Vec-style models: one ``sequence`` tower, a VLM that reads each item whole."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

from ...embedder import Embedder, EmbedderCfg
from ...encoders.temporal import TemporalCfg, build_temporal
from ...encoders.vlm import BACKBONES, VLMCfg, VLMTower
from ...hub import resolve
from ..family import Family, embedder_cfg, register_family, tuples
from ..zoo import UNSUPPORTED_MODEL_TYPES, PretrainedCfg


def vlm_embedder(cfg: VLMCfg, embedder_cfg: EmbedderCfg) -> Embedder:
    """The VLM of ``cfg`` as the one tower; ``embedder_cfg.build`` records ``cfg``."""
    tower = VLMTower(cfg)
    embedder_cfg.build = FAMILY.record(cfg)
    temporal = build_temporal(TemporalCfg(), tower.dim)
    return Embedder(embedder_cfg, towers={"sequence": tower}, temporal=temporal)


def is_vlm_folder(path: Path) -> bool:
    """Whether a transformers checkpoint folder holds a VLM of a known (or refused) backbone."""
    model_type = json.loads((path / "config.json").read_text()).get("model_type")
    return model_type in BACKBONES or model_type in UNSUPPORTED_MODEL_TYPES


def from_folder(path: Path) -> Embedder:
    """A transformers VLM checkpoint folder (``is_vlm_folder``)."""
    model_type = json.loads((path / "config.json").read_text())["model_type"]
    if model_type in UNSUPPORTED_MODEL_TYPES:
        raise ValueError(f"{path}: {UNSUPPORTED_MODEL_TYPES[model_type]}")
    return vlm_embedder(VLMCfg(path=str(path), backbone=model_type), EmbedderCfg(str(path)))


def build(entry: PretrainedCfg, precision: str = "fp32") -> Embedder:
    """A VLM zoo entry, loaded straight in ``precision`` (casting a 7B model after an fp32 load
    would double the peak memory): full weights, or (with ``base_source``) a LoRA adapter merged
    into the base VLM, the adapter folder holding the processor."""
    weights = resolve(entry.source, name=entry.name)
    adapter = None
    if entry.base_source is not None:
        adapter, weights = weights, resolve(entry.base_source, name=entry.name)
    image = entry.image
    cfg = VLMCfg(
        path=str(weights),
        backbone=entry.architecture,
        processor_path=str(adapter) if adapter else None,
        adapter_path=str(adapter) if adapter else None,
        dtype={"bf16": "bfloat16", "fp16": "float16"}.get(precision, "float32"),
        min_pixels=image.min_pixels if image else None,
        max_pixels=image.max_pixels if image else None,
        image_resize=image.presize if image else None,
        upscale_below=image.upscale_below if image else None,
        image_factor=image.resize_factor if image else None,
    )
    return vlm_embedder(cfg, embedder_cfg(entry, cfg))


def rebuild(folder: Path, cfg: Any, towers: dict[str, dict], embedder_cfg: EmbedderCfg) -> Embedder:
    files = str(folder / towers["sequence"]["files"])
    cfg = replace(cfg, path=files, processor_path=None, adapter_path=None, weights=False)
    return vlm_embedder(cfg, embedder_cfg)


FAMILY = register_family(
    Family("vlm", build, rebuild, lambda saved: VLMCfg(**tuples(saved, VLMCfg)))
)
