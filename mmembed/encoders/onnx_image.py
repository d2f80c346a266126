"""The ConSE image tower as an ONNX graph: image queries of mmembed-mini without torch.

The graph is the whole tower (EfficientNet-Lite0 -> class probabilities -> top-T mix of the
class-name embeddings -> unit vector); the preprocessing is timm's eval transform written with
Pillow and numpy (short side to ``image_size / crop_pct`` with the same filter, centre crop,
scale to [0, 1], normalise), which gives the same pixels. The export folder holds::

    model.onnx       (B, 3, S, S) pixels -> (B, D) unit vectors
    onnx_image.json  OnnxImageCfg
    *.xxh3           each file's size and checksum, checked on open (``hub.verified``)

Outputs match the torch tower within 1e-5 on real photos (``tests/test_onnx_query.py``).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..hub import verified
from .engines import ort_session as session_of
from .onnx_export import ExportSpec, cache_folder, cached, export_checked

EXPORT_VERSION = 1  # bump when the exported graph or folder layout changes
CONFIG_NAME = "onnx_image.json"
_FILTERS = {"bicubic": 3, "bilinear": 2, "nearest": 0, "lanczos": 1}  # PIL.Image.Resampling


@dataclass(frozen=True)
class OnnxImageCfg:
    digest: str  # tower_digest of the exported tower (classifier and class embeddings)
    image_size: int  # side of the centre crop fed to the classifier
    crop_pct: float  # the short side is resized to image_size / crop_pct before the crop
    interpolation: str  # resampling filter of the resize ("bicubic", "bilinear", ...)
    mean: tuple[float, float, float]  # per-channel normalisation of [0, 1] pixels
    std: tuple[float, float, float]
    dim: int  # width of the output vectors
    version: int = EXPORT_VERSION  # layout version of the folder


def export_conse_tower(tower: Any, folder: Path, digest: str) -> Path:
    """Export a ``ConSEImageTower`` (normalisation included) to ``folder``, checked against
    torch within ``VISUAL_ATOL`` and published atomically (``onnx_export.export_checked``)."""
    import torch
    from torch import nn

    class Normalised(nn.Module):
        def __init__(self, tower: nn.Module):
            super().__init__()
            self.tower = tower

        def forward(self, pixels: torch.Tensor) -> torch.Tensor:
            return nn.functional.normalize(self.tower(pixels).float(), dim=-1)  # (B, D)

    conse = tower.cfg
    cfg = OnnxImageCfg(
        digest,
        conse.image_size,
        conse.crop_pct,
        conse.interpolation,
        tuple(conse.mean),
        tuple(conse.std),
        int(tower.dim),
    )
    sample = torch.zeros(2, 3, conse.image_size, conse.image_size)
    spec = ExportSpec(
        inputs=("pixels",),
        dynamic_axes={"pixels": {0: "batch"}, "embedding": {0: "batch"}},
        atol=VISUAL_ATOL,
    )
    check = check_pixels(3, conse.image_size, conse.image_size)
    model = Normalised(tower).eval()
    return export_checked(model, [sample], [check], folder, spec, asdict(cfg), CONFIG_NAME)


def check_pixels(count: int, height: int, width: int) -> Any:
    """(count, 3, H, W) seeded pixels in a normalised image's range, to check exports on."""
    import torch

    generator = torch.Generator().manual_seed(0)
    return torch.randn(count, 3, height, width, generator=generator)


def cached_conse_export(tower: Any, home: Path, digest: str) -> Path:
    """The ConSE tower's export under ``home/onnx/<digest prefix>``, written (atomically) on
    first use of this digest, and again when the cached one is damaged."""
    folder = cache_folder(home, digest)
    cfg = read_cfg(folder)
    if cfg is None or cfg.digest != digest:
        export_conse_tower(tower, folder, digest)
    return folder


VISUAL_CONFIG_NAME = "onnx_visual.json"
VISUAL_ATOL = 1e-5  # largest difference to torch (unit rows) an exported image tower may show


@dataclass(frozen=True)
class OnnxVisualCfg:
    digest: str  # tower_digest of the exported image model (open_clip's ``model.visual``)
    image_size: tuple[int, int]  # (H, W) of the pixels it takes
    version: int = EXPORT_VERSION  # layout version of the folder


