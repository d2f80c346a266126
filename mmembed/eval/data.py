"""Reading MMEB-format data: rows of a query and its candidate list, correct candidate first.

Layout (as in the MMEB-eval release: parquet from the hub, images from its ``images.zip``)::

    DATA_DIR/<dataset>/test-*.parquet      (or DATA_DIR/<dataset>.jsonl)
    DATA_DIR/eval_images/<dataset>/...     ``unzip images.zip -d eval_images/``, as VLM2Vec's
                                           README does; DATA_DIR/images/ is read too

Required fields per row: ``qry_text`` (str), ``qry_img_path`` (str, may be empty),
``tgt_text`` (list of str), ``tgt_img_path`` (list of str, as long as ``tgt_text``). Two
optional fields serve MMEB-V2-style tasks: ``qry_video_path``/``tgt_video_path`` (a video file
or a folder of frames, relative to the video folder; either stands in for the matching image
column) and ``tgt_relevance`` (graded relevance per candidate; without it, candidate 0 is the
only correct one). Rows with ``qry_inst`` keep the instruction apart (MMEB_Test_Instruct's
layout) and are read by ``instruct_rows``. The reading is strict, so a malformed row can never change a score
silently: a missing column, a wrong type (a string where a list belongs, a null where a path
or text belongs), candidate lists of unequal length, or fewer candidates than the dataset
needs is a ``DataError`` naming the dataset, the file, the row and the field.

A dataset ranked against its whole corpus (MMEB-V2's ``eval_type: global``) may add the
candidates no row lists: ``DATA_DIR/<dataset>/corpus.jsonl``, one ``{"tgt_text": ...,
"tgt_img_path": ..., "tgt_video_path": ...}`` object (strings) per line.

Texts carry MMEB's instruction and the Phi-3.5-V image placeholder ``<|image_1|>``; how the
placeholder is read depends on the model (see ``to_input``).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from PIL import Image as PILImage

from ..errors import InputError
from ..inputs import Document, Image, Input, Text, Video
from ..modality import IMAGE_EXTENSIONS
from ..processors.image import load_image

logger = logging.getLogger(__name__)

MEDIA_TOKEN = re.compile(r"<\|image_\d+\|>|<image>|<\|video_pad\|>|<video>")
"""Media placeholders in MMEB texts: Phi-3.5-V's ``<|image_1|>``, LLaVA's ``<image>``, and the
video placeholders of MMEB-V2."""

REQUIRED_COLUMNS = ("qry_text", "qry_img_path", "tgt_text", "tgt_img_path")
"""Columns every MMEB-eval file has (VLM2Vec ``eval.py`` lines 84-97 and 159-162, ``v1``)."""

Columns = tuple[tuple[str, ...], ...]
"""Required columns: each group needs at least one of its columns."""

MMEB_COLUMNS: Columns = (
    ("qry_text",),
    ("qry_img_path", "qry_video_path"),
    ("tgt_text",),
    ("tgt_img_path", "tgt_video_path"),
)
"""MMEB (V1) files: the four columns; a video column may stand in for the image one."""

V2_COLUMNS: Columns = (
    ("qry_text", "qry_img_path", "qry_video_path"),
    ("tgt_text", "tgt_img_path", "tgt_video_path"),
)
"""MMEB-V2-style files: some query column and some candidate column."""


def _missing(columns: Columns, present: Any) -> str | None:
    for group in columns:
        if not any(column in present for column in group):
            return " or ".join(repr(column) for column in group)
    return None


Placeholders = Literal["in_place", "removed", "split"]
"""``in_place``: a VLM reads the text verbatim with the media where the placeholder stood;
``removed``: a model without media tokens reads the text without the placeholder; ``split``: a
VLM whose own MMEB code reads the instruction apart (Qwen3-VL-Embedding) reads an item's plain
text and media, its instruction given separately, where the rows keep them apart
(``instruct_rows``), else as ``in_place``."""


class DataError(ValueError):
    """A dataset file does not follow the MMEB format; the message names where."""


@dataclass(frozen=True)
class RowItem:
    """One query or candidate as stored in the data: the cache key for its embedding."""

    text: str  # the text as given, placeholder included
    image: str = ""  # image path relative to the image folder; "" for none
    video: str = ""  # video file or frame folder relative to the video folder; "" for none
    name: str = field(default="", compare=False)  # V2's candidate name, when a V2 reader set it
    instruction: str = ""  # the instruction kept apart (MMEB_Test_Instruct rows), for "split"
    plain: str | None = None  # the text without instruction, for "split"; None: not kept apart


@dataclass(frozen=True)
class Example:
    """One query with its candidates; ``relevance[i]`` grades candidate ``i``."""

    query: RowItem
    candidates: tuple[RowItem, ...]
    relevance: tuple[float, ...]
    row: int = 0  # row number in its dataset (0-based, over all files), for error messages


FrameRule = Literal["segments", "v2"]
"""How frames are picked from a frame folder: ``segments`` (mmembed's video processor: the middle
of each of N equal segments, repeats when there are fewer), ``v2`` (VLM2Vec-V2's
``sample_frames``: ``np.linspace(0, n - 1, N, dtype=int)``, and all frames, unpadded, when there
are fewer than N; ``src/utils/vision_utils/vision_utils.py`` lines 232-284 on ``main``)."""

V2_RESOLUTIONS: dict[str, tuple[int, int]] = {
    "high": (1344, 1344),
    "mid": (672, 672),
    "low": (128, 128),
}
"""VLM2Vec-V2's ``--image_resolution`` sizes (``base_eval_dataset.py`` lines 38-42 on ``main``);
its collator resizes every image and frame to the chosen size (``eval_collator.py`` lines
162-163). Its public eval scripts set none, so frames keep their size by default."""


@dataclass(frozen=True)
class MediaRoots:
    """Where relative image and video paths are resolved, and how frames are read."""

    images: Path
    videos: Path
    num_frames: int = 8  # frames sampled from a frame folder or video file
    frame_rule: FrameRule = "segments"  # how frames are picked from a frame folder
    frame_size: tuple[int, int] | None = None  # (width, height) every frame is resized to
    every_frame: bool = False  # a frame folder gives all its frames (V2's MomentSeeker)


def default_image_dir(data_dir: Path | str) -> Path:
    """``DATA_DIR/eval_images`` (the official unzip target) when it exists, else
    ``DATA_DIR/images``."""
    root = Path(data_dir)
    official = root / "eval_images"
    return official if official.is_dir() else root / "images"


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


@dataclass
class LoadedRows:
    """A dataset's parsed rows and the bad rows left out (only with ``skip_bad_rows``)."""

    examples: list[Example]
    skipped: list[str]  # one message per bad row that was left out
    corpus: list[RowItem] = field(default_factory=list)  # extra candidates (corpus.jsonl)


