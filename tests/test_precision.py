"""bf16 towers stay within cosine 0.999 of fp32 on every modality."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import mmembed


@pytest.mark.parametrize("name", ["mmembed-mini", "open_clip:ViT-B-32"])
def test_bf16_keeps_cosine(name):
    items = [
        "a cat on a blanket",
        "assets/images/coffee.jpg",
        mmembed.Video("assets/videos/motorcycle_zoom.mp4", num_frames=4),
        mmembed.Table("assets/tables/planets.csv"),
    ]
    torch.manual_seed(0)
    exact = mmembed.load(name).encode(items)
    torch.manual_seed(0)
    fast = mmembed.load(name, precision="bf16")
    assert fast.cfg.precision == "bf16"
    cosine = (exact * fast.encode(items)).sum(axis=1)
    assert np.all(cosine >= 0.999), cosine


def test_unknown_precision_is_rejected(mini):
    from mmembed.space.precision import apply_precision

    with pytest.raises(ValueError, match="precision"):
        apply_precision(mini.towers["text"], "fp8")