def cached_visual_export(visual: Any, home: Path, digest: str) -> Path:
    """The export of an image model under ``home/onnx/<digest prefix>``, made on first use.

    ``visual`` maps (B, 3, H, W) pixels to (B, D) features (open_clip's ``model.visual``). The
    export is checked against torch on seeded pixels before it is published: a graph that
    traced wrong (within 1e-5 on unit rows, or not at all) raises and is never used.
    """
    folder = cache_folder(home, digest)
    if cached(folder, VISUAL_CONFIG_NAME, digest, EXPORT_VERSION) is not None:
        return folder
    height, width = visual_size(visual)
    cfg = OnnxVisualCfg(digest, (height, width))
    check = check_pixels(3, height, width)
    spec = ExportSpec(
        inputs=("pixels",),
        dynamic_axes={"pixels": {0: "batch"}, "embedding": {0: "batch"}},
        atol=VISUAL_ATOL,
        grad=True,  # nn.MultiheadAttention's fused inference kernel has no ONNX export
    )
    return export_checked(
        visual, [check[:2]], [check], folder, spec, asdict(cfg), VISUAL_CONFIG_NAME
    )


def visual_size(visual: Any) -> tuple[int, int]:
    """(H, W) of the pixels an open_clip image model takes."""
    size = getattr(visual, "preprocess_cfg", {}).get("size") or visual.image_size
    height, width = (size, size) if isinstance(size, int) else tuple(size)
    return int(height), int(width)


def drawn_images(count: int, seed: int) -> list:
    """``count`` seeded RGB scenes (a sky-to-ground gradient, discs, boxes and lines of many
    colours, then mild noise), for checking a quantised image engine against fp32 where no photo
    ships with the package. Different seeds give disjoint check and calibration sets."""
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(seed)
    images = []
    for _ in range(count):
        width, height = int(rng.integers(200, 400)), int(rng.integers(200, 400))
        top, bottom = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
        ramp = np.linspace(0, 1, height)[:, None, None]
        pixels = (top * (1 - ramp) + bottom * ramp) * np.ones((1, width, 1))
        image = Image.fromarray(pixels.astype(np.uint8), "RGB")
        draw = ImageDraw.Draw(image)
        for _ in range(int(rng.integers(3, 9))):
            x0, y0 = int(rng.integers(0, width - 20)), int(rng.integers(0, height - 20))
            x1, y1 = x0 + int(rng.integers(10, width // 2)), y0 + int(rng.integers(10, height // 2))
            colour = tuple(int(c) for c in rng.integers(0, 256, 3))
            shape = (draw.ellipse, draw.rectangle, draw.line)[int(rng.integers(0, 3))]
            if shape is draw.line:
                draw.line((x0, y0, x1, y1), fill=colour, width=int(rng.integers(2, 12)))
            else:
                shape((x0, y0, x1, y1), fill=colour)
        noisy = np.asarray(image, np.float32) + rng.normal(0, 6, (height, width, 3))
        images.append(Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8), "RGB"))
    return images


def read_cfg(folder: Path) -> OnnxImageCfg | None:
    """The export's config, or None when the folder holds no complete, intact export of this
    version (a damaged one is deleted, with a warning naming the file: see ``hub.verified``)."""
    if not verified.intact_folder(folder, (CONFIG_NAME, "model.onnx")):
        return None
    try:
        raw = json.loads((folder / CONFIG_NAME).read_text())
        cfg = OnnxImageCfg(**{**raw, "mean": tuple(raw["mean"]), "std": tuple(raw["std"])})
    except (OSError, ValueError, TypeError, KeyError):
        return None
    if cfg.version != EXPORT_VERSION or not (folder / "model.onnx").is_file():
        return None
    return cfg


def preprocess(image: Any, cfg: OnnxImageCfg) -> np.ndarray:
    """An RGB ``PIL.Image`` -> ``(3, S, S)`` float32, as timm's eval transform computes it."""
    scale = int(cfg.image_size / cfg.crop_pct)  # timm: floor(image_size / crop_pct)
    width, height = image.size
    if width <= height:
        size = (scale, int(scale * height / width))
    else:
        size = (int(scale * width / height), scale)
    if size != image.size:
        image = image.resize(size, _FILTERS[cfg.interpolation])
    width, height = image.size
    top = int(round((height - cfg.image_size) / 2.0))
    left = int(round((width - cfg.image_size) / 2.0))
    image = image.crop((left, top, left + cfg.image_size, top + cfg.image_size))
    pixels = np.asarray(image, dtype=np.float32) / np.float32(255)  # (S, S, 3)
    mean = np.asarray(cfg.mean, dtype=np.float32)
    std = np.asarray(cfg.std, dtype=np.float32)
    return ((pixels - mean) / std).transpose(2, 0, 1)


class OnnxImageEncoder:
    """Runs an exported ConSE tower: ``encode(images)`` -> ``(N, D)`` float32 unit rows."""

    def __init__(self, folder: Path, threads: int = 1):
        cfg = read_cfg(folder)
        if cfg is None:
            raise FileNotFoundError(f"no ONNX image export in {folder}")
        self.cfg = cfg
        self.session = session_of(folder / "model.onnx", threads)

    def encode(self, images: list) -> np.ndarray:
        pixels = np.stack([preprocess(image, self.cfg) for image in images])
        return self.session.run(["embedding"], {"pixels": pixels})[0].astype(np.float32)
