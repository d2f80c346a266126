"""Text queries without torch: an index remembers an ONNX export of its model's text tower.

``mmembed index`` (which has the model loaded anyway) exports the query tower once per tower
digest into ``$MMEMBED_HOME/onnx/<digest>/`` and writes ``INDEX_DIR/query_encoder.json``
pointing at it. ``mmembed search`` and ``mmembed serve`` then embed text queries with ONNX
Runtime; when the export is missing, stale or the model has no exportable text tower, they
fall back to the torch model.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..hub import mmembed_home
from ..processors.text import check_text
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


def export_folder(digest: str) -> Path:
    return mmembed_home() / "onnx" / digest[:32]


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


def export_query_encoder(embedder: Any, index_dir: Path) -> Path | None:
    """Export the embedder's text tower (once per digest) and point the index at it."""
    from ..encoders.digest import text_tower_digest
    from ..encoders.onnx_text import export_text_tower, read_cfg

    text = exportable_text_tower(embedder)
    if text is None:
        logger.info("%s: no exportable text tower; text queries will use torch", embedder.name)
        return None
    digest = text_tower_digest(text)
    folder = export_folder(digest)
    cfg = read_cfg(folder)
    if cfg is None or cfg.digest != digest:
        logger.info("exporting the text tower of %s to %s", embedder.name, folder)
        export_text_tower(text, folder, digest)
    record = QueryEncoderRecord(embedder.name, str(folder), digest, embedder.query_instruction)
    store.write_json_atomic(index_dir / POINTER, record.__dict__)
    return folder


def has_query_encoder(index_dir: Path, model: str) -> bool:
    """Whether the index points at a complete export for ``model``."""
    return _record(index_dir, model) is not None


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

    def __init__(self, record: QueryEncoderRecord, threads: int | None = None):
        from ..encoders.onnx_text import OnnxTextEncoder

        self.record = record
        self.encoder = OnnxTextEncoder(Path(record.folder), threads)

    @classmethod
    def for_index(cls, index_dir: Path, model: str, threads: int | None = None):
        """The index's export for ``model``, or None (then the torch model is needed)."""
        record = _record(index_dir, model)
        if record is None:
            return None
        return cls(record, threads)

    def encode(self, texts: list[str], instruction: str | None, dim: int | None) -> np.ndarray:
        """``(N, dim)`` unit rows: instruction joined as the text planner joins it, Matryoshka cut."""
        instruction = instruction if instruction is not None else self.record.query_instruction
        joined = [f"{instruction} {check_text(t)}" if instruction else check_text(t) for t in texts]
        vectors = self.encoder.encode(joined)
        if dim is not None:
            vectors = vectors[:, :dim]
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        return (vectors / np.maximum(norms, 1e-12)).astype(np.float32)
