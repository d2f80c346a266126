"""Reading MMEB-format data: rows of a query and its candidate list, correct candidate first.

Layout (as in the MMEB-eval release on the hub)::

    DATA_DIR/<dataset>/test-*.parquet      (or DATA_DIR/<dataset>.jsonl)
    DATA_DIR/images/...                    image paths in the rows are relative to this folder

Fields per row: ``qry_text`` (str), ``qry_img_path`` (str, may be empty), ``tgt_text``
(list of str, or one str for all), ``tgt_img_path`` (list of str). mmembed also reads two
optional fields for MMEB-V2-style tasks: ``qry_video_path``/``tgt_video_path`` (a video file or
a folder of frames, relative to the video folder) and ``tgt_relevance`` (graded relevance per
candidate; without it, candidate 0 is the only correct one).

Texts carry MMEB's instruction and the Phi-3.5-V image placeholder ``<|image_1|>``. The
placeholder is removed and the image is placed where it stood, as an interleaved
``mmembed.Document``; each backbone's processor then inserts its own image token.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image as PILImage

from ..errors import InputError
from ..inputs import Document, Image, Input, Text, Video
from ..modality import IMAGE_EXTENSIONS

logger = logging.getLogger(__name__)

MEDIA_TOKEN = re.compile(r"<\|image_\d+\|>|<image>|<\|video_pad\|>|<video>")
"""Media placeholders in MMEB texts: Phi-3.5-V's ``<|image_1|>``, LLaVA's ``<image>``, and the
video placeholders of MMEB-V2."""


@dataclass(frozen=True)
class Item:
    """One query or candidate as stored in the data: the cache key for its embedding."""

    text: str  # the text as given, placeholder included
    image: str = ""  # image path relative to the image folder; "" for none
    video: str = ""  # video file or frame folder relative to the video folder; "" for none


@dataclass(frozen=True)
class Example:
    """One query with its candidates; ``relevance[i]`` grades candidate ``i``."""

    query: Item
    candidates: tuple[Item, ...]
    relevance: tuple[float, ...]


@dataclass(frozen=True)
class MediaRoots:
    """Where relative image and video paths are resolved."""

    images: Path
    videos: Path
    num_frames: int = 8  # frames sampled from a frame folder or video file


def find_dataset_files(data_dir: Path | str, name: str) -> list[Path]:
    """The files holding one dataset's rows; empty when the dataset is not present."""
    root = Path(data_dir)
    folder = root / name
    if folder.is_dir():
        files = sorted(folder.glob("test-*.parquet")) or sorted(folder.glob("test-*.jsonl"))
        if files:
            return files
    single = root / f"{name}.jsonl"
    return [single] if single.is_file() else []


def load_examples(files: Sequence[Path], max_queries: int | None = None) -> list[Example]:
    """Read rows from parquet/jsonl files, in file order.

    Args:
        files: from ``find_dataset_files``.
        max_queries: keep only the first rows (a quick partial run); None keeps all.

    Raises:
        ValueError: a row lacks a field or its candidate fields disagree in length.
    """
    examples: list[Example] = []
    for path in files:
        for number, row in enumerate(_read_rows(path)):
            if max_queries is not None and len(examples) >= max_queries:
                return examples
            try:
                examples.append(parse_row(row))
            except (KeyError, ValueError, TypeError) as error:
                raise ValueError(f"{path}: row {number}: {error}") from error
    return examples


def parse_row(row: dict[str, Any]) -> Example:
    """One MMEB row as an ``Example``."""
    query = Item(
        _text(row.get("qry_text")), _text(row.get("qry_img_path")), _text(row.get("qry_video_path"))
    )
    images = _as_list(row.get("tgt_img_path"))
    videos = _as_list(row.get("tgt_video_path"))
    texts = _as_list(row.get("tgt_text"))
    count = max(len(texts), len(images), len(videos))
    if count == 0:
        raise ValueError("no candidates (tgt_text, tgt_img_path and tgt_video_path are empty)")
    texts = _broadcast(texts, count, "tgt_text")
    images = _broadcast(images, count, "tgt_img_path")
    videos = _broadcast(videos, count, "tgt_video_path")
    candidates = tuple(Item(t, i, v) for t, i, v in zip(texts, images, videos, strict=True))
    grades = _as_list(row.get("tgt_relevance"))
    if grades:
        relevance = tuple(float(g) for g in _broadcast(grades, count, "tgt_relevance"))
    else:
        relevance = (1.0,) + (0.0,) * (count - 1)
    return Example(query, candidates, relevance)


def to_input(item: Item, roots: MediaRoots) -> Input:
    """The mmembed input for an item: Text, Image, Video, or an interleaved Document.

    The placeholder marks where the image goes (an image without one goes first); text that
    is empty once placeholders are removed is dropped; other text is kept as given, only
    stripped at its ends. A video is embedded alone by the video encoder: an
    ``mmembed.Document`` holds no video, so a video item's text (its instruction) is not used.

    Raises:
        InputError: a frame folder holds no readable frames.
    """
    if item.video:
        return _video(roots.videos / item.video, roots.num_frames)
    if not item.image:
        return Text(MEDIA_TOKEN.sub("", item.text).strip())
    image = Image(str(roots.images / item.image))
    parts = [part.strip() for part in MEDIA_TOKEN.split(item.text)]
    if len(parts) == 1:
        parts = ["", parts[0]]  # no placeholder: the image leads
    segments: list[Any] = []
    for index, part in enumerate(parts):
        if index == 1:
            segments.append(image)
        if part:
            segments.append(part)
    return image if len(segments) == 1 else Document(segments)


def _video(path: Path, num_frames: int) -> Video:
    if not path.is_dir():
        return Video(str(path), num_frames=num_frames)
    frames = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
    if not frames:
        raise InputError(f"frame folder {str(path)!r} holds no images")
    # Only the sampled frames are read; with exactly num_frames frames the video processor
    # keeps them all, so a frame folder embeds like the video file it came from.
    picks = segment_middles(len(frames), num_frames)
    return Video([_load_frame(frames[i]) for i in picks], num_frames=num_frames)


def segment_middles(num_total: int, num_frames: int) -> list[int]:
    """The middle index of each of ``num_frames`` equal segments of ``num_total`` frames
    (the first index when a segment is empty), the rule mmembed's video processor uses."""
    bounds = [i * num_total // num_frames for i in range(num_frames + 1)]
    return [
        (first + max(end - 1, first)) // 2
        for first, end in zip(bounds[:-1], bounds[1:], strict=True)
    ]


def _load_frame(path: Path) -> PILImage.Image:
    try:
        with PILImage.open(path) as frame:
            return frame.convert("RGB")
    except OSError as error:
        raise InputError(f"cannot read video frame {str(path)!r}: {error}") from error


def _read_rows(path: Path) -> list[dict[str, Any]]:
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        return pq.read_table(path).to_pylist()
    rows = []
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                rows.append(json.loads(line))
    return rows


def _text(value: Any) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise TypeError(f"expected a string, got {type(value).__name__}")
    return value


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value] if value else []
    return list(value)


def _broadcast(values: list[Any], count: int, name: str) -> list[Any]:
    if not values:
        return [""] * count
    if len(values) == 1 and count > 1 and name == "tgt_text":
        return values * count  # one text shared by all candidates
    if len(values) != count:
        raise ValueError(f"{name} has {len(values)} entries but there are {count} candidates")
    return [v if v is not None else "" for v in values]
