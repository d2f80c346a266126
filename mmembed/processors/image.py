"""Image loading that turns every decoder failure into an InputError naming the file."""

from __future__ import annotations

import os
import warnings

import numpy as np
from PIL import Image, UnidentifiedImageError

from ..errors import InputError
from .image_modes import to_rgb

# PIL raises these for unreadable, truncated or hostile files.
_DECODE_ERRORS = (
    OSError,
    UnidentifiedImageError,
    SyntaxError,
    ValueError,
    Image.DecompressionBombError,
)


def load_image(source: str | os.PathLike | Image.Image | np.ndarray) -> Image.Image:
    """An RGB ``PIL.Image`` from a path, a PIL image or an ``(H, W[, C])`` array."""
    if isinstance(source, Image.Image):
        return _to_rgb(source, "PIL image")
    if isinstance(source, np.ndarray):
        return _from_array(source)
    if isinstance(source, (str, os.PathLike)):
        return _from_path(os.fspath(source))
    raise InputError(f"unsupported image source of type {type(source).__name__}")


def _from_path(path: str) -> Image.Image:
    if not os.path.isfile(path):
        raise InputError(f"image file not found: {path}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                image.load()  # decode now: a truncated file fails here, not in a worker later
                return _to_rgb(image, path)
    except (*_DECODE_ERRORS, Image.DecompressionBombWarning) as error:
        raise InputError(f"cannot decode image {path}: {error}") from error


def _to_rgb(image: Image.Image, what: str) -> Image.Image:
    if image.width == 0 or image.height == 0:
        raise InputError(f"{what} is empty ({image.width}x{image.height})")
    try:
        return to_rgb(image)
    except _DECODE_ERRORS as error:
        raise InputError(f"cannot convert {what} to RGB: {error}") from error


def _from_array(array: np.ndarray) -> Image.Image:
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[-1] not in (3, 4)):
        raise InputError(f"image array must be (H, W), (H, W, 3) or (H, W, 4), got {array.shape}")
    if array.size == 0:
        raise InputError(f"image array is empty, shape {array.shape}")
    if array.dtype != np.uint8:
        if not np.issubdtype(array.dtype, np.floating) or not np.isfinite(array).all():
            raise InputError(
                f"image array must be uint8 or finite floats in [0, 1], got {array.dtype}"
            )
        array = (np.clip(array, 0.0, 1.0) * 255).round().astype(np.uint8)
    return _to_rgb(Image.fromarray(array), "image array")
