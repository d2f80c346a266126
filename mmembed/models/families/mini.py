"""mmembed-mini: MiniLM text + an EfficientNet-Lite classifier through ConSE + a page tower."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from torch import nn

from ...embedder import Embedder, EmbedderCfg
from ...encoders.conse import ConSECfg, ConSEImageTower, class_embeddings
from ...encoders.efficientnet_lite import map_lukemelas_keys
from ...encoders.hf_text import HFTextCfg, HFTextTower
from ...encoders.ocr import OCRCfg, OCRPageTower
from ...encoders.pixel import PixelCfg, PixelTower, load_pixel_tower
from ...encoders.reader import LineReader, ReaderCfg, ReaderPageTower, load_reader, reader_cfg_from
from ...encoders.temporal import TemporalCfg, build_temporal
from ...hub import MissingWeightsError, load_state_dict, resolve
from ..family import Family, embedder_cfg, register_family, tuples
from ..zoo import PretrainedCfg
from .hf_text import saved_text_tower

logger = logging.getLogger(__name__)

PAGE_ROUTES = ("reader", "pixel", "ocr")
CLASSIFIERS = ("efficientnet_lite0", "efficientnet_lite1")  # timm names, lukemelas weights
WEIGHTS_NAME = "model.safetensors"  # models.save's weights file (the class count is read there)


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

    @classmethod
    def from_dict(cls, saved: dict[str, Any]) -> MiniCfg:
        """Read a saved config, folders from before each field included."""
        pixel, reader = saved.get("pixel"), saved.get("reader")
        return cls(
            conse=ConSECfg(**tuples(saved["conse"], ConSECfg)),
            pixel=PixelCfg.from_dict(pixel) if pixel is not None else None,
            page=saved.get("page", "pixel"),
            ocr=OCRCfg(**saved.get("ocr", {})),
            reader=reader_cfg_from(reader) if reader else None,
            classifier=saved.get("classifier", "efficientnet_lite0"),
        )


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


def build(entry: PretrainedCfg, precision: str = "fp32", page: str = "reader") -> Embedder:
    """all-MiniLM-L6-v2 text + EfficientNet-Lite1 via ConSE + a page tower; 384-d.

    Args:
        entry: the zoo entry (weights of the text tower and the classifier).
        precision: unused (``mmembed.load`` casts afterwards).
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
    classes = class_embeddings(text, cfg.conse)
    return mini_embedder(text, classifier, classes, cfg, embedder_cfg(entry, cfg), trained)


def rebuild(folder: Path, cfg: Any, towers: dict[str, dict], embedder_cfg: EmbedderCfg) -> Embedder:
    with safe_open(str(folder / WEIGHTS_NAME), framework="pt") as handle:
        classes = tuple(handle.get_slice("towers.image.class_embeddings").get_shape())
    return mini_embedder(
        saved_text_tower(folder, towers["text"]),
        efficientnet_lite(None, cfg.classifier),
        torch.zeros(classes),
        cfg,
        embedder_cfg,
    )


FAMILY = register_family(
    Family("mmembed_mini", build, rebuild, MiniCfg.from_dict, options=("page",))
)
