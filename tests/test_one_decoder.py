"""Training, MMEB frame folders and video frame lists read pixels with the library's decoder.

A 16-bit PNG made from a real photo: ``Image.convert("RGB")`` turns 89% of it white; every path
must give exactly ``processors.image.load_image``'s pixels instead.
"""

from __future__ import annotations

import numpy as np
import skimage.data
from PIL import Image

from mmembed.eval.data import _load_frame
from mmembed.processors.image import load_image
from mmembed.processors.video import decode_video
from mmembed.train.data import load_image as train_load_image


def _sixteen_bit_png(path):
    grey = np.asarray(Image.fromarray(skimage.data.astronaut()).convert("L"), dtype=np.uint16)
    Image.fromarray(grey * 257).save(path)  # (H, W) uint16 -> mode I;16
    return path


def test_every_path_reads_a_16_bit_png_as_encode_does(tmp_path):
    path = _sixteen_bit_png(tmp_path / "astronaut16.png")
    with Image.open(path) as raw:
        assert raw.mode.startswith("I")
        naive = np.asarray(raw.convert("RGB"))
    expected = np.asarray(load_image(path))
    assert (naive == 255).mean() > 0.85 and (expected == 255).mean() < 0.05  # 89% vs ~0%
    np.testing.assert_array_equal(np.asarray(train_load_image(str(path))), expected)
    np.testing.assert_array_equal(np.asarray(_load_frame(path)), expected)
    with Image.open(path) as frame:
        frames = decode_video([frame.copy(), frame.copy()], 2)
    for decoded in frames:
        np.testing.assert_array_equal(np.asarray(decoded), expected)
