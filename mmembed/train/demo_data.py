"""A small captioned photo set from scikit-image, for recipes that must run anywhere offline.

The photos ship inside scikit-image (a test dependency), so no download is needed; each is
shrunk and written once with a caption, giving an image-caption table a recipe can train on.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

from ..hub.atomic import write_atomic

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


# Photos that are not in PHOTOS: an evaluation set no demo recipe trains on. (Only fixed
# images: binary_blobs, say, draws new blobs on every call.)
HELDOUT_PHOTOS = {
    "stereo_motorcycle": "a parked motorcycle",
    "logo": "the scikit-image logo",
    "gravel": "gravel on the ground",
    "cell": "a cell under a microscope",
    "microaneurysms": "blood vessels at the back of an eye",
    "horse": "the silhouette of a horse",
    "checkerboard": "a black and white checkerboard",
    "shepp_logan_phantom": "a phantom of a head scan",
}

# Overlapping corner windows (left, top, right, bottom as fractions) for write_demo_crops.
CROPS = ((0.0, 0.0, 0.6, 0.6), (0.4, 0.0, 1.0, 0.6), (0.0, 0.4, 0.6, 1.0), (0.4, 0.4, 1.0, 1.0))


def write_demo_photos(folder: str | Path, size: int = 96) -> Path:
    """Write the photos (at most ``size`` pixels a side) and ``pairs.csv`` once; return the CSV."""
    return _write_once(
        folder, lambda: {name: (_photo(name), c) for name, c in PHOTOS.items()}, size
    )


def write_heldout_photos(folder: str | Path, size: int = 96) -> Path:
    """Like :func:`write_demo_photos` for ``HELDOUT_PHOTOS``, to evaluate on unseen photos."""
    return _write_once(
        folder, lambda: {name: (_photo(name), c) for name, c in HELDOUT_PHOTOS.items()}, size
    )


def write_demo_crops(folder: str | Path, size: int = 96) -> Path:
    """Four overlapping crops of every demo photo, each captioned with its photo's caption.

    Sixty-four distinct images for image-to-image tuning (more instances than the sixteen
    photos, so a tiny model learns invariances rather than the photos); crops of one photo
    share a caption, which acts as a class label.
    """

    def rows() -> dict[str, tuple[Image.Image, str]]:
        found = {}
        for name, caption in PHOTOS.items():
            photo = _photo(name)
            width, height = photo.size
            for number, (left, top, right, bottom) in enumerate(CROPS):
                box = (
                    int(left * width),
                    int(top * height),
                    int(right * width),
                    int(bottom * height),
                )
                found[f"{name}_{number}"] = (photo.crop(box), caption)
        return found

    return _write_once(folder, rows, size)


def write_demo_videos(folder: str | Path, size: int = 64, frames: int = 16) -> Path:
    """A mixed video-image caption set: a pan-and-zoom clip of each demo photo, as MP4
    written with PyAV, plus the held-out photos as stills (images are 1-frame videos).

    Returns the ``pairs.csv`` whose ``image`` column names a video or an image file.
    """
    folder = Path(folder)
    table = folder / "pairs.csv"
    if table.is_file():
        return table
    folder.mkdir(parents=True, exist_ok=True)
    lines = ["image,caption"]
    for name, caption in PHOTOS.items():
        _write_mp4(folder / f"{name}.mp4", pan_zoom_frames(_photo(name), frames, size))
        lines.append(f"{name}.mp4,{caption}")
    for name, caption in HELDOUT_PHOTOS.items():
        image = _photo(name)
        image.thumbnail((size, size))
        image.save(folder / f"{name}.png")
        lines.append(f"{name}.png,{caption}")
    _write_text(table, "\n".join(lines) + "\n")
    logger.info("wrote %d demo clips and stills to %s", len(lines) - 1, folder)
    return table


# MMEB-train instructions (VLM2Vec's wording) for the two demo tasks.
I2T_QUERY = "<|image_1|> Find an image caption describing the given everyday image."
T2I_QUERY = "Find me an everyday image that matches the given caption: {}"
IMAGE_CANDIDATE = "<|image_1|> Represent the given image."


def write_demo_mmeb(folder: str | Path, size: int = 96) -> Path:
    """MMEB-train rows over real photos: image->caption and caption->image, hard negatives.

    Writes ``images/`` and ``train.jsonl`` with VLM2Vec's columns (``qry``,
    ``qry_image_path``, ``pos_text``, ``pos_image_path``, ``neg_text``, ``neg_image_path``).
    Each photo's hard negative is the next photo's caption (or image). Returns the table.
    """
    folder = Path(folder)
    table = folder / "train.jsonl"
    if table.is_file():
        return table
    captions = {**PHOTOS, **HELDOUT_PHOTOS}
    (folder / "images").mkdir(parents=True, exist_ok=True)
    for name in captions:
        image = _photo(name)
        image.thumbnail((size, size))
        image.save(folder / "images" / f"{name}.png")
    names = list(captions)
    rows = []
    for index, name in enumerate(names):
        partner = names[(index + 1) % len(names)]
        image, other = f"images/{name}.png", f"images/{partner}.png"
        rows.append(
            {
                "qry": I2T_QUERY,
                "qry_image_path": image,
                "pos_text": captions[name],
                "pos_image_path": "",
                "neg_text": captions[partner],
                "neg_image_path": "",
            }
        )
        rows.append(
            {
                "qry": T2I_QUERY.format(captions[name]),
                "qry_image_path": "",
                "pos_text": IMAGE_CANDIDATE,
                "pos_image_path": image,
                "neg_text": IMAGE_CANDIDATE,
                "neg_image_path": other,
            }
        )
    _write_text(table, "".join(json.dumps(row) + "\n" for row in rows))
    logger.info("wrote %d MMEB-train rows to %s", len(rows), table)
    return table


def pan_zoom_frames(photo: Image.Image, count: int, size: int) -> list[Image.Image]:
    """A square window that zooms in and drifts up the photo, like a slow camera move."""
    width, height = photo.size
    frames = []
    for step in range(count):
        t = step / max(count - 1, 1)
        side = min(width, height) * (1.0 - 0.4 * t)
        left = (width - side) / 2
        top = (height - side) * (1.0 - t)
        box = (left, top, left + side, top + side)
        frames.append(photo.resize((size, size), Image.Resampling.BILINEAR, box=box))
    return frames


def _write_mp4(path: Path, frames: list[Image.Image], fps: int = 8) -> None:
    """Encode frames with PyAV's always-bundled MPEG-4 part 2 codec."""
    import av

    def write(temporary: Path) -> None:
        with av.open(str(temporary), "w", format="mp4") as container:
            stream = container.add_stream("mpeg4", rate=fps)
            stream.width, stream.height = frames[0].size
            stream.pix_fmt = "yuv420p"
            for frame in frames:
                pixels = av.VideoFrame.from_ndarray(np.asarray(frame), "rgb24")
                container.mux(stream.encode(pixels))
            container.mux(stream.encode(None))

    write_atomic(path, write)


