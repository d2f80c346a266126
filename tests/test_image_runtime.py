"""open_clip image towers run an fp32 ONNX Runtime export inside ``encode`` by default
(``encoders.runtime``): same vectors as torch, checked before an export is published."""

from __future__ import annotations

import copy
import logging

import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data
from torch import nn


def photos() -> list[Image.Image]:
    return [Image.fromarray(a) for a in (data.chelsea(), data.rocket(), data.astronaut())]


def test_clip_images_run_the_export_by_default_with_torch_vectors(clip, monkeypatch):
    tower = clip.towers["image"]
    assert tower.runtime == "auto"
    with torch.no_grad():
        pixels = torch.stack([tower.preprocess(p) for p in photos()])
        expected = nn.functional.normalize(tower.model.encode_image(pixels), dim=-1).numpy()

    clip.encode(photos()[:1])  # exports on the first use on this machine (torch runs there)

    def refuse(*args, **kwargs):
        raise AssertionError("torch's visual ran under the default runtime")

    monkeypatch.setattr(tower.model.visual, "forward", refuse)
    assert np.abs(clip.encode(photos(), batch_size=2) - expected).max() <= 1e-5


def test_runtime_torch_and_a_failed_export(clip, monkeypatch, caplog):
    from mmembed.encoders import onnx_image

    model = copy.deepcopy(clip)
    expected = clip.encode(photos())
    model.towers["image"].set_runtime("torch")
    assert np.abs(model.encode(photos()) - expected).max() <= 1e-5

    tries = []

    def full_disk(*args):
        tries.append(args)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(onnx_image, "cached_visual_export", full_disk)
    model.towers["image"].set_runtime("auto")
    with caplog.at_level(logging.WARNING):
        for _ in range(2):
            assert np.abs(model.encode(photos()) - expected).max() <= 1e-5
    assert len(tries) == 1
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1 and "falls back to torch" in lines[0] and "No space left" in lines[0]


class TinyVisual(nn.Module):
    """(B, 3, 32, 32) -> (B, 8): a conv and a linear layer, shaped like open_clip's visual."""

    image_size = (32, 32)

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 8, stride=8)
        self.head = nn.Linear(64, 8)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.head(self.conv(pixels).flatten(1))


def test_an_export_that_differs_from_torch_is_never_published(tmp_path, monkeypatch):
    from mmembed.encoders import onnx_image
    from mmembed.encoders.onnx_text import session_of

    visual = TinyVisual().eval()
    folder = onnx_image.cached_visual_export(visual, tmp_path, "a" * 64)
    pixels = torch.randn(5, 3, 32, 32)
    got = session_of(folder / "model.onnx", 1).run(["embedding"], {"pixels": pixels.numpy()})[0]
    with torch.no_grad():
        assert np.abs(got - visual(pixels).numpy()).max() <= 1e-5
    assert onnx_image.cached_visual_export(visual, tmp_path, "a" * 64) == folder  # cached

    monkeypatch.setattr(onnx_image, "VISUAL_ATOL", -1.0)  # no graph can pass the check now
    with pytest.raises(ValueError, match="differs from torch"):
        onnx_image.cached_visual_export(visual, tmp_path, "b" * 64)
    assert not (tmp_path / "onnx" / ("b" * 32)).exists()
