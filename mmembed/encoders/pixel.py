"""Pixel tower: a small timm CNN that reads pages (rendered text, tables, screenshots) as pixels.

Trained by the ``pixel_text`` recipe to land rendered text on all-MiniLM-L6-v2's embedding of
the same text, so pages are searchable by text queries without OCR (Xiao et al. 2024, "Pixel
Sentence Representation Learning"; Rust et al. 2023, PIXEL, read text as pixels too).

Text pages are mostly blank, so the page is read in horizontal bands and blank bands are
skipped: a one-line page costs one band, not a whole page. Band features are averaged over
the page's inked bands, then projected to the text space.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import timm
import torch
from PIL import Image
from torch import nn

from ..hub import MissingWeightsError, load_state_dict
from ..processors.image_modes import to_rgb

logger = logging.getLogger(__name__)

# The shipped tower: mmembed/weights/<WEIGHTS_NAME>.{safetensors,json}, package data, so a
# wheel install has it as well as a source checkout.
WEIGHTS_NAME = "pixel_resnet10t.wordnet_minilm"
PACKAGE_WEIGHTS = Path(__file__).resolve().parents[1] / "weights"
LUMA = (0.299, 0.587, 0.114)  # ITU-R BT.601 weights: colour pages are read as grey


@dataclass(frozen=True)
class PixelCfg:
    """Architecture and page geometry of a pixel tower (saved next to its weights)."""

    architecture: str = "resnet10t"  # timm model name of the band encoder (one grey channel in)
    model_kwargs: dict[str, Any] = field(  # timm overrides: a narrow resnet10t by default
        default_factory=lambda: {"channels": [32, 64, 160, 320], "stem_width": 16}
    )
    dim: int = 384  # output width: the text space the tower is trained into
    page_width: int = 448  # pages are fitted (never enlarged) and padded to this size ...
    page_height: int = 448  # ... which is mmembed.Page.render's default page
    band_height: int = 56  # the page is read in bands of this many rows (two lines of 16 px text)
    ink_threshold: float = 0.05  # a band whose ink range (0..1) is below this is blank
    background: int = 255  # grey level of the padding added around smaller pages

    def __post_init__(self) -> None:
        if self.page_height % self.band_height:
            raise ValueError(
                f"page_height {self.page_height} is not a multiple of "
                f"band_height {self.band_height}"
            )

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PixelCfg:
        """Build from a saved dict, ignoring keys that describe training rather than the tower."""
        names = {f.name for f in fields(cls)}
        return cls(**{key: value for key, value in data.items() if key in names})


def fit_page(image: Image.Image, cfg: PixelCfg) -> Image.Image:
    """The page shrunk to fit the tower's page (keeping its aspect) and padded at the bottom-right.

    Rendered pages of the default size pass unchanged; smaller pages keep their scale, as text
    is read at the size it was trained on; larger ones shrink, so very large pages lose detail.
    """
    page = to_rgb(image)  # every Pillow mode, as images are read
    scale = min(cfg.page_width / page.width, cfg.page_height / page.height, 1.0)
    if scale < 1.0:
        size = (max(1, round(page.width * scale)), max(1, round(page.height * scale)))
        page = page.resize(size, Image.Resampling.BICUBIC)
    if page.size == (cfg.page_width, cfg.page_height):
        return page
    canvas = Image.new("RGB", (cfg.page_width, cfg.page_height), (cfg.background,) * 3)
    canvas.paste(page, (0, 0))
    return canvas


def page_to_tensor(image: Image.Image, cfg: PixelCfg) -> torch.Tensor:
    """(3, H, W) float tensor of a fitted page, values in [0, 1]; the training input too."""
    array = np.asarray(fit_page(image, cfg), dtype=np.float32) / 255.0  # (H, W, 3)
    return torch.from_numpy(array).permute(2, 0, 1)


class PixelTower(nn.Module):
    """ImageTower for pages: ``preprocess(PIL) -> (3, H, W)``, ``forward(pixels) -> (B, dim)``.

    Args:
        cfg: architecture and page geometry.
    """

    def __init__(self, cfg: PixelCfg):
        super().__init__()
        self.cfg = cfg
        self.dim = cfg.dim
        # num_classes=0: the backbone returns pooled (and, for ConvNeXt, normalised) features.
        self.backbone = timm.create_model(
            cfg.architecture, pretrained=False, num_classes=0, in_chans=1, **cfg.model_kwargs
        )
        self.proj = nn.Linear(self.backbone.num_features, cfg.dim)
        self.register_buffer("luma", torch.tensor(LUMA).view(1, 3, 1, 1), persistent=False)

    def preprocess(self, image: Image.Image) -> torch.Tensor:
        return page_to_tensor(image, self.cfg)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        # Ink, not brightness: the background is 0, so blank areas start out silent.
        ink = 1.0 - (pixels * self.luma.to(pixels.dtype)).sum(dim=1, keepdim=True)  # (B, 1, H, W)
        batch, _, height, width = ink.shape
        count = height // self.cfg.band_height
        bands = ink.reshape(batch * count, 1, self.cfg.band_height, width)  # (B * K, 1, h, W)
        inked = self._inked(bands).view(batch, count)  # (B, K)
        inked[:, 0] |= ~inked.any(dim=1)  # a blank page is read from its first band
        flat = inked.flatten()
        features = self.backbone(bands[flat])  # (N, C), N = inked bands
        per_band = features.new_zeros(batch * count, features.shape[1])
        per_band[flat] = features
        weights = inked.to(features.dtype).unsqueeze(-1)  # (B, K, 1)
        page = (per_band.view(batch, count, -1) * weights).sum(1) / weights.sum(1)  # (B, C)
        return self.proj(page)  # (B, dim)

    def _inked(self, bands: torch.Tensor) -> torch.Tensor:
        """(B * K,) True where a band holds more than a flat background."""
        flat = bands.flatten(1)
        return (flat.amax(dim=1) - flat.amin(dim=1)) > self.cfg.ink_threshold


# -- shipped weights ---------------------------------------------------------------------------


def weights_paths(name: str = WEIGHTS_NAME, folder: Path = PACKAGE_WEIGHTS) -> tuple[Path, Path]:
    """(weights, config) files of a saved pixel tower."""
    return folder / f"{name}.safetensors", folder / f"{name}.json"


def save_pixel_tower(
    tower: PixelTower, folder: Path, name: str, metadata: dict[str, Any], half: bool = True
) -> tuple[Path, Path]:
    """Write the weights (fp16 by default, to stay small) and a JSON config with ``metadata``."""
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    weights, config = weights_paths(name, folder)
    dtype = torch.float16 if half else torch.float32
    state = {
        key: value.detach().to(dtype).contiguous() for key, value in tower.state_dict().items()
    }
    save_file(state, str(weights))
    record = {"tower": asdict(tower.cfg), **metadata}
    config.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    return weights, config


def read_pixel_config(name: str = WEIGHTS_NAME, folder: Path = PACKAGE_WEIGHTS) -> dict[str, Any]:
    """The JSON record saved with a tower: ``tower`` (a PixelCfg) plus how it was trained."""
    _, config = weights_paths(name, folder)
    if not config.is_file():
        raise MissingWeightsError(
            f"pixel tower config {config} not found: the shipped tower is package data of "
            "mmembed (mmembed/weights/); reinstall mmembed, or pass the folder holding the files"
        )
    return json.loads(config.read_text(encoding="utf-8"))


def load_pixel_tower(name: str = WEIGHTS_NAME, folder: Path = PACKAGE_WEIGHTS) -> PixelTower:
    """The pixel tower saved as ``folder/name.{safetensors,json}`` (default: the shipped one).

    Raises:
        MissingWeightsError: the files are not there (for example in a wheel install).
    """
    record = read_pixel_config(name, folder)
    tower = PixelTower(PixelCfg.from_dict(record["tower"]))
    weights, _ = weights_paths(name, folder)
    state = {key: value.float() for key, value in load_state_dict(weights).items()}
    tower.load_state_dict(state, strict=True)
    return tower.eval()
