"""One item as a vision-language model reads it: an instruction and ordered, decoded segments.

A VLM tower (``mmembed.encoders.vlm``) embeds a whole item in one forward pass, so the planner
does not split an item into parts: it decodes every image and video of the item here, in the
worker threads, and keeps the segments in their order for the tower's prompt.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from PIL import Image as PILImage

from ..errors import InputError
from ..inputs import Document, Image, Input, Page, Table, Text, Video
from .image import load_image
from .text import check_text, check_unicode


@dataclass(frozen=True)
class Frames:
    """A decoded video: its sampled frames, in time order."""

    frames: tuple[PILImage.Image, ...]


Segment = str | PILImage.Image | Frames


@dataclass(frozen=True)
class SequenceItem:
    """An item for a VLM: the task instruction and the item's segments, in reading order."""

    instruction: str | None  # the task instruction the tower writes into the prompt
    segments: tuple[Segment, ...]  # text, decoded images and decoded videos

    @property
    def num_pixels(self) -> int:
        """Pixels of every image and frame: the shape key batches are grouped by."""
        total = 0
        for segment in self.segments:
            if isinstance(segment, PILImage.Image):
                total += segment.width * segment.height
            elif isinstance(segment, Frames):
                total += sum(frame.width * frame.height for frame in segment.frames)
        return total

    @property
    def num_chars(self) -> int:
        """Characters of text, instruction included."""
        text = sum(len(s) for s in self.segments if isinstance(s, str))
        return text + len(self.instruction or "")


def plan_sequence(
    item: Input, instruction: str | None, table_text: Callable[[object], str]
) -> SequenceItem:
    """Decode ``item`` into a ``SequenceItem``; ``table_text`` renders a loaded table as text."""
    segments = _segments(item, table_text)
    if not any(not isinstance(s, str) or s.strip() for s in segments):
        raise InputError("empty document")
    return SequenceItem(instruction or None, tuple(segments))


def _segments(item: Input, table_text: Callable[[object], str]) -> list[Segment]:
    if isinstance(item, Text):
        return [check_text(item.text)]
    if isinstance(item, (Image, Page)):
        return [load_image(item.source)]
    if isinstance(item, Video):
        return [_video(item)]
    if isinstance(item, Table):
        from .table import load_table

        return [table_text(load_table(item.source))]
    if isinstance(item, Document):
        return _document(item, table_text)
    raise InputError(f"unsupported input type {type(item).__name__}")


def _video(item: Video) -> Frames:
    from .video import decode_video

    if item.num_frames < 1:
        raise InputError(f"num_frames must be >= 1, got {item.num_frames}")
    frames = decode_video(item.source, item.num_frames)
    size = frames[0].size  # a VLM stacks a video's frames: give them one size
    return Frames(tuple(f if f.size == size else f.resize(size) for f in frames))


def _document(item: Document, table_text: Callable[[object], str]) -> list[Segment]:
    r"""A document's segments in order. A VLM reads videos inside a document too, and text is
    kept byte for byte: a segment of only whitespace (the ``\n`` after an MMEB placeholder)
    stays, since the tower's last token depends on it."""
    if not isinstance(item.segments, (list, tuple)):
        raise InputError("Document segments must be a list")
    segments: list[Segment] = []
    for position, segment in enumerate(item.segments):
        if isinstance(segment, str):
            segment = Text(segment)
        if isinstance(segment, Text) and isinstance(segment.text, str) and segment.text:
            segments.append(check_unicode(segment.text))
            continue
        if not isinstance(segment, (Text, Image, Table, Video)):
            raise InputError(
                f"document segment {position} has unsupported type {type(segment).__name__}; "
                "use str, Text, Image, Table or Video"
            )
        segments += _segments(segment, table_text)
    return segments
