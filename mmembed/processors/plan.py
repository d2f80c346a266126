"""Turn one typed input into the parts its towers embed, decoding everything that needs it.

This is the whole processor stage of ``Embedder.encode``: it runs in worker processes
(``mmembed.preparation``), holds no weights, and raises ``InputError`` (without an index; the
embedder adds it) for bad input.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from PIL import Image as PILImage

from ..errors import InputError
from ..inputs import Document, Image, Input, Page, Table, Text, Video, as_input
from .image import load_image
from .pixels import raw_pixels
from .sequence import SequenceItem, plan_sequence
from .text import check_text, check_unicode, join_instruction

Payload = str | torch.Tensor | SequenceItem


@dataclass
class Part:
    """One thing a tower embeds: text, an image, a video's frames or a page."""

    kind: str  # "text" | "image" | "video" | "page" | "sequence"
    # str for text; (3, H, W) for image/page; (T, 3, H, W) for video; SequenceItem for a VLM.
    # Pixels are float and preprocessed, or uint8 and raw: the device preprocesses those.
    payload: Payload
    weight: float = 1.0  # share of the item's vector
    position: int = 0  # order of the segment inside a document


@dataclass
class PlanCfg:
    """How items are split into parts; the towers' own processing comes in as callables."""

    preprocess: dict[str, Callable[[PILImage.Image], torch.Tensor]]  # per image-like kind
    split_text: Callable[[str], list[str]]  # long text -> chunks that fit the text window
    table_chunks: Callable[[object], list[str]]  # a loaded table -> Markdown chunks
    instruction_weight: float = 1.0  # weight of an instruction that forms its own text part
    modalities: frozenset = field(default_factory=frozenset)  # part kinds the model can embed
    # Image-like kinds left as raw uint8 pixels, preprocessed in batches on the model's device.
    raw: frozenset = field(default_factory=frozenset)

    def pixels(self, kind: str, image: PILImage.Image) -> torch.Tensor:
        """``(3, H, W)``: preprocessed here, or raw uint8 when the device preprocesses ``kind``."""
        return raw_pixels(image) if kind in self.raw else self.preprocess[kind](image)

    def table_text(self, table: object) -> str:
        """A loaded table as one text (its Markdown chunks), for towers that read it whole."""
        return "\n\n".join(self.table_chunks(table))


@dataclass(frozen=True)
class Planned:
    """An item already turned into its parts, e.g. by the index's engine in a worker process."""

    parts: list[Part]
    instruction: str | None  # the instruction it was planned with


def plan_item(value: object, instruction: str | None, cfg: PlanCfg) -> list[Part]:
    """All parts of one item, decoded and preprocessed."""
    if isinstance(value, Planned):
        if value.instruction != instruction:
            raise ValueError("a Planned item was planned with another instruction")
        return value.parts
    item = as_input(value)
    if instruction:
        check_unicode(instruction, "instruction")
    if "sequence" in cfg.modalities:
        # A VLM tower reads the whole item, instruction included, as one sequence.
        return [Part("sequence", plan_sequence(item, instruction, cfg.table_text))]
    parts = _PLANNERS[type(item)](item, cfg)
    if instruction and not any(p.kind == "text" for p in parts):
        parts.append(Part("text", instruction, cfg.instruction_weight, len(parts)))
    elif instruction:
        first = next(p for p in parts if p.kind == "text")
        first.payload = join_instruction(instruction, first.payload)
    missing = {p.kind for p in parts} - cfg.modalities
    if missing:
        raise InputError(
            f"this model cannot embed {'/'.join(sorted(missing))} parts of a {type(item).__name__}"
        )
    return parts


def _image_part(kind: str, source: object, cfg: PlanCfg, position: int = 0) -> Part:
    if kind not in cfg.preprocess:
        raise InputError(f"this model cannot embed {kind} inputs")
    return Part(kind, cfg.pixels(kind, load_image(source)), position=position)


def _plan_text(item: Text, cfg: PlanCfg) -> list[Part]:
    # A single text is truncated by its tower, as sentence-transformers does.
    return [Part("text", check_text(item.text))]


def _plan_image(item: Image, cfg: PlanCfg) -> list[Part]:
    return [_image_part("image", item.source, cfg)]


def _plan_page(item: Page, cfg: PlanCfg) -> list[Part]:
    return [_image_part("page", item.source, cfg)]


def _plan_video(item: Video, cfg: PlanCfg) -> list[Part]:
    from .video import decode_video

    if "image" not in cfg.preprocess:
        raise InputError("this model cannot embed video inputs (it has no image tower)")
    if item.num_frames < 1:
        raise InputError(f"num_frames must be >= 1, got {item.num_frames}")
    frames = decode_video(item.source, item.num_frames)
    pixels = torch.stack([cfg.pixels("image", frame) for frame in frames])  # (T, 3, H, W)
    return [Part("video", pixels)]


def _chunk_parts(chunks: list[str], position: int, weight: float = 1.0) -> list[Part]:
    """Chunks of one segment share its weight, so a long segment counts once."""
    return [Part("text", chunk, weight / len(chunks), position) for chunk in chunks]


def _plan_table(item: Table, cfg: PlanCfg, position: int = 0) -> list[Part]:
    from .table import load_table

    return _chunk_parts(cfg.table_chunks(load_table(item.source)), position)


def _plan_document(item: Document, cfg: PlanCfg) -> list[Part]:
    if not isinstance(item.segments, (list, tuple)):
        raise InputError("Document segments must be a list")
    parts: list[Part] = []
    for position, segment in enumerate(item.segments):
        if isinstance(segment, str):
            segment = Text(segment)
        if isinstance(segment, Text):
            text = check_text(segment.text)
            parts += _chunk_parts(cfg.split_text(text) or [text], position)
        elif isinstance(segment, Image):
            parts.append(_image_part("image", segment.source, cfg, position))
        elif isinstance(segment, Table):
            parts += _plan_table(segment, cfg, position)
        else:
            raise InputError(
                f"document segment {position} has unsupported type {type(segment).__name__}; "
                "use str, Text, Image or Table"
            )
    if not parts:
        raise InputError("empty document")
    return parts


_PLANNERS: dict[type, Callable[[Input, PlanCfg], list[Part]]] = {
    Text: _plan_text,
    Image: _plan_image,
    Page: _plan_page,
    Video: _plan_video,
    Table: _plan_table,
    Document: _plan_document,
}
