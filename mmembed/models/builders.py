"""Builders: a zoo entry or a typed config -> an ``Embedder``.

Every builder records itself in ``EmbedderCfg.extra["build"]`` (its name and its typed config as
a dict), which ``Embedder.save`` writes so that ``mmembed.load(dir)`` rebuilds the same stages.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..embedder import Embedder, EmbedderCfg
from ..encoders.conse import (
    ConSECfg,
    ConSEImageTower,
)
from ..encoders.conse import (
    class_embeddings as class_embeddings_of,
)
from ..encoders.efficientnet_lite import map_lukemelas_keys
from ..encoders.hf_text import HFTextCfg, HFTextTower
from ..encoders.ocr import OCRCfg, OCRPageTower
from ..encoders.pixel import PixelCfg, PixelTower, load_pixel_tower
from ..encoders.reader import LineReader, ReaderCfg, ReaderPageTower, load_reader
from ..encoders.temporal import TemporalCfg, build_temporal
from ..encoders.vlm import BACKBONES, VLMCfg, VLMTower
from ..hub import MissingWeightsError, load_state_dict, resolve
from .zoo import PretrainedCfg

# open_clip (all of it, CoCa included) and timm take seconds to import: each builder that needs
# them imports them, so loading mmembed-mini or a text model never pays for open_clip.

logger = logging.getLogger(__name__)

BUILD_KEY = "build"  # EmbedderCfg.extra key holding {"builder": name, "cfg": typed config dict}


def build_record(builder: str, cfg: Any) -> dict[str, Any]:
    """What ``Embedder.save`` writes to rebuild this embedder: the builder and its config."""
    return {BUILD_KEY: {"builder": builder, "cfg": asdict(cfg)}}


def _embedder_cfg(entry: PretrainedCfg, builder_cfg: Any) -> EmbedderCfg:
    return EmbedderCfg(
        name=entry.name,
        query_instruction=entry.query_instruction,
        document_instruction=entry.document_instruction,
        extra=build_record(entry.builder, builder_cfg),
    )


# -- mmembed-mini: MiniLM text + EfficientNet-Lite0 through ConSE + a pixel tower for pages -------


PAGE_ROUTES = ("reader", "pixel", "ocr")
CLASSIFIERS = ("efficientnet_lite0", "efficientnet_lite1")  # timm names, lukemelas weights


@dataclass(frozen=True)
class MiniCfg:
    conse: ConSECfg = field(default_factory=ConSECfg)  # how classifier outputs reach text space
    pixel: PixelCfg | None = None  # page tower (see encoders.pixel); None: no pixel tower
    # How pages are read: "reader" (line reader + text tower), "pixel" (the pixel tower) or
    # "ocr" (Tesseract + text tower). "pixel" for folders saved before the other routes.
    page: str = "pixel"
    ocr: OCRCfg = field(default_factory=OCRCfg)  # Tesseract settings of page="ocr"
    reader: ReaderCfg | None = None  # line reader of page="reader" (see encoders.reader)
    # ImageNet classifier ConSE reads; Lite0 for folders saved before Lite1 became the default.
    classifier: str = "efficientnet_lite0"

    def __post_init__(self) -> None:
        if self.page not in PAGE_ROUTES:
            raise ValueError(f"page must be one of {PAGE_ROUTES}, got {self.page!r}")
        if self.classifier not in CLASSIFIERS:
            raise ValueError(f"classifier must be one of {CLASSIFIERS}, got {self.classifier!r}")


def efficientnet_lite(weights: Path | None, name: str = "efficientnet_lite0") -> nn.Module:
    """timm ``efficientnet_liteN``, with the lukemelas-format ImageNet weights when given."""
    import timm

    model = timm.create_model(name, pretrained=False)
    if weights is not None:
        depths = [len(stage) for stage in model.blocks]
        model.load_state_dict(map_lukemelas_keys(load_state_dict(weights), depths), strict=True)
    return model.eval()


def mini_embedder(
    text: HFTextTower,
    classifier: nn.Module,
    class_embeddings: torch.Tensor,
    cfg: MiniCfg,
    embedder_cfg: EmbedderCfg,
    page: PixelTower | LineReader | None = None,
) -> Embedder:
    """The towers of ``cfg``; ``page`` is the trained pixel tower or line reader of ``cfg.page``
    (None: built empty, for loading)."""
    towers: dict[str, nn.Module] = {
        "text": text,
        "image": ConSEImageTower(classifier, class_embeddings, cfg.conse),
    }
    if cfg.page == "ocr":
        towers["page"] = OCRPageTower(text, cfg.ocr)
    elif cfg.page == "reader" and cfg.reader is not None:
        reader = page if isinstance(page, LineReader) else LineReader(cfg.reader)
        towers["page"] = ReaderPageTower(text, reader)
    elif cfg.pixel is not None:
        towers["page"] = page if page is not None else PixelTower(cfg.pixel)
    return Embedder(embedder_cfg, towers=towers, temporal=build_temporal(TemporalCfg(), text.dim))


def shipped_page_tower(route: str) -> PixelTower | LineReader | None:
    """The pixel tower or line reader shipped in ``mmembed/weights``; None for the OCR route,
    or when the files are missing."""
    try:
        return {"pixel": load_pixel_tower, "reader": load_reader}.get(route, lambda: None)()
    except MissingWeightsError as error:
        logger.info("mmembed-mini is built without its page tower: %s", error)
        return None


def build_mini(entry: PretrainedCfg, page: str = "reader") -> Embedder:
    """all-MiniLM-L6-v2 text + EfficientNet-Lite1 via ConSE + a page tower; 384-d.

    Args:
        entry: the zoo entry (weights of the text tower and the classifier).
        page: how pages are read (README, "Pages"): "reader", the shipped line reader + the
            text tower (reads unseen fonts, fast); "ocr", Tesseract + the text tower (needs
            the tesseract program); "pixel", the shipped pixel tower (reads only the layout
            it was trained on).
    """
    if page not in PAGE_ROUTES:
        raise ValueError(f"page must be one of {PAGE_ROUTES}, got {page!r}")
    trained = shipped_page_tower(page)
    # EfficientNet-Lite1 at 240 px: on the uncurated photos' dev half, text -> image R@1 0.818
    # against Lite0's 0.636 (scripts/eval_photos.py --variants; README, mmembed-mini).
    cfg = MiniCfg(
        conse=ConSECfg(image_size=entry.image.size),
        pixel=trained.cfg if isinstance(trained, PixelTower) else None,
        reader=trained.cfg if isinstance(trained, LineReader) else None,
        page=page,
        classifier="efficientnet_lite1",
    )
    text = HFTextTower(HFTextCfg(path=str(resolve(entry.source, name=entry.name))))
    classifier = efficientnet_lite(resolve(entry.base_source, name=entry.name), cfg.classifier)
    class_embeddings = class_embeddings_of(text, cfg.conse)
    embedder_cfg = _embedder_cfg(entry, cfg)
    return mini_embedder(text, classifier, class_embeddings, cfg, embedder_cfg, trained)


# -- open_clip ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class OpenCLIPBuildCfg:
    architecture: str  # open_clip model name the config comes from
    model_cfg: dict[str, Any]  # open_clip model config as built (QuickGELU included)
    preprocess: dict[str, Any]  # open_clip PreprocessCfg fields (size, mean, std, ...)


def open_clip_model(cfg: OpenCLIPBuildCfg) -> nn.Module:
    """The open_clip model of ``cfg.model_cfg`` with random weights, in eval mode."""
    import open_clip

    model_cfg = json.loads(json.dumps(cfg.model_cfg))  # a deep copy open_clip may edit
    text_cfg, vision_cfg = model_cfg.get("text_cfg", {}), model_cfg.get("vision_cfg", {})
    if "multimodal_cfg" in model_cfg:
        raise ValueError(f"{cfg.architecture}: CoCa models are not supported")
    hf_text = "hf_model_name" in text_cfg
    if hf_text:
        text_cfg["hf_model_pretrained"] = False  # weights come from the checkpoint, not the Hub
    if "timm_model_name" in vision_cfg:
        vision_cfg["timm_model_pretrained"] = False
    custom_text = model_cfg.pop("custom_text", False) or hf_text
    model_class = open_clip.CustomTextCLIP if custom_text else open_clip.CLIP
    return model_class(**model_cfg).eval()


def load_open_clip_weights(model: nn.Module, path: Path) -> None:
    """Read a checkpoint without unpickling code and load it strictly."""
    state = load_state_dict(path)
    if next(iter(state)).startswith("module."):
        state = {key.removeprefix("module."): value for key, value in state.items()}
    for key in ("logit_scale", "logit_bias"):  # some checkpoints store these as 0-d, some 1-d
        if key in state and hasattr(model, key):
            state[key] = state[key].reshape(getattr(model, key).shape)
    model.load_state_dict(state, strict=True)


def open_clip_tokenizer(model_cfg: dict[str, Any], hf_dir: Path | None):
    """The tokenizer ``open_clip.get_tokenizer`` would build, with HF files read from ``hf_dir``."""
    import open_clip

    text_cfg = model_cfg.get("text_cfg", {})
    context = text_cfg.get("context_length", 77)
    kwargs = dict(text_cfg.get("tokenizer_kwargs", {}))
    if text_cfg.get("hf_tokenizer_name"):
        if hf_dir is None:
            raise ValueError("this open_clip model needs its Hugging Face tokenizer files")
        return open_clip.tokenizer.HFTokenizer(
            str(hf_dir),
            context_length=context,
            tokenizer_mode=text_cfg.get("tokenizer_mode"),
            **kwargs,
        )
    return open_clip.tokenizer.SimpleTokenizer(context_length=context, **kwargs)


def open_clip_towers(
    model: nn.Module, tokenizer, cfg: OpenCLIPBuildCfg, embedder_cfg: EmbedderCfg
) -> Embedder:
    """Image and text towers over one open_clip model, preprocessing from ``cfg``."""
    import open_clip
    from open_clip.transform import PreprocessCfg, image_transform_v2

    from ..encoders.open_clip import OpenCLIPImageTower, OpenCLIPTextTower

    preprocess = image_transform_v2(PreprocessCfg(**cfg.preprocess), is_train=False)
    open_clip.model.set_model_preprocess_cfg(model, cfg.preprocess)
    image = OpenCLIPImageTower(model, preprocess)
    text = OpenCLIPTextTower(model, tokenizer)
    return Embedder(
        embedder_cfg,
        towers={"text": text, "image": image},
        temporal=build_temporal(TemporalCfg(), image.dim),
    )


def build_open_clip(entry: PretrainedCfg) -> Embedder:
    """An open_clip zoo entry: pinned weights, the entry's preprocessing."""
    import open_clip
    from open_clip.transform import PreprocessCfg

    path = resolve(entry.source, name=entry.name)
    weights = path / entry.weights_file if path.is_dir() and entry.weights_file else path
    model_cfg = open_clip.get_model_config(entry.architecture)
    if model_cfg is None:
        raise ValueError(f"{entry.name}: open_clip has no architecture {entry.architecture!r}")
    if entry.quick_gelu:
        model_cfg["quick_gelu"] = True
    image = entry.image
    preprocess = asdict(
        PreprocessCfg(
            size=image.size,
            mean=image.mean,
            std=image.std,
            interpolation=image.interpolation,
            resize_mode=image.resize_mode,
        )
    )
    cfg = OpenCLIPBuildCfg(entry.architecture, model_cfg, preprocess)
    model = open_clip_model(cfg)
    load_open_clip_weights(model, weights)
    tokenizer = open_clip_tokenizer(model_cfg, path if path.is_dir() else None)
    return open_clip_towers(model, tokenizer, cfg, _embedder_cfg(entry, cfg))


