"""Turn an index ``Item`` into an Embedder input, its thumbnail and a text snippet.

Decoding runs in worker threads (local engine) or Ray tasks, so the model only embeds
ready inputs. Every failure surfaces as ``InputError`` with a reason a user can act on.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

from PIL import Image as PILImage

from ..errors import InputError
from ..inputs import Document, Image, Input, Page, Table, Text, Video
from ..modality import Modality
from ..processors.image import load_image
from ..processors.text import check_text
from ..processors.video import decode_video
from . import thumbs
from .walk import HTML_EXTENSIONS, Item, is_pdf

SNIPPET_CHARS = 300
PAGE_SNIPPET_CHARS = 2000  # a page keeps more of its text: results show its first matching line
THUMBNAIL_DPI = 24  # pages read from their text layer are rendered only for a thumbnail
VIDEO_FRAMES = 8  # frames sampled per video (the Embedder's default)
_DECODE_ERRORS = (InputError, OSError, ValueError, KeyError, TypeError, RuntimeError)


@dataclass
class Decoded:
    """An item ready to embed.

    Attributes:
        input: the typed Embedder input, with pixels and tables already loaded.
        thumbnail: small JPEG bytes for result pages (None when there is nothing to show).
        snippet: a short text preview.
    """

    input: Input
    thumbnail: bytes | None
    snippet: str


def decoding(modality: Modality, path: str | None, route: str = "") -> str:
    """The decoding settings, besides the bytes, that shape an item's vector."""
    if modality is Modality.PAGE:
        from ..processors.pdf import PAGE_DPI

        return f"page/{route}/dpi={PAGE_DPI}" if is_pdf(path) else f"page/{route}"
    if modality is Modality.TEXT and path and Path(path).suffix.lower() in HTML_EXTENSIONS:
        return "text/html"
    if modality is Modality.VIDEO:
        return f"video/frames={VIDEO_FRAMES}"
    return modality.value


def cache_key(
    modality: Modality, path: str | None, content_hash: str, model: str, route: str = ""
) -> str:
    """What a vector is cached under: content, modality, decoding settings and model.

    The same bytes in a ``.txt`` and a ``.csv`` are different items; so are the same bytes
    embedded by two models, and a page read from its text layer or by the page tower.
    """
    parts = [content_hash, decoding(modality, path, route), model]
    return hashlib.sha256("\n".join(parts).encode("utf-8")).hexdigest()


def decode_item(item: Item) -> Decoded:
    """Load an item's content. Raises InputError naming what is wrong."""
    if item.modality is None:
        suffix = Path(item.path or "").suffix or "(no extension)"
        raise InputError(f"unsupported file type {suffix}")
    try:
        if item.value is not None:
            return _decode_input(item.value)
        if item.path is None:
            return _decode_inline_text(item.text or "")
        if os.path.getsize(item.path) == 0:
            raise InputError(f"empty {item.modality.value} file (0 bytes)")
        if item.page:
            return decode_pdf_page(item.path, item.page, item.route)
        return _DECODERS[item.modality](item.path)
    except InputError:
        raise
    except _DECODE_ERRORS as error:
        raise InputError(f"cannot read {item.modality.value} file: {error}") from error


def _decode_inline_text(text: str) -> Decoded:
    check_text(text)
    return Decoded(Text(text), thumbs.text_card(text), text[:SNIPPET_CHARS])


def _decode_image(path: str) -> Decoded:
    picture = load_image(path)
    return Decoded(Image(picture), thumbs.jpeg_bytes(picture), os.path.basename(path))


def _decode_page_image(path: str) -> Decoded:
    """A page image; its snippet is what the model's page tower reads on it (if it reads)."""
    picture = load_image(path)
    return Decoded(Page(picture), thumbs.jpeg_bytes(picture), "")


def decode_pdf_page(path: str, number: int, route: str) -> Decoded:
    """Page ``number`` of a PDF: its text layer (route "text") or its rendered pixels for the
    model's page route. The snippet is the text layer (empty on a scanned page)."""
    from ..processors.pdf import loaded_page, open_pdf, render, text_of

    with open_pdf(path) as document, loaded_page(document, number) as page:  # loaded once
        text = text_of(page)
        if route != "text":
            picture = render(page, number)
            return Decoded(Page(picture), thumbs.jpeg_bytes(picture), text[:PAGE_SNIPPET_CHARS])
        try:
            thumbnail = thumbs.jpeg_bytes(render(page, number, dpi=THUMBNAIL_DPI))
        except InputError:  # the words are what is embedded; the picture is only a preview
            thumbnail = thumbs.text_card(text)
    check_text(text)
    return Decoded(Document([Text(text)]), thumbnail, text[:PAGE_SNIPPET_CHARS])


