"""Queries without torch: an index remembers ONNX exports of its model's query towers.

``mmembed index`` (which has the model loaded anyway) exports the text tower, and a ConSE
image tower (mmembed-mini's), once per tower digest into ``$MMEMBED_HOME/onnx/<digest>/`` and
writes ``INDEX_DIR/query_encoder.json`` pointing at them. ``mmembed search`` and
``mmembed serve`` then embed text and image queries with ONNX Runtime; when an export is
missing or stale, the model has no exportable tower, or an image query carries an instruction,
they fall back to the torch model.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from ..hub import mmembed_home
from ..modality import Modality
from ..models.reference import model_reference
from ..processors.text import check_text, check_unicode, join_instruction
from . import store

logger = logging.getLogger(__name__)

POINTER = "query_encoder.json"


@dataclass(frozen=True)
class QueryEncoderRecord:
    """What ``INDEX_DIR/query_encoder.json`` holds."""

    model: str  # the index's model name the export belongs to
    folder: str  # the export folder (see encoders.onnx_text)
    digest: str  # digest of the exported text tower
    query_instruction: str | None  # the model's own query instruction (encode_query's)
    image_folder: str | None = None  # the image tower's export (None: image queries use torch)
    image_digest: str | None = None  # digest of the exported image tower


def exportable_text_tower(embedder: Any) -> Any | None:
    """The embedder's text tower when a text query is that tower alone, else None.

    That holds for a transformers text tower under the weighted-sum head with no projection:
    a text query is then one text part, and its vector the tower's normalised output.
    """
    from torch import nn

    from ..encoders.hf_text import HFTextTower
    from ..heads.fusion import WeightedSumHead

    towers = getattr(embedder, "towers", {})
    text = towers["text"] if "text" in towers else None
    space = getattr(embedder, "space", None)
    if (
        not isinstance(text, HFTextTower)
        or type(getattr(embedder, "head", None)) is not WeightedSumHead
        or not isinstance(getattr(space, "projection", None), nn.Identity)
        or next(text.parameters()).dtype.is_floating_point is False
    ):
        return None
    return text


def exportable_image_tower(embedder: Any) -> Any | None:
    """The embedder's image tower when it is ConSE (timm classifier + class embeddings)."""
    from ..encoders.conse import ConSEImageTower

    towers = getattr(embedder, "towers", {})
    image = towers["image"] if "image" in towers else None
    if not isinstance(image, ConSEImageTower) or exportable_text_tower(embedder) is None:
        return None
    return image


def export_query_encoder(embedder: Any, index_dir: Path) -> Path | None:
    """Export the embedder's query towers (once per digest) and point the index at them."""
    from ..encoders import onnx_image, onnx_text
    from ..encoders.digest import tower_digest

    text = exportable_text_tower(embedder)
    if text is None:
        logger.info("%s: no exportable text tower; queries will use torch", embedder.name)
        return None
    digest = tower_digest(text)
    folder, _ = onnx_text.cached_export(text, mmembed_home(), digest)
    model = model_reference(embedder.name)  # as the index records it
    record = QueryEncoderRecord(model, str(folder), digest, embedder.query_instruction)
    image = exportable_image_tower(embedder)
    if image is not None:
        image_digest = tower_digest(image)
        image_folder = onnx_image.cached_conse_export(image, mmembed_home(), image_digest)
        record = QueryEncoderRecord(
            **{**record.__dict__, "image_folder": str(image_folder), "image_digest": image_digest}
        )
    store.write_json_atomic(index_dir / POINTER, record.__dict__)
    return folder


def verify_exports(index_dir: Path) -> list[str]:
    """Hash the exports the index's queries run through against their records again
    (``search --verify``); returns the damaged ones, which are deleted with a warning: queries
    then use the torch model, which exports the text tower again (``mmembed index`` both)."""
    from ..encoders import onnx_image, onnx_text
    from ..hub import verified

    try:
        record = QueryEncoderRecord(**json.loads((index_dir / POINTER).read_text()))
    except (OSError, ValueError, TypeError):
        return []
    folders = {record.folder: onnx_text.FILES}
    if record.image_folder:
        folders[record.image_folder] = ("model.onnx", onnx_image.CONFIG_NAME)
    return [
        folder
        for folder, required in folders.items()
        if Path(folder).is_dir() and not verified.intact_folder(Path(folder), required, True)
    ]


def has_query_encoder(index_dir: Path, model: str) -> bool:
    """Whether the index points at complete, intact exports for ``model`` (text, and image
    when it has one): ``mmembed index`` exports again when not, even when nothing changed."""
    from ..encoders.onnx_image import read_cfg

    record = _record(index_dir, model)
    if record is None or record.image_folder is None:
        return record is not None
    cfg = read_cfg(Path(record.image_folder))
    return cfg is not None and cfg.digest == record.image_digest


def _record(index_dir: Path, model: str) -> QueryEncoderRecord | None:
    from ..encoders.onnx_text import read_cfg

    try:
        record = QueryEncoderRecord(**json.loads((index_dir / POINTER).read_text()))
    except (OSError, ValueError, TypeError):
        return None
    cfg = read_cfg(Path(record.folder))
    if record.model != model or cfg is None or cfg.digest != record.digest:
        return None
    return record