def _write_text(path: Path, text: str) -> None:
    write_atomic(path, lambda temporary: temporary.write_text(text, encoding="utf-8"))


def _photo(name: str) -> Image.Image:
    """A scikit-image sample as RGB (stereo pairs give their left view, masks become 0/255)."""
    import skimage.data  # imported here: only these demos need scikit-image

    pixels = getattr(skimage.data, name)()
    pixels = np.asarray(pixels[0] if isinstance(pixels, tuple) else pixels)
    if pixels.dtype == bool:
        pixels = pixels.astype(np.uint8) * 255
    return Image.fromarray(pixels).convert("RGB")


def _write_once(
    folder: str | Path, rows: Callable[[], dict[str, tuple[Image.Image, str]]], size: int
) -> Path:
    """Write ``rows()`` as PNGs plus ``pairs.csv`` unless the table exists; return the CSV."""
    folder = Path(folder)
    table = folder / "pairs.csv"
    if table.is_file():
        return table
    folder.mkdir(parents=True, exist_ok=True)
    lines = ["image,caption"]
    for name, (image, caption) in rows().items():
        image.thumbnail((size, size))
        image.save(folder / f"{name}.png")
        lines.append(f"{name}.png,{caption}")
    _write_text(table, "\n".join(lines) + "\n")  # a half-written table never looks complete
    logger.info("wrote %d demo photos to %s", len(lines) - 1, folder)
    return table
