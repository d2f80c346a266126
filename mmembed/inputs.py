"""Typed inputs: what a user hands to ``Embedder.encode``.

The classes only hold a source; decoding happens in ``mmembed.processors`` so that a bad
file fails inside ``encode`` with the item's index, not at construction.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image as PILImage

from .errors import InputError
from .modality import IMAGE_EXTENSIONS, TABLE_EXTENSIONS, VIDEO_EXTENSIONS, Modality

PathLike = str | os.PathLike


@dataclass(frozen=True)
class Text:
    """A piece of text."""

    text: str
    modality = Modality.TEXT


@dataclass(frozen=True)
class Image:
    """An image: a file path, a ``PIL.Image`` or an ``(H, W[, C])`` uint8 array."""

    source: PathLike | PILImage.Image | np.ndarray
    modality = Modality.IMAGE


@dataclass(frozen=True)
class Video:
    """A video file, or its frames (PIL images or arrays); ``num_frames`` are sampled uniformly."""

    source: PathLike | list
    num_frames: int = 8
    modality = Modality.VIDEO


@dataclass(frozen=True)
class Table:
    """A table: a ``pandas.DataFrame``, a CSV/TSV/Parquet path, or a list of row dicts."""

    source: Any
    modality = Modality.TABLE


@dataclass(frozen=True)
class Page:
    """A page seen as pixels (screenshot, scan, rendered text), embedded by a pixel tower."""

    source: PathLike | PILImage.Image | np.ndarray
    modality = Modality.PAGE

    @staticmethod
    def render(content: str | Table, **renderer_options: Any) -> Page:
        """Draw text or a table onto a page with mmembed's renderer."""
        from .processors.render import render_page

        return Page(render_page(content, **renderer_options))


Segment = str | Text | Image | Table


@dataclass(frozen=True)
class Document:
    """An ordered, interleaved list of segments: strings, ``Text``, ``Image`` and ``Table``."""

    segments: list[Segment] = field(default_factory=list)
    modality = Modality.DOCUMENT

    @classmethod
    def from_json(cls, path: PathLike, index: int | None = None) -> Document:
        """Read ``{"segments": [{"text": ...}, {"image": path}, {"table": path}]}``.

        Relative image and table paths are taken from the JSON file's folder.

        Args:
            path: the JSON file.
            index: the document's position in the caller's list, carried by errors.

        Raises:
            InputError: the file cannot be read or is not a segments document.
        """
        path = Path(path)
        try:
            spec = json.loads(path.read_text(encoding="utf-8"))
            raw = spec["segments"]
            if not isinstance(raw, list):
                raise TypeError(f"'segments' is a {type(raw).__name__}, not a list")
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise InputError(f"cannot read document {path}: {error!r}", index) from error
        kinds = {"text": Text, "image": Image, "table": Table}
        segments: list[Segment] = []
        for position, entry in enumerate(raw):
            if not isinstance(entry, dict) or len(entry) != 1 or next(iter(entry)) not in kinds:
                raise InputError(
                    f"document {path}: segment {position} must be one of "
                    '{"text": ...}, {"image": path}, {"table": path}',
                    index,
                )
            ((kind, value),) = entry.items()
            if kind != "text":
                value = str(path.parent / value)
            segments.append(kinds[kind](value))
        return cls(segments)


Input = Text | Image | Video | Table | Page | Document
INPUT_TYPES = (Text, Image, Video, Table, Page, Document)


def as_input(value: Any) -> Input:
    """Wrap a plain value in its typed input.

    A ``str`` is text unless it names an existing file with an image, video or table
    extension; a ``PIL.Image`` or ``Path`` is detected likewise.
    """
    if isinstance(value, INPUT_TYPES):
        return value
    if isinstance(value, PILImage.Image):
        return Image(value)
    if isinstance(value, (str, Path)):
        kind = _file_kind(value)
        if kind is not None:
            return kind(value)
        if isinstance(value, Path):
            raise InputError(f"path {str(value)!r} is not an existing image, video or table file")
        return Text(value)
    if isinstance(value, np.ndarray) and value.ndim in (2, 3):
        return Image(value)
    raise InputError(
        f"unsupported input type {type(value).__name__}; use str, PIL.Image or one of "
        "mmembed.Text/Image/Video/Document/Table/Page"
    )


def _file_kind(value: PathLike) -> type | None:
    text = str(value)
    if len(text) > 4096 or "\n" in text:
        return None
    suffix = Path(text).suffix.lower()
    kinds = [(IMAGE_EXTENSIONS, Image), (VIDEO_EXTENSIONS, Video), (TABLE_EXTENSIONS, Table)]
    for extensions, kind in kinds:
        if suffix in extensions and os.path.isfile(text):
            return kind
    return None