def load_examples(
    files: Sequence[Path],
    max_queries: int | None = None,
    dataset: str = "",
    skip_bad_rows: bool = False,
    columns: Columns = MMEB_COLUMNS,
    min_candidates: int = 2,
) -> LoadedRows:
    """Read rows from parquet/jsonl files, in file order.

    Args:
        files: from ``find_dataset_files``.
        max_queries: keep only the first rows (a quick partial run); None keeps all.
        dataset: the dataset's name, for messages.
        skip_bad_rows: leave out rows with a wrong field (counted in ``skipped``) instead of
            raising; a missing column always raises.
        columns: the required columns (``MMEB_COLUMNS`` or ``V2_COLUMNS``).
        min_candidates: fewer candidates in a row is an error (a row with one candidate is a
            free hit when it is ranked on its own); 1 for corpus-wide ranking.

    Raises:
        DataError: a file lacks a required column, or (without ``skip_bad_rows``) a row has a
            field of the wrong type or candidate fields that disagree in length.
    """
    loaded = LoadedRows([], [])
    number = 0
    for path in files:
        for row in _read_rows(path, dataset, columns):
            if max_queries is not None and number >= max_queries:
                return loaded
            missing = _missing(columns, row) if "qry_inst" not in row else None
            if missing:
                raise DataError(
                    f"{dataset}: {path}: row {number}: missing required column {missing}"
                )
            try:
                example = parse_row(row, number, {g[0] for g in columns}, dataset)
                if len(example.candidates) < min_candidates:
                    raise _FieldError(
                        "tgt_text",
                        f"{len(example.candidates)} candidate(s), fewer than "
                        f"{min_candidates}: the row would score without ranking anything "
                        "(--allow-trivial accepts it)",
                    )
                loaded.examples.append(example)
            except _FieldError as error:
                message = f"{dataset}: {path}: row {number}: field {error.field!r}: {error.reason}"
                if not skip_bad_rows:
                    raise DataError(message) from None
                logger.warning("skipping a bad row: %s", message)
                loaded.skipped.append(message)
            number += 1
    return loaded