def open_clip_embedder(name: str) -> Embedder:
    """``open_clip:ARCH``, ``open_clip:ARCH/TAG`` or ``open_clip:hf-hub:ORG/REPO``."""
    from ..encoders.open_clip import (
        OpenCLIPCfg,
        OpenCLIPImageTower,
        OpenCLIPTextTower,
        create_open_clip,
    )

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
        EmbedderCfg(name=name, extra=_open_clip_record(cfg.architecture, model)),
        towers={"text": text, "image": image},
        temporal=build_temporal(TemporalCfg(), image.dim),
    )


def _open_clip_record(architecture: str, model: nn.Module) -> dict[str, Any]:
    """How to rebuild an ``open_clip:`` model offline (empty when open_clip cannot say)."""
    import open_clip
    from open_clip.transformer import QuickGELU

    model_cfg = open_clip.get_model_config(architecture)
    preprocess = getattr(model.visual, "preprocess_cfg", None)
    if model_cfg is None or preprocess is None:
        return {}
    if any(isinstance(module, QuickGELU) for module in model.modules()):
        model_cfg["quick_gelu"] = True
    return build_record("open_clip", OpenCLIPBuildCfg(architecture, model_cfg, dict(preprocess)))


# -- transformers text -------------------------------------------------------------------------


