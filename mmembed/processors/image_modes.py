"""Every Pillow image mode to 8-bit RGB, keeping what the picture shows.

``Image.convert("RGB")`` clips 16- and 32-bit greyscale to 255 (a 16-bit PNG turns white)
and drops alpha without compositing (transparent pixels show whatever colour they hold).
Here high-bit-depth pixels are rescaled to 0..255 and transparent ones laid on white.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

BACKGROUND = (255, 255, 255)  # what transparent pixels are laid on
_SIXTEEN_BIT = ("I;16", "I;16L", "I;16B", "I;16N")


def to_rgb(image: Image.Image) -> Image.Image:
    """An 8-bit RGB copy of ``image`` (any mode Pillow opens)."""
    if image.mode == "RGB":
        return image
    if image.mode in _SIXTEEN_BIT or image.mode in ("I", "F"):
        return _grey_to_rgb(image)
    if image.mode == "P" and "transparency" in image.info or image.mode == "PA":
        image = image.convert("RGBA")
    if image.mode in ("LA", "RGBA", "RGBa"):
        rgba = image.convert("RGBA")  # premultiplied modes are un-multiplied here
        background = Image.new("RGBA", rgba.size, (*BACKGROUND, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")  # L, 1, P, CMYK, YCbCr, LAB, HSV


def _grey_to_rgb(image: Image.Image) -> Image.Image:
    """Rescale a 16-bit, 32-bit integer or float greyscale image to 8 bits.

    16-bit modes span 0..65535. Modes I and F say nothing of their range: values within
    0..1 (float) or 0..255 are kept as they are, within 0..65535 read as 16-bit, anything
    else stretched from its minimum to its maximum.
    """
    values = np.asarray(image, dtype=np.float64)
    finite = values[np.isfinite(values)]
    low, high = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 0.0)
    if image.mode in _SIXTEEN_BIT or (low >= 0 and high > 255 and high <= 65535):
        scaled = values / 257.0
    elif image.mode == "F" and low >= 0 and high <= 1:
        scaled = values * 255.0
    elif low >= 0 and high <= 255:
        scaled = values
    else:
        scaled = (values - low) * (255.0 / (high - low)) if high > low else values * 0
    grey = np.clip(np.nan_to_num(scaled, nan=0.0), 0, 255).round().astype(np.uint8)
    return Image.fromarray(grey, "L").convert("RGB")
