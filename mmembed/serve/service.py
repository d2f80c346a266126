"""The search behind the server: one loaded index and model shared by every request thread.

Text and image queries run through the index's ONNX exports when it has them
(``retrieval.fast_query``); video queries, and queries of indexes without an export, run
through the torch model under a lock. Each request gets its own query vector and result list, so answers are
never mixed; the lock only orders access to the torch model and to the index's SQLite handle.
"""

from __future__ import annotations

import io
import logging
import os
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import InputError
from ..modality import VIDEO_EXTENSIONS, Modality

logger = logging.getLogger(__name__)

MODALITY_NAMES = frozenset(modality.value for modality in Modality)


@dataclass(frozen=True)
class Upload:
    """An uploaded query file."""

    data: bytes  # the file's bytes (already checked against the size limit)
    filename: str  # the name the client gave it ('' when none)
    content_type: str  # the client's declared type ('' when none)


class SearchService:
    """Searches one index; safe to call from many threads.

    Args:
        index_dir: folder written by ``mmembed index``.
        embedder: the model (default: loaded by the index's model name, now, not on the
            first image query).
        use_onnx: embed text queries with the index's ONNX export when there is one.
    """

    def __init__(self, index_dir: Path, embedder: Any = None, use_onnx: bool = True):
        from ..retrieval import Index
        from ..retrieval.fast_query import ImageQueryEncoder, TextQueryEncoder

        self.index_dir = Path(index_dir)
        self.index = Index.open(self.index_dir, embedder)
        self.model = self.index.info["model"]
        self.text_encoder = (
            TextQueryEncoder.for_index(self.index_dir, self.model) if use_onnx else None
        )
        self.image_encoder = (
            ImageQueryEncoder.for_index(self.index_dir, self.model) if use_onnx else None
        )
        if self.image_encoder is not None and not self.image_encoder.usable(None):
            self.image_encoder = None  # the model's query instruction needs the torch head
        self._lock = threading.Lock()
        with self._lock:
            _ = self.index.embedder, self.index.searcher  # load both before the first request

    def __len__(self) -> int:
        return len(self.index)

    @property
    def description(self) -> str:
        text = "ONNX Runtime" if self.text_encoder is not None else "torch"
        image = "ONNX Runtime" if self.image_encoder is not None else "torch"
        return f"{self.model}; text queries through {text}, images through {image}"

    def search_text(self, text: str, k: int, modalities: list[str] | None = None) -> list:
        """Hits for a text query (``InputError`` for an empty one)."""
        from ..inputs import Text

        if self.text_encoder is not None:
            vectors = self.text_encoder.encode([text], None, self.index.info.get("matryoshka_dim"))
            with self._lock:
                return self.index.search_vectors(vectors, k, modalities)[0]
        return self._search_model(Text(text), k, modalities)

    def search_upload(self, upload: Upload, k: int, modalities: list[str] | None = None) -> list:
        """Hits for an uploaded image or video (``InputError`` when it is neither)."""
        suffix = Path(upload.filename).suffix.lower()
        if upload.content_type.startswith("video/") or suffix in VIDEO_EXTENSIONS:
            return self._search_video(upload, suffix or ".mp4", k, modalities)
        image = _decode_image(upload)
        if self.image_encoder is not None:
            vectors = self.image_encoder.encode(
                [image.source], self.index.info.get("matryoshka_dim")
            )
            with self._lock:
                return self.index.search_vectors(vectors, k, modalities)[0]
        return self._search_model(image, k, modalities)

    def _search_video(self, upload: Upload, suffix: str, k: int, modalities) -> list:
        from ..inputs import Video

        handle, path = tempfile.mkstemp(prefix="mmembed-query-", suffix=suffix)
        try:
            with os.fdopen(handle, "wb") as file:
                file.write(upload.data)
            return self._search_model(Video(path), k, modalities)
        finally:
            os.unlink(path)

    def _search_model(self, query: Any, k: int, modalities: list[str] | None) -> list:
        with self._lock:
            return self.index.search([query], k=k, modalities=modalities)[0]

    def thumbnails(self, hits: list) -> dict[int, bytes | None]:
        with self._lock:
            return self.index.thumbnails(hits)


def _decode_image(upload: Upload) -> Any:
    """The upload as an ``mmembed.Image``; ``InputError`` when Pillow cannot read it."""
    from PIL import Image as PILImage
    from PIL import UnidentifiedImageError

    from ..inputs import Image

    try:
        picture = PILImage.open(io.BytesIO(upload.data))
        picture.load()
    except UnidentifiedImageError:
        raise InputError(f"{_name(upload)} is not an image or a video") from None
    except (OSError, ValueError, PILImage.DecompressionBombError) as error:
        raise InputError(f"cannot decode image {_name(upload)}: {error}") from None
    return Image(picture.convert("RGB"))


def _name(upload: Upload) -> str:
    return repr(upload.filename) if upload.filename else "the upload"
