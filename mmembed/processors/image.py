"""Image loading that turns every decoder failure into an InputError naming the file."""

from __future__ import annotations

import io
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


def load_image(source: str | os.PathLike | bytes | Image.Image | np.ndarray) -> Image.Image:
    """An RGB ``PIL.Image`` from a path, an encoded file's bytes, a PIL image or an
    ``(H, W[, C])`` array."""
    if isinstance(source, Image.Image):
        return _to_rgb(source, "PIL image")
    if isinstance(source, np.ndarray):
        return _from_array(source)
    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        if not os.path.isfile(path):
            raise InputError(f"image file not found: {path}")
        return _decode(path, path)
    if isinstance(source, (bytes, bytearray, memoryview)):
        if not len(source):
            raise InputError("image bytes are empty")
        return _decode(io.BytesIO(source), "bytes")
    raise InputError(f"unsupported image source of type {type(source).__name__}")


def _decode(file: str | io.BytesIO, what: str) -> Image.Image:
    """Decode a file (a path or bytes) whole; too many pixels count as a decoding failure."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(file) as image:
                image.load()  # decode now: a truncated file fails here, not in a worker later
                return _to_rgb(image, what)
    except UnidentifiedImageError as error:
        if isinstance(file, str):
            raise InputError(f"cannot decode image {what}: {error}") from error
        # Pillow's message names the BytesIO object: say what it means instead.
        raise InputError(f"cannot decode image {what}: not an image format Pillow reads") from error
    except (*_DECODE_ERRORS, Image.DecompressionBombWarning) as error:
        raise InputError(f"cannot decode image {what}: {error}") from error


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


def image_size(data: bytes) -> tuple[int, int]:
    """``(width, height)`` from an encoded image's header, without decoding its pixels: lets a
    caller refuse an oversized image before anything decodes it.

    Raises:
        InputError: the bytes are not an image Pillow reads, or hold more than twice Pillow's
            pixel limit (then its ``__cause__`` is Pillow's ``DecompressionBombError``).
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                return image.size
    except UnidentifiedImageError as error:
        raise InputError("not an image format Pillow reads") from error
    except _DECODE_ERRORS as error:
        raise InputError(f"cannot read the image header: {error}") from error
