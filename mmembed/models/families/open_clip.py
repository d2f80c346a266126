"""open_clip models: zoo entries (pinned weights) and ``open_clip:`` names, one builder.

Both end in ``assemble``: the model of an ``encoders.open_clip.OpenCLIPCfg``, its weights
loaded strictly, towers over it. open_clip takes seconds to import, so it is imported on use.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict
from pathlib import Path
from typing import Any

from ...embedder import Embedder, EmbedderCfg
from ...encoders.temporal import TemporalCfg, build_temporal
from ...hub import resolve
from ..family import Family, embedder_cfg, register_family
from ..zoo import PretrainedCfg

logger = logging.getLogger(__name__)

PREFIX = "open_clip:"  # mmembed.load("open_clip:ARCH[/TAG]") and "open_clip:hf-hub:ORG/REPO"


def assemble(
    cfg: Any, weights: Path | None, hf_files: str | Path | None, embedder_cfg: EmbedderCfg
) -> Embedder:
    """The embedder of ``cfg`` (an ``OpenCLIPCfg``): ``weights`` loaded strictly (None:
    random or loaded later), the Hugging Face tokenizer (if any) read from ``hf_files``."""
    from ...encoders.open_clip import load_open_clip_weights, open_clip_model, open_clip_tokenizer

    model = open_clip_model(cfg)
    if weights is not None:
        load_open_clip_weights(model, weights)
    return over(model, open_clip_tokenizer(cfg.model_cfg, hf_files), cfg, embedder_cfg)


def over(model: Any, tokenizer: Any, cfg: Any, embedder_cfg: EmbedderCfg) -> Embedder:
    """An embedder whose text and image towers share the open_clip ``model`` built from ``cfg``."""
    from ...encoders.open_clip import open_clip_towers

    towers = open_clip_towers(model, tokenizer, cfg)
    temporal = build_temporal(TemporalCfg(), towers["image"].dim)
    return Embedder(embedder_cfg, towers=towers, temporal=temporal)


def build(entry: PretrainedCfg, precision: str = "fp32") -> Embedder:
    """A zoo entry: pinned weights, the entry's preprocessing."""
    from open_clip.transform import PreprocessCfg

    from ...encoders.open_clip import OpenCLIPCfg

    path = resolve(entry.source, name=entry.name)
    weights = path / entry.weights_file if path.is_dir() and entry.weights_file else path
    model_cfg = _model_cfg(entry.name, entry.architecture)
    if entry.quick_gelu:
        model_cfg["quick_gelu"] = True
    image = entry.image
    preprocess = PreprocessCfg(
        size=image.size,
        mean=image.mean,
        std=image.std,
        interpolation=image.interpolation,
        resize_mode=image.resize_mode,
    )
    cfg = OpenCLIPCfg(entry.architecture, model_cfg, preprocess)
    return assemble(cfg, weights, path if path.is_dir() else None, embedder_cfg(entry, cfg))


def build_named(name: str) -> Embedder:
    """``open_clip:ARCH`` (random weights), ``open_clip:ARCH/TAG`` (open_clip's registry and
    download) or ``open_clip:hf-hub:ORG/REPO``, through the same ``assemble`` as zoo entries."""
    spec = name.removeprefix(PREFIX)
    if spec.startswith("hf-hub:"):
        cfg, weights, hf_files = _from_hf_hub(spec.removeprefix("hf-hub:"))
    else:
        architecture, _, tag = spec.partition("/")
        cfg, weights, hf_files = _from_registry(name, architecture, tag or None)
    return assemble(cfg, weights, hf_files, EmbedderCfg(name=name, build=FAMILY.record(cfg)))


def _model_cfg(name: str, architecture: str) -> dict[str, Any]:
    import open_clip

    model_cfg = open_clip.get_model_config(architecture)
    if model_cfg is None:
        raise ValueError(f"{name}: open_clip has no architecture {architecture!r}")
    return model_cfg


def _from_registry(name: str, architecture: str, tag: str | None) -> tuple:
    import open_clip
    from open_clip.transform import PreprocessCfg, merge_preprocess_dict

    from ...encoders.open_clip import OpenCLIPCfg

    model_cfg = _model_cfg(name, architecture)
    preprocess = asdict(PreprocessCfg(size=model_cfg["vision_cfg"].get("image_size", 224)))
    weights = None
    if tag is None:
        logger.warning(
            "%s has no pretrained tag: weights are random (fine for tests and benchmarks, "
            "useless for search)",
            name,
        )
    else:
        pretrained = open_clip.get_pretrained_cfg(architecture, tag)
        if not pretrained:
            tags = open_clip.list_pretrained_tags_by_model(architecture)
            raise ValueError(
                f"{name}: open_clip has no tag {tag!r} for {architecture}; tags: {tags}"
            )
        weights = Path(open_clip.download_pretrained(pretrained))
        preprocess = merge_preprocess_dict(preprocess, pretrained)
        if pretrained.get("quick_gelu"):
            model_cfg["quick_gelu"] = True
    hf_files = model_cfg.get("text_cfg", {}).get("hf_tokenizer_name") or None
    return OpenCLIPCfg(architecture, model_cfg, PreprocessCfg(**preprocess)), weights, hf_files


def _from_hf_hub(repo: str) -> tuple:
    from huggingface_hub import hf_hub_download
    from open_clip.pretrained import download_pretrained_from_hf
    from open_clip.transform import PreprocessCfg, merge_preprocess_dict

    from ...encoders.open_clip import OpenCLIPCfg

    config = json.loads(Path(hf_hub_download(repo, "open_clip_config.json")).read_text())
    model_cfg = config["model_cfg"]
    preprocess = merge_preprocess_dict(asdict(PreprocessCfg()), config.get("preprocess_cfg", {}))
    preprocess["size"] = model_cfg["vision_cfg"].get("image_size", preprocess["size"])
    weights = Path(download_pretrained_from_hf(repo))
    hf_files = model_cfg.get("text_cfg", {}).get("hf_tokenizer_name") or None
    return OpenCLIPCfg(f"hf-hub:{repo}", model_cfg, PreprocessCfg(**preprocess)), weights, hf_files


def rebuild(folder: Path, cfg: Any, towers: dict[str, dict], embedder_cfg: EmbedderCfg) -> Embedder:
    text = towers["text"]
    return assemble(cfg, None, folder / text["files"] if "files" in text else None, embedder_cfg)


def read_cfg(saved: dict[str, Any]) -> Any:
    from ...encoders.open_clip import OpenCLIPCfg

    return OpenCLIPCfg.from_dict(saved)


FAMILY = register_family(Family("open_clip", build, rebuild, read_cfg))