class _FieldError(ValueError):
    def __init__(self, field: str, reason: str):
        super().__init__(f"{field}: {reason}")
        self.field, self.reason = field, reason


def parse_row(
    row: dict[str, Any],
    number: int = 0,
    required: set[str] | frozenset[str] = frozenset(),
    dataset: str = "",
) -> Example:
    """One MMEB row as an ``Example``; a row with ``qry_inst`` is MMEB_Test_Instruct's
    (``instruct_rows``).

    Args:
        row: the row's fields.
        number: its row number, for the record.
        required: fields that must not be null (a null optional field reads as absent).
        dataset: the dataset's name (MMEB_Test_Instruct rows are read by its parser).

    Raises:
        _FieldError: a field has the wrong type, or the candidate fields disagree in length.
    """
    if "qry_inst" in row:
        from .instruct_rows import parse_instruct_row  # it reads rows with this module's helpers

        return parse_instruct_row(row, number, dataset, required)
    query = RowItem(
        _text(row, "qry_text", required),
        _text(row, "qry_img_path", required),
        _text(row, "qry_video_path", required),
    )
    images = _as_list(row, "tgt_img_path", required)
    videos = _as_list(row, "tgt_video_path", required)
    texts = _as_list(row, "tgt_text", required)
    count = max(len(texts), len(images), len(videos))
    if count == 0:
        raise _FieldError(
            "tgt_text", "no candidates (tgt_text, tgt_img_path, tgt_video_path empty)"
        )
    texts = _broadcast(texts, count, "tgt_text")
    images = _broadcast(images, count, "tgt_img_path")
    videos = _broadcast(videos, count, "tgt_video_path")
    candidates = tuple(RowItem(t, i, v) for t, i, v in zip(texts, images, videos, strict=True))
    grades = _as_list(row, "tgt_relevance", required)
    if grades:
        try:
            relevance = tuple(float(g) for g in _broadcast(grades, count, "tgt_relevance"))
        except (TypeError, ValueError) as error:
            raise _FieldError("tgt_relevance", f"grades must be numbers ({error})") from None
    else:
        relevance = (1.0,) + (0.0,) * (count - 1)
    return Example(query, candidates, relevance, number)