def _decode_input(value: Input) -> Decoded:
    """An in-memory typed input, loaded and checked the way files are."""
    if isinstance(value, Text):
        return _decode_inline_text(value.text)
    if isinstance(value, (Image, Page)):
        picture = load_image(value.source)
        return Decoded(type(value)(picture), thumbs.jpeg_bytes(picture), "")
    if isinstance(value, Video):
        frames = [load_image(frame) for frame in value.source]
        if not frames:
            raise InputError("video has no frames")
        keyframe = frames[len(frames) // 2]
        return Decoded(Video(frames, value.num_frames), thumbs.jpeg_bytes(keyframe), "")
    if isinstance(value, Table):
        from ..processors.table import load_table

        frame = load_table(value.source)
        return Decoded(Table(frame), thumbs.table_card(frame), thumbs.table_snippet(frame))
    texts = [
        segment if isinstance(segment, str) else segment.text
        for segment in value.segments
        if isinstance(segment, (str, Text))
    ]
    snippet = " ".join(texts)[:SNIPPET_CHARS]
    return Decoded(value, thumbs.text_card(snippet), snippet)


def _decode_video(path: str) -> Decoded:
    frames = video_frames(path, VIDEO_FRAMES)
    keyframe = frames[len(frames) // 2]
    return Decoded(
        Video(frames, num_frames=len(frames)), thumbs.jpeg_bytes(keyframe), os.path.basename(path)
    )


def _decode_text_file(path: str) -> Decoded:
    with open(path, encoding="utf-8") as handle:
        text = handle.read()
    if Path(path).suffix.lower() in HTML_EXTENSIONS:
        text = html_to_text(text)
    return _decode_inline_text(text)


def _decode_table(path: str) -> Decoded:
    from ..processors.table import load_table  # pandas: imported when a table is read

    frame = load_table(path)
    return Decoded(Table(frame), thumbs.table_card(frame), thumbs.table_snippet(frame))


def _decode_document(path: str) -> Decoded:
    from ..processors.table import load_table

    with open(path, encoding="utf-8") as handle:
        data = json.load(handle)
    if not isinstance(data, dict) or not isinstance(data.get("segments"), list):
        raise InputError('JSON file is not a document: expected {"segments": [...]}')
    base = Path(path).resolve().parent
    segments: list = []
    texts: list[str] = []
    first_picture = None
    for number, segment in enumerate(data["segments"]):
        if not isinstance(segment, dict):
            raise InputError(f"segment {number} is not an object")
        if isinstance(segment.get("text"), str):
            segments.append(Text(segment["text"]))
            texts.append(segment["text"])
        elif isinstance(segment.get("image"), str):
            picture = load_image(base / segment["image"])
            first_picture = first_picture or picture
            segments.append(Image(picture))
        elif isinstance(segment.get("table"), str):
            frame = load_table(base / segment["table"])
            segments.append(Table(frame))
            texts.append(thumbs.table_snippet(frame))
        else:
            raise InputError(f"segment {number} has none of 'text', 'image', 'table'")
    if not segments:
        raise InputError("document has no segments")
    snippet = " ".join(texts)[:SNIPPET_CHARS]
    return Decoded(Document(segments), thumbs.text_card(snippet, first_picture), snippet)


_DECODERS = {
    Modality.IMAGE: _decode_image,
    Modality.VIDEO: _decode_video,
    Modality.TEXT: _decode_text_file,
    Modality.TABLE: _decode_table,
    Modality.DOCUMENT: _decode_document,
    Modality.PAGE: _decode_page_image,
}


def video_frames(path: str, num_frames: int) -> list[PILImage.Image]:
    """``num_frames`` frames sampled from a video by mmembed's video processor."""
    return decode_video(path, num_frames)


class _TextExtractor(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []
        self._skipping = 0

    def handle_starttag(self, tag: str, attrs: list) -> None:
        if tag in ("script", "style"):
            self._skipping += 1

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style") and self._skipping:
            self._skipping -= 1

    def handle_data(self, data: str) -> None:
        if not self._skipping:
            self.parts.append(data)


def html_to_text(markup: str) -> str:
    """The visible text of an HTML page (scripts and styles dropped)."""
    extractor = _TextExtractor()
    extractor.feed(markup)
    return " ".join(" ".join(extractor.parts).split())
