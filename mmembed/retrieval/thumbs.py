"""Small JPEG thumbnails for search results: photos, video keyframes, text and table cards."""

from __future__ import annotations

import io
import textwrap
from typing import Any

from PIL import Image, ImageDraw, ImageFont

from ..processors.image_modes import to_rgb

THUMBNAIL_SIZE = 160  # longest side, pixels
JPEG_QUALITY = 80
_CARD_BACKGROUND = (250, 250, 247)
_CARD_INK = (30, 30, 30)


def jpeg_bytes(image: Image.Image, size: int = THUMBNAIL_SIZE) -> bytes:
    """The image shrunk to ``size`` pixels on its longest side, as JPEG bytes."""
    thumbnail = to_rgb(image).copy()  # every Pillow mode; thumbnail() works in place
    thumbnail.thumbnail((size, size))
    buffer = io.BytesIO()
    thumbnail.save(buffer, format="JPEG", quality=JPEG_QUALITY)
    return buffer.getvalue()


def text_card(text: str, picture: Image.Image | None = None, size: int = THUMBNAIL_SIZE) -> bytes:
    """A card with the start of ``text`` (and a small ``picture`` on top), as JPEG bytes."""
    card = Image.new("RGB", (size, size), _CARD_BACKGROUND)
    top = 4
    if picture is not None:
        inset = to_rgb(picture).copy()
        inset.thumbnail((size - 8, size // 2))
        card.paste(inset, ((size - inset.width) // 2, top))
        top += inset.height + 4
    _draw_lines(card, textwrap.wrap(" ".join(text.split()), width=size // 7), top)
    return jpeg_bytes(card, size)


def table_card(frame: Any, size: int = THUMBNAIL_SIZE) -> bytes:
    """A preview of a DataFrame's header and first rows, as JPEG bytes."""
    columns = [str(column)[:8] for column in frame.columns[:4]]
    lines = [" | ".join(columns), "-" * min(size // 7, 3 + 11 * len(columns))]
    for row in frame.head(8).itertuples(index=False):
        lines.append(" | ".join(str(value)[:8] for value in list(row)[:4]))
    card = Image.new("RGB", (size, size), _CARD_BACKGROUND)
    _draw_lines(card, lines, 4)
    return jpeg_bytes(card, size)


def table_snippet(frame: Any, rows: int = 3) -> str:
    """A one-line text preview of a table: its columns and first rows."""
    head = ", ".join(str(column) for column in frame.columns[:8])
    body = "; ".join(
        ", ".join(str(value) for value in list(row)[:8])
        for row in frame.head(rows).itertuples(index=False)
    )
    return f"{len(frame)} rows; columns: {head}. {body}"[:300]


def _draw_lines(card: Image.Image, lines: list[str], top: int) -> None:
    draw = ImageDraw.Draw(card)
    font = ImageFont.load_default()
    line_height = 12
    for line in lines:
        if top + line_height > card.height:
            break
        draw.text((4, top), line, fill=_CARD_INK, font=font)
        top += line_height
