"""The search behind the server: the index's current generation, kept up to date.

Text and image queries run through the index's ONNX exports when it has them
(``retrieval.fast_query``); video queries, and queries of indexes without an export, are
embedded by the model's batcher (``EmbeddingService``). Each request gets its own query vector
and result list, so answers are never mixed; a lock orders access to the SQLite handle.

A watcher thread reads ``current.json`` every ``reload_interval_s``: when ``mmembed index``
publishes a new generation, it opens and verifies it, then swaps it in with one assignment.
A request takes the index once (``current()``) and finishes on it, so requests in flight
finish on the old generation; its files stay readable (open handles) until they are dropped.
"""

from __future__ import annotations

import logging
import os
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import CorruptIndexError, InputError
from ..modality import VIDEO_EXTENSIONS, Modality
from ..models.reference import same_model
from ..processors.image import load_image
from .embedding import EmbeddingService

logger = logging.getLogger(__name__)

MODALITY_NAMES = frozenset(modality.value for modality in Modality)


@dataclass(frozen=True)
class Upload:
    """An uploaded query file."""

    data: bytes  # the file's bytes (already checked against the size limit)
    filename: str  # the name the client gave it ('' when none)
    content_type: str  # the client's declared type ('' when none)


class SearchService:
    """Searches one index folder; safe to call from many threads.

    Args:
        index_dir: folder written by ``mmembed index``.
        embeddings: the model's batcher; its model must be the index's.
        use_onnx: embed text (and image) queries with the index's ONNX export when there is one.
        reload_interval_s: seconds between checks for a new generation (0: never check).
    """

    def __init__(
        self,
        index_dir: Path | str,
        embeddings: EmbeddingService,
        use_onnx: bool = True,
        reload_interval_s: float = 1.0,
    ):
        from ..retrieval.fast_query import QueryRouter
        from ..retrieval.remote.uri import is_uri

        self.index_dir = index_dir if is_uri(index_dir) else Path(index_dir)
        self.embeddings = embeddings
        self._index = self._open(verify=False)  # sizes and headers; a reload checks it all
        if is_uri(index_dir):
            reload_interval_s = 0  # an engine serves its collection's current content
        local = self._index.path  # folder index, or an engine's ledger (ONNX query exports)
        self.model = self._index.info["model"]
        if not same_model(embeddings.model, self.model):
            raise InputError(
                f"index {index_dir} was built with {self.model}, not {embeddings.model}"
            )
        self.router = QueryRouter(local, self.model, use_onnx)
        _ = self.router.text, self.router.image  # open the exports before the first request
        self._lock = threading.Lock()
        self._refused: str | None = None  # a generation that failed its checks (not retried)
        self._stop = threading.Event()
        self._watcher = None
        if reload_interval_s > 0:
            self._watcher = threading.Thread(
                target=self._watch, args=(reload_interval_s,), name="index-watcher", daemon=True
            )
            self._watcher.start()

    def _open(self, verify: bool) -> Any:
        from ..retrieval import Index

        index = Index.open(self.index_dir, self.embeddings.embedder, verify=verify)
        _ = index.searcher  # load the vectors' search structure before the first request
        return index

    def current(self) -> Any:
        """The ``Index`` of the generation served now; a request uses one throughout."""
        return self._index

    def __len__(self) -> int:
        return len(self._index)

    @property
    def generation(self) -> str:
        return self._index.generation.name

    @property
    def description(self) -> str:
        from ..retrieval.fast_query import MODEL

        text, image = (
            "torch" if self.router.route(modality) == MODEL else "ONNX Runtime"
            for modality in (Modality.TEXT, Modality.IMAGE)
        )
        return f"{self.model}; text queries through {text}, images through {image}"

    def search_text(
        self, text: str, k: int, modalities: list[str] | None = None, index: Any = None
    ) -> list:
        """Hits for a text query (``InputError`` for an empty one)."""
        from ..inputs import Text

        index = index or self.current()
        return self._search(index, self._vectors(Text(text), index), k, modalities)

    def search_upload(
        self, upload: Upload, k: int, modalities: list[str] | None = None, index: Any = None
    ) -> list:
        """Hits for an uploaded image or video (``InputError`` when it is neither)."""
        from ..inputs import Image

        index = index or self.current()
        suffix = Path(upload.filename).suffix.lower()
        if upload.content_type.startswith("video/") or suffix in VIDEO_EXTENSIONS:
            vectors = self._video_vectors(upload, suffix or ".mp4", index)
            return self._search(index, vectors, k, modalities)
        try:
            picture = load_image(upload.data)
        except InputError as error:
            raise InputError(
                f"{_name(upload)} is not an image or a video ({error.reason})"
            ) from None
        return self._search(index, self._vectors(Image(picture), index), k, modalities)

    def thumbnails(self, hits: list, index: Any = None) -> dict[int, bytes | None]:
        """Thumbnails of ``hits``, read from the index they were found in."""
        with self._lock:
            return (index or self.current()).thumbnails(hits)

    def close(self) -> None:
        self._stop.set()
        if self._watcher is not None:
            self._watcher.join()

    def _search(self, index: Any, vectors: Any, k: int, modalities: list[str] | None) -> list:
        with self._lock:
            return index.search_vectors(vectors, k, modalities)[0]

    def _vectors(self, query: Any, index: Any) -> Any:
        """The query's vector, routed as ``mmembed search`` routes it (``QueryRouter``)."""
        return self.router.vectors(
            query, None, index.info.get("matryoshka_dim"), self._model_vectors
        )

    def _model_vectors(self, query: Any, instruction: str | None, dim: int | None) -> Any:
        """A query vector as ``Index.search`` makes it (None: the model's query instruction)."""
        if instruction is None:
            instruction = self.embeddings.embedder.query_instruction
        return self.embeddings.vectors([query], instruction, dim)

    def _video_vectors(self, upload: Upload, suffix: str, index: Any) -> Any:
        from ..inputs import Video

        handle, path = tempfile.mkstemp(prefix="mmembed-query-", suffix=suffix)
        try:
            with os.fdopen(handle, "wb") as file:
                file.write(upload.data)
            return self._vectors(Video(path), index)
        except InputError as error:  # the message names the upload, not the temporary file
            reason = error.reason.replace(path, _name(upload, quote=False))
            raise InputError(reason) from None
        finally:
            os.unlink(path)

    def _watch(self, interval: float) -> None:
        while not self._stop.wait(interval):
            try:
                self._reload()
            except Exception:  # the watcher must keep running: log, retry next time
                logger.exception("checking %s for a new generation failed", self.index_dir)

    def _reload(self) -> None:
        """Swap in a newer generation once it opens and verifies; keep the old one otherwise."""
        from ..retrieval import store

        try:
            manifest = store.read_current(self.index_dir)
        except CorruptIndexError:
            return  # mid-write or damaged: the current generation stays; look again later
        name = manifest.get("generation") if manifest else None
        if name is None or name == self.generation or name == self._refused:
            return
        try:
            index = self._open(verify=True)
        except (CorruptIndexError, OSError, ValueError) as error:
            self._refused = name
            logger.warning("not serving %s of %s: %s", name, self.index_dir, error)
            return
        if index.info["model"] != self.model:
            self._refused = index.generation.name
            logger.warning(
                "not serving %s: built with %s, the server runs %s",
                index.generation.name,
                index.info["model"],
                self.model,
            )
            return
        self._index = index  # one assignment: requests see the old or the new index, whole
        logger.info(
            "now serving %s of %s (%d items)", index.generation.name, self.index_dir, len(index)
        )


def _name(upload: Upload, quote: bool = True) -> str:
    if not upload.filename:
        return "the upload"
    return repr(upload.filename) if quote else upload.filename