@dataclass(frozen=True)
class HFTextBuildCfg:
    pooling: str  # "mean", "cls" or "last"
    max_tokens: int  # window incl. special tokens


def hf_text_embedder(text: HFTextTower, embedder_cfg: EmbedderCfg) -> Embedder:
    return Embedder(
        embedder_cfg, towers={"text": text}, temporal=build_temporal(TemporalCfg(), text.dim)
    )


def _hf_text_record(text: HFTextTower) -> dict[str, Any]:
    return build_record("hf_text", HFTextBuildCfg(text.pooling, text.max_tokens))


def build_hf_text(entry: PretrainedCfg) -> Embedder:
    """A sentence-transformers / transformers text model from the zoo."""
    text = HFTextTower(HFTextCfg(path=str(resolve(entry.source, name=entry.name))))
    cfg = _embedder_cfg(entry, HFTextBuildCfg(text.pooling, text.max_tokens))
    return hf_text_embedder(text, cfg)


# -- VLM (VLM2Vec style) -----------------------------------------------------------------------


def vlm_embedder(cfg: VLMCfg, embedder_cfg: EmbedderCfg) -> Embedder:
    """One ``sequence`` tower: the VLM reads each item whole (see ``encoders.vlm``)."""
    tower = VLMTower(cfg)
    embedder_cfg.extra.update(build_record("vlm", cfg))
    return Embedder(
        embedder_cfg, towers={"sequence": tower}, temporal=build_temporal(TemporalCfg(), tower.dim)
    )


