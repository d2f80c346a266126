"""A small captioned photo set from scikit-image, for recipes that must run anywhere offline.

The photos ship inside scikit-image (a test dependency), so no download is needed; each is
shrunk and written once with a caption, giving an image-caption table a recipe can train on.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
from PIL import Image

logger = logging.getLogger(__name__)

# scikit-image loader name -> caption. Only images bundled with scikit-image (no download).
PHOTOS = {
    "astronaut": "a portrait of an astronaut in a space suit",
    "camera": "a man with a camera on a tripod",
    "coffee": "a cup of coffee on a saucer",
    "chelsea": "a photo of a tabby cat",
    "rocket": "a rocket on the launch pad",
    "coins": "old coins laid out in rows",
    "moon": "craters on the surface of the moon",
    "clock": "a clock on a wall",
    "hubble_deep_field": "galaxies in deep space",
    "immunohistochemistry": "stained tissue under a microscope",
    "retina": "a photo of the back of an eye",
    "text": "a printed page of text",
    "page": "a scanned page of a book",
    "colorwheel": "a color wheel with every hue",
    "grass": "a close up of grass",
    "brick": "a brick wall",
}


def write_demo_photos(folder: str | Path, size: int = 96) -> Path:
    """Write the photos (at most ``size`` pixels a side) and ``pairs.csv`` once; return the CSV."""
    folder = Path(folder)
    table = folder / "pairs.csv"
    if table.is_file():
        return table
    import skimage.data  # imported here: only this demo needs scikit-image

    folder.mkdir(parents=True, exist_ok=True)
    lines = ["image,caption"]
    for name, caption in PHOTOS.items():
        pixels = np.asarray(getattr(skimage.data, name)())
        image = Image.fromarray(pixels).convert("RGB")
        image.thumbnail((size, size))
        image.save(folder / f"{name}.png")
        lines.append(f"{name}.png,{caption}")
    temporary = table.with_suffix(".csv.tmp")
    temporary.write_text("\n".join(lines) + "\n", encoding="utf-8")
    os.replace(temporary, table)  # a half-written table never looks complete
    logger.info("wrote %d demo photos to %s", len(PHOTOS), folder)
    return table