def to_input(item: RowItem, roots: MediaRoots, placeholders: Placeholders = "in_place") -> Input:
    """The mmembed input for an item: Text, Image, Video, or an interleaved Document.

    ``in_place`` (VLM towers): the text is kept byte for byte, every newline included, and the
    item's image or video stands where the placeholder stood, so the tower writes its own media
    token there: VLM2Vec replaces ``<|image_1|>`` with the backbone's token in place
    (``src/dataset.py`` line 130 on ``v1``). A text without a placeholder gets the media first,
    as VLM2Vec-V2's ``process_input_text`` puts the token first (``src/model/processor.py``
    lines 666-671). A video item keeps its text (its instruction).

    ``split`` (a VLM whose own MMEB code reads the instruction apart, Qwen3-VL-Embedding): an
    item that keeps it apart (``RowItem.plain``, MMEB_Test_Instruct rows) is its media, then
    its plain text, the instruction going to ``encode`` separately; other items as ``in_place``.

    ``removed`` (towers without a media token: CLIP-style, mmembed-mini): the placeholder is
    deleted and the rest kept as given, as VLM2Vec-V2 does for its baselines without special
    tokens (``qry_inst.replace("<|image_1|>", "")`` in ``src/data/eval_dataset/
    image_cls_dataset.py`` line 17, then instruction and text joined, ``processor.py`` lines
    655-659); pieces that are only whitespace are dropped. (VLM2Vec V1's CLIP baseline passed
    the placeholder to the CLIP tokenizer as literal characters, ``evaluation/eval_clip.py``
    with ``src/dataset.py`` lines 71-73 at e61ae22; mmembed follows V2.) Such towers cannot
    read text with a video, so a video item is embedded as the video alone (the harness counts
    these).

    Raises:
        InputError: a frame folder holds no readable frames.
    """
    if placeholders == "split":
        if item.plain is not None:
            return _split_input(item, roots)
        placeholders = "in_place"
    media = _media(item, roots)
    if media is None:
        text = item.text if placeholders == "in_place" else MEDIA_TOKEN.sub("", item.text)
        return Text(text)
    if placeholders == "removed" and isinstance(media, Video):
        return media
    pieces = MEDIA_TOKEN.split(item.text)
    if len(pieces) == 1:
        pieces = ["", pieces[0]]  # no placeholder: the media leads
    keep = (lambda p: bool(p)) if placeholders == "in_place" else (lambda p: bool(p.strip()))
    segments: list[Any] = []
    for index, piece in enumerate(pieces):
        if index == 1:
            segments.append(media)  # only the first placeholder holds the item's one medium
        if keep(piece):
            segments.append(piece)
    return media if len(segments) == 1 else Document(segments)


def _split_input(item: RowItem, roots: MediaRoots) -> Input:
    """The item's media, then its plain text, as Qwen3-VL-Embedding's MMEB code hands them over
    (its instruction travels apart)."""
    media = _media(item, roots)
    if media is None:
        return Text(item.plain or "")
    return Document([media, item.plain]) if item.plain else media


def _media(item: RowItem, roots: MediaRoots) -> Input | None:
    """The item's one medium (its video, else its image), or None for a text-only item."""
    if item.video:
        return _video(roots.videos / item.video, roots)
    if item.image:
        return Image(str(roots.images / item.image))
    return None


def text_dropped(item: RowItem, placeholders: Placeholders) -> bool:
    """Whether ``to_input`` leaves out the item's text (a video for a tower without video
    tokens)."""
    return (
        placeholders == "removed"
        and bool(item.video)
        and bool(MEDIA_TOKEN.sub("", item.text).strip())
    )


def _video(path: Path, roots: MediaRoots) -> Video:
    if not path.is_dir():
        # A video file is sampled by mmembed's video processor under either rule: VLM2Vec-V2
        # reads frame folders it extracted first (``save_frames``); the report counts these.
        return Video(str(path), num_frames=roots.num_frames)
    frames = frame_files(path, natural=roots.frame_rule == "v2")
    if not frames:
        raise InputError(f"frame folder {str(path)!r} holds no images")
    if roots.every_frame:
        picks = list(range(len(frames)))
    elif roots.frame_rule == "v2":
        picks = v2_frame_indices(len(frames), roots.num_frames)
    else:
        picks = segment_middles(len(frames), roots.num_frames)
    images = [_load_frame(frames[i], roots.frame_size) for i in picks]
    # With exactly len(picks) frames the video processor keeps them all, so a frame folder
    # embeds like the video file it came from, and V2's short videos stay unpadded.
    return Video(images, num_frames=len(images))