def build_vlm(entry: PretrainedCfg, dtype: str = "float32") -> Embedder:
    """A VLM zoo entry: full weights, or (with ``base_source``) a LoRA adapter merged into the
    base VLM, the adapter folder holding the processor."""
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
        dtype=dtype,
        min_pixels=image.min_pixels if image else None,
        max_pixels=image.max_pixels if image else None,
        image_resize=image.presize if image else None,
        upscale_below=image.upscale_below if image else None,
        image_factor=image.resize_factor if image else None,
    )
    return vlm_embedder(cfg, _embedder_cfg(entry, cfg))


# -- names and folders -------------------------------------------------------------------------

PRETRAINED_BUILDERS = {
    "mmembed_mini": build_mini,
    "open_clip": build_open_clip,
    "hf_text": build_hf_text,
    "vlm": build_vlm,
}


# Options a builder takes from ``mmembed.load(name, **options)``.
BUILDER_OPTIONS = {"mmembed_mini": ("page",)}


def build_pretrained(entry: PretrainedCfg, precision: str = "fp32", **options: Any) -> Embedder:
    """The ``Embedder`` of a zoo entry, downloading its weights if needed (and allowed).

    A VLM is loaded straight in ``precision``: casting a 7B model after an fp32 load would
    double the peak memory. Other models are cast by ``mmembed.load`` afterwards.

    Raises:
        ValueError: an option the entry's builder does not take.
    """
    if entry.builder not in PRETRAINED_BUILDERS:
        raise ValueError(f"{entry.name}: unknown builder {entry.builder!r}")
    allowed = BUILDER_OPTIONS.get(entry.builder, ())
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ValueError(f"{entry.name} takes no option {unknown}; it takes {list(allowed)}")
    if entry.builder == "vlm":
        dtype = {"bf16": "bfloat16", "fp16": "float16"}.get(precision, "float32")
        return build_vlm(entry, dtype=dtype)
    return PRETRAINED_BUILDERS[entry.builder](entry, **options)


def local_embedder(path: Path) -> Embedder:
    """A transformers checkpoint folder: a VLM of a known family, else a text model."""
    config_path = path / "config.json"
    if not config_path.is_file():
        raise ValueError(f"{path} is not a model directory (no config.json)")
    model_type = json.loads(config_path.read_text()).get("model_type")
    if model_type in BACKBONES:
        return vlm_embedder(VLMCfg(path=str(path), backbone=model_type), EmbedderCfg(str(path)))
    text = HFTextTower(HFTextCfg(path=str(path)))
    return hf_text_embedder(text, EmbedderCfg(name=str(path), extra=_hf_text_record(text)))