class TextQueryEncoder:
    """Embeds text queries as ``Index.search`` would, through the ONNX export."""

    def __init__(self, record: QueryEncoderRecord, threads: int = 1):
        from ..encoders.onnx_text import OnnxTextEncoder

        self.record = record
        self.encoder = OnnxTextEncoder(Path(record.folder), threads)

    @classmethod
    def for_index(cls, index_dir: Path, model: str, threads: int = 1):
        """The index's export for ``model``, or None (then the torch model is needed)."""
        record = _record(index_dir, model)
        if record is None:
            return None
        return _opened(cls, record, threads, record.folder)

    def encode(self, texts: list[str], instruction: str | None, dim: int | None) -> np.ndarray:
        """``(N, dim)`` unit rows: instruction joined as the text planner joins it, Matryoshka cut."""
        instruction = instruction if instruction is not None else self.record.query_instruction
        if instruction:
            check_unicode(instruction, "instruction")
        joined = [join_instruction(instruction, check_text(t)) for t in texts]
        vectors = self.encoder.encode(joined)
        if dim is not None:
            vectors = vectors[:, :dim]
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        return (vectors / np.maximum(norms, 1e-12)).astype(np.float32)


class ImageQueryEncoder:
    """Embeds image queries as ``Index.search`` would (no instruction), through the export."""

    def __init__(self, record: QueryEncoderRecord, threads: int = 1):
        from ..encoders.onnx_image import OnnxImageEncoder

        self.record = record
        self.encoder = OnnxImageEncoder(Path(record.image_folder), threads)

    @classmethod
    def for_index(cls, index_dir: Path, model: str, threads: int = 1):
        """The index's image export for ``model``, or None (then the torch model is needed)."""
        from ..encoders.onnx_image import read_cfg

        record = _record(index_dir, model)
        if record is None or record.image_folder is None:
            return None
        cfg = read_cfg(Path(record.image_folder))
        if cfg is None or cfg.digest != record.image_digest:
            return None
        return _opened(cls, record, threads, record.image_folder)

    def usable(self, instruction: str | None) -> bool:
        """Whether a query with ``instruction`` is the image tower alone (else use torch)."""
        return not (instruction if instruction is not None else self.record.query_instruction)

    def encode(self, images: list, dim: int | None) -> np.ndarray:
        """``(N, dim)`` unit rows for RGB ``PIL`` images."""
        vectors = self.encoder.encode(images)
        if dim is not None:
            vectors = vectors[:, :dim]
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        return (vectors / np.maximum(norms, 1e-12)).astype(np.float32)


# What embeds a query (``QueryRouter.route``).
TEXT_EXPORT, IMAGE_EXPORT, MODEL = "text export", "image export", "model"

# ``(query, instruction, dim) -> (1, dim)`` unit rows from the torch model; instruction None
# means the model's own query instruction.
ModelVectors = Callable[[Any, "str | None", "int | None"], np.ndarray]


class QueryRouter:
    """The one rule by which ``mmembed search`` and ``mmembed serve`` embed a query: text
    through the index's text export, an image without an instruction through its image
    export, anything else (or an index without exports) through the torch model.

    Args:
        index_dir: the index folder (its ``query_encoder.json`` names the exports).
        model: the index's model name; exports of another model are not used.
        use_onnx: False routes every query to the model (e.g. ``search --model``).
        threads: ONNX Runtime threads per export.
    """

    def __init__(self, index_dir: Path, model: str, use_onnx: bool = True, threads: int = 1):
        self.index_dir, self.model = Path(index_dir), model
        self.use_onnx, self.threads = use_onnx, threads

    @cached_property
    def text(self) -> TextQueryEncoder | None:
        """The text export, opened on first use (None: text queries use the model)."""
        if not self.use_onnx:
            return None
        return TextQueryEncoder.for_index(self.index_dir, self.model, self.threads)

    @cached_property
    def image(self) -> ImageQueryEncoder | None:
        """The image export, opened on first use (None: image queries use the model)."""
        if not self.use_onnx:
            return None
        return ImageQueryEncoder.for_index(self.index_dir, self.model, self.threads)

    def route(self, modality: Modality, instruction: str | None = None) -> str:
        """``TEXT_EXPORT``, ``IMAGE_EXPORT`` or ``MODEL``: what embeds a query of ``modality``."""
        if modality is Modality.TEXT and self.text is not None:
            return TEXT_EXPORT
        if modality is Modality.IMAGE and self.image is not None and self.image.usable(instruction):
            return IMAGE_EXPORT
        return MODEL

    def vectors(
        self, query: Any, instruction: str | None, dim: int | None, model: ModelVectors
    ) -> np.ndarray:
        """``(1, dim)`` unit rows for ``query``, from the encoder ``route`` picks; ``model``
        embeds what no export can."""
        route = self.route(query.modality, instruction)
        if route == TEXT_EXPORT:
            return self.text.encode([query.text], instruction, dim)
        if route == IMAGE_EXPORT:
            return self.image.encode([query.source], dim)
        logger.info("%s: embedding the query with the torch model", self.index_dir)
        return model(query, instruction, dim)


def _opened(cls, record: QueryEncoderRecord, threads: int, folder: str):
    """``cls(record, threads)``, or None with a warning when the export's files are damaged."""
    try:
        return cls(record, threads)
    except Exception as error:  # onnxruntime and tokenizers raise bare Exceptions on bad files
        logger.warning(
            "using the torch model: the ONNX export in %s is unreadable: %s", folder, error
        )
        return None