def frame_files(folder: Path, natural: bool = False) -> list[Path]:
    """The image files of a frame folder in order: by name, or in VLM2Vec-V2's natural order
    (digit runs compared as numbers, ``load_frames``)."""
    frames = [p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS]
    if not natural:
        return sorted(frames)
    return sorted(
        frames,
        key=lambda p: [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", p.name)],
    )


def v2_frame_indices(num_total: int, num_frames: int) -> list[int]:
    """VLM2Vec-V2's frame picks: ``np.linspace(0, n - 1, N, dtype=int)``, e.g. [0, 9, ..., 63]
    for 8 of 64, or every frame when there are at most N (no padding)."""
    if num_total <= num_frames:
        return list(range(num_total))
    step = (num_total - 1) / (num_frames - 1) if num_frames > 1 else 0.0
    picks = [int(i * step) for i in range(num_frames)]
    picks[-1] = num_total - 1  # np.linspace sets the end point exactly
    return picks


def segment_middles(num_total: int, num_frames: int) -> list[int]:
    """The middle index of each of ``num_frames`` equal segments of ``num_total`` frames
    (the first index when a segment is empty), the rule mmembed's video processor uses."""
    bounds = [i * num_total // num_frames for i in range(num_frames + 1)]
    return [
        (first + max(end - 1, first)) // 2
        for first, end in zip(bounds[:-1], bounds[1:], strict=True)
    ]


def _load_frame(path: Path, size: tuple[int, int] | None = None) -> PILImage.Image:
    try:
        image = load_image(path)  # the library's decoder: every Pillow mode, as encode reads
        return image if size is None else image.resize(size)  # V2's collator: PIL's default
    except InputError as error:
        raise InputError(f"cannot read video frame {str(path)!r}: {error.reason}") from error


def _read_rows(path: Path, dataset: str, columns: Columns) -> Iterator[dict[str, Any]]:
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        table = pq.read_table(path)
        missing = _missing(columns, table.column_names)
        if missing:
            raise DataError(f"{dataset}: {path}: missing required column {missing}")
        yield from table.to_pylist()
        return
    with open(path, encoding="utf-8") as handle:
        for line_number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as error:
                raise DataError(
                    f"{dataset}: {path}: line {line_number}: not JSON ({error})"
                ) from None
            if not isinstance(row, dict):
                raise DataError(f"{dataset}: {path}: line {line_number}: not a JSON object")
            yield row


def _text(row: dict[str, Any], field: str, required: set[str] | frozenset[str]) -> str:
    value = row.get(field)
    if value is None:
        if field in row and field in required:
            raise _FieldError(field, "null; an empty string means none")
        return ""
    if not isinstance(value, str):
        raise _FieldError(field, f"expected a string, got {type(value).__name__}")
    return value


def _as_list(row: dict[str, Any], field: str, required: set[str] | frozenset[str]) -> list[Any]:
    value = row.get(field)
    if value is None:
        if field in row and field in required:
            raise _FieldError(field, "null; expected a list")
        return []
    if isinstance(value, str):
        raise _FieldError(field, "a string where a list (one entry per candidate) belongs")
    if not isinstance(value, (list, tuple)):
        raise _FieldError(field, f"expected a list, got {type(value).__name__}")
    values = list(value)
    if field != "tgt_relevance":
        for position, entry in enumerate(values):
            if not isinstance(entry, str):
                kind = "null" if entry is None else type(entry).__name__
                raise _FieldError(field, f"entry {position} is {kind}, not a string")
    return values


def _broadcast(values: list[Any], count: int, name: str) -> list[Any]:
    if not values:
        return [""] * count
    if len(values) != count:
        raise _FieldError(name, f"{len(values)} entries but there are {count} candidates")
    return values


def load_corpus(path: Path, dataset: str = "") -> list[RowItem]:
    """Extra candidates of a corpus-ranked dataset, one JSON object per line (see the module
    docstring).

    Raises:
        DataError: a line is not a JSON object of strings; the message names the line.
    """
    items: list[RowItem] = []
    for number, row in enumerate(_read_rows(path, dataset, ())):
        try:
            fields = [
                _text(row, f, set(row)) for f in ("tgt_text", "tgt_img_path", "tgt_video_path")
            ]
        except _FieldError as error:
            raise DataError(
                f"{dataset}: {path}: row {number}: field {error.field!r}: {error.reason}"
            ) from None
        items.append(RowItem(*fields))
    return items
