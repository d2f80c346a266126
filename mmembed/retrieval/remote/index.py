"""``RemoteIndex``: an ``Index`` whose vectors and metadata live in a Milvus collection.

``Index.open(URI)`` and ``Index.build(..., URI)`` return one. Search needs only the
collection (a search server elsewhere has no ledger): model, instruction and dim come from
the collection's properties; thumbnails and the ONNX query export from the ledger folder,
when it is there.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from ...errors import StoreError
from ..embed import EmbedSettings, Engine, local_engine
from ..index import Index, checked_queries
from ..pages import PageOptions
from ..results import Hit, SearchResults
from ..update import UpdateReport
from ..walk import Item
from .ledger import Ledger
from .milvus import CollectionOptions, MilvusCollection
from .update import check_recorded, reconcile, update_remote
from .uri import StoreURI, parse

logger = logging.getLogger(__name__)


class RemoteIndex(Index):
    """An index in a vector engine's collection (see ``uri.py`` for the URI forms).

    Attributes:
        uri: the parsed URI.
        path: the local ledger folder (query exports, thumbnails).
    """

    def __init__(self, uri: StoreURI, collection: MilvusCollection, embedder: Any = None):
        super().__init__(uri.ledger, _Collection(uri.collection), embedder)
        self.uri = uri
        self.collection = collection
        self._ledger = Ledger.open_existing(uri.ledger)
        pages = PageOptions.recorded(self._ledger.config() if self._ledger else {})
        self._info = {**_info(uri, collection.info()), **pages.to_dict()}

    @classmethod
    def open(cls, path: Any, embedder: Any = None, verify: bool = False) -> RemoteIndex:
        """Open the collection ``path`` (a URI) for search.

        ``verify`` reads every vector back and compares it with the ledger's checksums.

        Raises:
            StoreError: unreachable engine, no such collection, or (verify) a vector that
                differs from the ledger.
        """
        uri = path if isinstance(path, StoreURI) else parse(path)
        collection = MilvusCollection(uri)
        try:
            if not collection.exists():
                raise StoreError(
                    f"{uri}: no collection {uri.collection} "
                    f"(build it with `mmembed index PATH... --out {uri}`)"
                )
            index = cls(uri, collection, embedder)
            if not index._info.get("model"):
                raise StoreError(f"{uri}: collection {uri.collection} was not made by mmembed")
            collection.load()
            if verify:
                index.verify()
        except BaseException:
            collection.close()
            raise
        return index

    @classmethod
    def build_items(
        cls,
        uri: StoreURI,
        items: Sequence[Item],
        embedder: Any,
        settings: EmbedSettings,
        engine: Engine,
        sync_sources: Iterable[str] = (),
        rehash: bool = False,
        options: CollectionOptions | None = None,
        verify: bool = False,
        upload_batch: int | None = None,
        recorded: dict[str, Any] | None = None,
    ) -> RemoteIndex:
        """Bring the collection up to date with ``items`` (``Index.build`` calls this);
        ``recorded``: build options the ledger keeps for the next run (page options)."""
        extra = {"upload_batch": upload_batch} if upload_batch else {}
        report = update_remote(
            uri,
            items,
            embedder,
            settings,
            engine,
            options=options,
            sync_sources=sync_sources,
            rehash=rehash,
            verify=verify,
            recorded=recorded,
            **extra,
        )
        index = cls.open(uri, embedder)
        index.last_update = report
        return index

    def verify(self) -> None:
        """Compare every stored vector with the ledger's checksum (needs the ledger)."""
        if self._ledger is None:
            raise StoreError(f"{self.uri}: no ledger at {self.uri.ledger} to verify against")
        notes = reconcile(self.collection, self._ledger, full=True, repair=False)
        if notes:
            raise StoreError(f"{self.uri}: {'; '.join(notes)} (rerun `mmembed index` to repair)")

    def use_model(self, embedder: Any) -> None:
        """Search with ``embedder`` from now on; refuses another model than the collection's."""
        settings = EmbedSettings(
            embedder.name, self.info["instruction"], self.info["matryoshka_dim"]
        )
        check_recorded(self.uri, self._info, settings, self.info["dim"])
        self._embedder = embedder

    @property
    def location(self) -> str:
        return str(self.uri)

    def _adopt(self, updated: Index) -> None:
        self._info = updated.info  # the engine serves the new items already
        updated.close()

    def remove(self, ids: Iterable[str]) -> UpdateReport:
        """Remove items by id (files: their path, made absolute)."""
        from pathlib import Path

        wanted = {form for key in ids for form in (str(key), str(Path(key).resolve()))}
        settings = EmbedSettings(
            self.info["model"], self.info["instruction"], self.info["matryoshka_dim"]
        )
        return update_remote(
            self.uri,
            [],
            self.embedder,
            settings,
            local_engine(self.embedder, settings),
            remove_ids=wanted,
        )

    def search_vectors(
        self,
        query_vectors: np.ndarray,
        k: int = 10,
        modalities: Iterable[str] | None = None,
        where: str = "",
    ) -> SearchResults:
        """Search with ready query vectors ``(Q, D)``; ``where`` is a Milvus filter
        expression on the entity fields, e.g. ``metadata["page"] == 2``."""
        query_vectors = checked_queries(query_vectors, self.info["dim"], k)
        clauses = [f"({where})"] if where else []
        if modalities is not None:
            clauses.append(f"modality in {json.dumps(sorted(set(modalities)))}")
        found = self.collection.search(
            query_vectors, k, self._info.get("search_params") or {}, " and ".join(clauses)
        )
        return SearchResults(
            [[self._hit(rank, hit) for rank, hit in enumerate(hits, 1)] for hits in found]
        )

    def _hit(self, rank: int, hit: dict) -> Hit:
        entity = hit.get("entity") or {}
        key = str(hit["id"])
        item_id, path = key, entity.get("path") or None
        if key.startswith("sha256:") and self._ledger is not None:  # a non-UTF-8 or long id
            row = self._ledger.by_key([key]).get(key)
            if row is not None:
                item_id, path = row["id"], row["path"]
        metadata = entity.get("metadata") or {}
        if isinstance(metadata, str):
            metadata = json.loads(metadata)
        return Hit(
            rank,
            float(hit["distance"]),
            item_id,
            path,
            entity.get("modality", ""),
            metadata,
            entity.get("snippet") or "",
            int(entity.get("position", -1)),
        )

    def thumbnails(self, hits: Iterable[Hit]) -> dict[int, bytes | None]:
        if self._ledger is None:
            return {hit.position: None for hit in hits}
        return self._ledger.thumbnails(hit.position for hit in hits)

    def skipped(self) -> list[dict]:
        return self._ledger.skipped() if self._ledger is not None else []

    def __len__(self) -> int:
        return self.collection.count()

    @property
    def info(self) -> dict[str, Any]:
        return self._info

    @property
    def searcher(self) -> None:
        """None: the engine searches; there is no local structure to load."""
        return None

    def close(self) -> None:
        if self._ledger is not None:
            self._ledger.close()
        self.collection.close()

    def _switch(self, generation: Any) -> None:
        pass


class _Collection:
    """Stands where a folder index has its generation: the engine always serves the
    collection's current content, so there is one "generation", named after it."""

    def __init__(self, name: str):
        self.name = f"collection {name}"

    def close(self) -> None:
        pass


def _info(uri: StoreURI, recorded: dict[str, Any]) -> dict[str, Any]:
    """``Index.info`` of a collection: its recorded settings and how it searches."""
    return {
        "model": recorded.get("model"),
        "instruction": recorded.get("instruction"),
        "matryoshka_dim": recorded.get("matryoshka_dim"),
        "dim": recorded.get("field_dim", recorded.get("dim")),
        "index_type": recorded.get("index_type"),
        "search_params": recorded.get("search_params") or {},
        "uid": recorded.get("uid"),
        "vectors": {
            "kind": "engine",
            "engine": uri.scheme,
            "collection": uri.collection,
            "index_type": recorded.get("index_type"),
            "build_params": recorded.get("build_params") or {},
            "search_params": recorded.get("search_params") or {},
            "shards": recorded.get("num_shards") or recorded.get("shards"),
            "replicas": recorded.get("replicas"),
            "recall_at_10": float("nan"),
        },
    }
