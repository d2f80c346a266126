"""One Milvus collection, through pymilvus: the same code for Milvus Lite and a cluster.

Every call that reaches the engine goes through ``MilvusCollection._call``, which turns
pymilvus's and gRPC's errors into a one-line ``StoreError`` naming the URI and the cause.

Collection layout (one entity per indexed item; the primary key is the item id, so an upsert
replaces an item and a rerun never duplicates one)::

    id            VARCHAR  primary key: the item id (``remote_key``)
    vector        FLOAT_VECTOR(dim), unit length, searched by inner product
    position      INT64    the item's row in the local ledger (thumbnails)
    path, modality, content_hash, source, snippet    VARCHAR
    metadata      JSON     manifest columns (caption, page, route...), filterable

The collection's properties record the model, instruction, Matryoshka dim and search
parameters (``mmembed.*``), so search can refuse another model.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import StoreError, UsageError
from .uri import StoreURI

logger = logging.getLogger(__name__)

FORMAT = "1"  # bumped when the layout above changes
MAX_ID = 4096  # bytes of an id, path or source (longer ids are stored by digest)
MAX_SNIPPET = 2048
INDEX_TYPES = ("HNSW", "IVF_FLAT", "IVF_SQ8", "IVF_PQ", "FLAT")
# What Milvus Lite 3.2 builds; it accepts IVF_PQ, then fails to build it in the background
# and searches by brute force, so mmembed refuses it up front.
LITE_INDEX_TYPES = ("HNSW", "IVF_FLAT", "IVF_SQ8", "FLAT")
# Build and search parameters per index type, the defaults ``mmembed index`` uses (measured
# on 10^6 384-d vectors in benchmarks/store.py; see docs/benchmarks.md).
DEFAULT_PARAMS: dict[str, tuple[dict[str, int], dict[str, int]]] = {
    "HNSW": ({"M": 16, "efConstruction": 128}, {"ef": 128}),
    "IVF_FLAT": ({"nlist": 1024}, {"nprobe": 32}),
    "IVF_SQ8": ({"nlist": 1024}, {"nprobe": 32}),
    "IVF_PQ": ({"nlist": 1024, "m": 48, "nbits": 8}, {"nprobe": 32}),
    "FLAT": ({}, {}),
}
SEARCH_KEYS = frozenset({"ef", "nprobe"})
PROPERTY = "mmembed.info"  # JSON of the settings below
OUTPUT_FIELDS = ("position", "path", "modality", "snippet", "metadata")


@dataclass(frozen=True)
class CollectionOptions:
    """How a new collection is laid out (an existing one keeps its own).

    Attributes:
        index_type: vector index: HNSW (default), IVF_FLAT, IVF_SQ8, IVF_PQ or FLAT.
        build_params: index build parameters (M, efConstruction, nlist, m, nbits).
        search_params: search-time parameters (ef, nprobe), recorded in the collection.
        shards: shards the collection is split into (a cluster spreads them over nodes).
        replicas: in-memory replicas loaded for search (a cluster serves each from a node).
    """

    index_type: str = "HNSW"
    build_params: dict[str, int] = field(default_factory=dict)
    search_params: dict[str, int] = field(default_factory=dict)
    shards: int = 1
    replicas: int = 1

    @classmethod
    def make(
        cls,
        index_type: str | None = None,
        params: dict[str, int] | None = None,
        shards: int | None = None,
        replicas: int | None = None,
    ) -> CollectionOptions:
        """Options with the defaults of ``index_type`` filled in, ``params`` split into build
        and search parameters.

        Raises:
            UsageError: an unknown index type, or a shard or replica count below 1.
        """
        kind = (index_type or "HNSW").upper().replace("-", "_")
        if kind not in INDEX_TYPES:
            raise UsageError(f"unknown store index {index_type!r}; choose {', '.join(INDEX_TYPES)}")
        for name, value in (("shards", shards), ("replicas", replicas)):
            if value is not None and value < 1:
                raise UsageError(f"--{name} must be at least 1, got {value}")
        build, search = (dict(part) for part in DEFAULT_PARAMS[kind])
        for key, value in (params or {}).items():
            (search if key in SEARCH_KEYS else build)[key] = value
        return cls(kind, build, search, shards or 1, replicas or 1)


def remote_key(item_id: str) -> str:
    """The primary key of an item: its id, or a digest when the id is not UTF-8 or too long."""
    try:
        if len(item_id.encode("utf-8")) <= MAX_ID:
            return item_id
    except UnicodeEncodeError:
        pass
    raw = item_id.encode("utf-8", "surrogatepass")
    return "sha256:" + hashlib.sha256(raw).hexdigest()


def _text(value: str | None, limit: int = MAX_ID) -> str:
    """A str Milvus accepts: valid UTF-8 (undecodable bytes escaped), cut to ``limit`` bytes."""
    text = (value or "").encode("utf-8", "backslashreplace")[:limit]
    return text.decode("utf-8", "ignore")


class MilvusCollection:
    """A connection to one collection of a Milvus engine (embedded or remote)."""

    def __init__(self, uri: StoreURI, timeout: float = 30.0):
        self.uri = uri
        self.name = uri.collection
        self.timeout = timeout
        # gRPC's C core logs keepalive chatter with the embedded server to stderr; failures
        # reach us as exceptions, which name the URI.
        os.environ.setdefault("GRPC_VERBOSITY", "NONE")
        try:
            from pymilvus import MilvusClient
        except ImportError:
            raise StoreError(
                f"{uri}: pymilvus is not installed (pip install 'mmembed[store]')"
            ) from None
        if uri.embedded:  # its server runs in this process: its logs are ours, and a
            # failure to start reaches us as an exception (a traceback on stderr is noise)
            logging.getLogger("grpc._server").setLevel(logging.CRITICAL)
            logging.getLogger("milvus_lite.server_manager").setLevel(logging.CRITICAL)
        # Milvus Lite has no AllocTimestamp: the iterator says so, then reads correctly.
        logging.getLogger("pymilvus.client.iterator.query_iterator").setLevel(logging.ERROR)
        if uri.embedded:
            uri.path.parent.mkdir(parents=True, exist_ok=True)
        with self._call("cannot connect"):
            if uri.embedded and _locked(uri.path):
                raise StoreError(
                    f"{uri}: another process has {uri.path} open (Milvus Lite serves one "
                    "process; for several, run `milvus-lite server --data-dir PATH` and use "
                    "milvus://127.0.0.1:19530/COLLECTION)"
                )
            self.client = MilvusClient(uri=uri.client_uri, timeout=timeout, dedicated=True)

    @contextlib.contextmanager
    def _call(self, action: str) -> Iterator[None]:
        """Turn the engine's errors into one-line ``StoreError``s naming the URI."""
        from pymilvus.exceptions import MilvusException

        try:
            yield
        except MilvusException as error:
            message = getattr(error, "message", "") or str(error)
            raise StoreError(f"{self.uri}: {action}: {_one_line(message)}") from None
        except Exception as error:  # grpc errors, closed channels, refused connections
            if type(error).__module__.split(".")[0] not in ("grpc", "pymilvus", "milvus_lite"):
                raise
            raise StoreError(f"{self.uri}: {action}: {_one_line(str(error))}") from None

    def exists(self) -> bool:
        with self._call("cannot list collections"):
            return bool(self.client.has_collection(self.name))

    def info(self) -> dict[str, Any]:
        """The mmembed settings recorded in the collection ({} when it has none)."""
        with self._call(f"cannot describe collection {self.name}"):
            described = self.client.describe_collection(self.name)
        properties = described.get("properties") or {}
        try:
            info = json.loads(properties.get(PROPERTY, "{}"))
        except ValueError:
            return {}
        vector = next((f for f in described["fields"] if f["name"] == "vector"), None)
        if vector is not None:
            info["field_dim"] = int(vector["params"]["dim"])
        info["num_shards"] = described.get("num_shards")
        return info

    def create(self, dim: int, info: dict[str, Any], options: CollectionOptions) -> None:
        """Create the collection with its index and recorded settings."""
        from pymilvus import DataType

        if self.uri.embedded and options.index_type not in LITE_INDEX_TYPES:
            raise StoreError(
                f"{self.uri}: Milvus Lite does not build {options.index_type} "
                f"(it builds {', '.join(LITE_INDEX_TYPES)}); use one of those, or a Milvus server"
            )
        with self._call(f"cannot create collection {self.name}"):
            schema = self.client.create_schema(auto_id=False, enable_dynamic_field=False)
            schema.add_field("id", DataType.VARCHAR, is_primary=True, max_length=MAX_ID + 80)
            schema.add_field("vector", DataType.FLOAT_VECTOR, dim=dim)
            schema.add_field("position", DataType.INT64)
            for name, limit in (("path", MAX_ID), ("source", MAX_ID), ("snippet", MAX_SNIPPET)):
                schema.add_field(name, DataType.VARCHAR, max_length=limit)
            schema.add_field("modality", DataType.VARCHAR, max_length=32)
            schema.add_field("content_hash", DataType.VARCHAR, max_length=128)
            schema.add_field("metadata", DataType.JSON)
            index = self.client.prepare_index_params()
            index.add_index(
                "vector",
                index_type=options.index_type,
                metric_type="IP",
                params=_build_params(options.build_params),
            )
            index.add_index("modality", index_type="INVERTED")
            self.client.create_collection(
                self.name,
                schema=schema,
                index_params=index,
                num_shards=options.shards,
                properties={PROPERTY: json.dumps(info, sort_keys=True)},
            )
        self.load(options.replicas)

    def load(self, replicas: int | None = None) -> None:
        """Load the collection for search (a no-op when it is loaded)."""
        with self._call(f"cannot load collection {self.name}"):
            if replicas and replicas > 1:
                self.client.load_collection(self.name, replica_number=replicas)
            else:
                self.client.load_collection(self.name)

    def count(self) -> int:
        with self._call(f"cannot count collection {self.name}"):
            result = self.client.query(self.name, filter="", output_fields=["count(*)"])
        return int(result[0]["count(*)"])

    def upsert(self, rows: list[dict[str, Any]]) -> None:
        """Write entities (see the module docstring); replaces those with the same ``id``."""
        if rows:
            with self._call(f"the engine refused a write to {self.name}"):
                self.client.upsert(self.name, rows)

    def delete(self, keys: Sequence[str]) -> None:
        for start in range(0, len(keys), 1000):
            with self._call(f"the engine refused a delete in {self.name}"):
                self.client.delete(self.name, ids=list(keys[start : start + 1000]))

    def vectors(self, keys: Sequence[str]) -> dict[str, np.ndarray]:
        """The stored vectors of ``keys`` (missing keys left out)."""
        found: dict[str, np.ndarray] = {}
        for start in range(0, len(keys), 1000):
            with self._call(f"cannot read vectors of {self.name}"):
                rows = self.client.get(
                    self.name, ids=list(keys[start : start + 1000]), output_fields=["vector"]
                )
            for row in rows:
                found[row["id"]] = np.asarray(row["vector"], dtype=np.float32)
        return found

    def scan(self, with_vectors: bool, batch: int = 2000) -> Iterator[list[dict[str, Any]]]:
        """Every entity's id (and vector), in batches."""
        fields = ["id", "vector"] if with_vectors else ["id"]
        with self._call(f"cannot read collection {self.name}"):
            iterator = self.client.query_iterator(
                self.name, batch_size=batch, filter="", output_fields=fields
            )
        try:
            while True:
                with self._call(f"cannot read collection {self.name}"):
                    rows = iterator.next()
                if not rows:
                    return
                yield rows
        finally:
            iterator.close()

    def search(
        self, queries: np.ndarray, k: int, search_params: dict[str, int], where: str = ""
    ) -> list[list[dict[str, Any]]]:
        """Top ``k`` entities per query: ``{"id", "distance", "entity": {...}}``, best first."""
        with self._call(f"search in {self.name} failed"):
            return self.client.search(
                self.name,
                data=[np.asarray(row, dtype=np.float32) for row in queries],
                limit=k,
                filter=where,
                search_params={"metric_type": "IP", "params": dict(search_params)},
                output_fields=list(OUTPUT_FIELDS),
            )

    def flush(self) -> None:
        with self._call(f"cannot flush {self.name}"):
            self.client.flush(self.name)

    def wait_indexed(self, timeout: float | None = None) -> None:
        """Block until the engine has built the vector index over what was flushed.

        A flush returns before the index exists: until then a search scans the new segments by
        brute force (Milvus Lite 3.2 builds HNSW on a background thread; at 10^5 vectors a
        search right after the flush took 10x longer than one after the build). Milvus Lite's
        DescribeIndex always answers "finished", so for the embedded engine this waits on its
        background worker; a server is polled for pending index rows, for ``timeout`` seconds
        at most (a cluster may index a large upload for longer: it searches meanwhile, so
        that is logged, not an error).
        """
        if self.uri.embedded:
            from milvus_lite.server_manager import server_manager_instance

            entry = server_manager_instance._servers.get(str(self.uri.path))
            if entry is not None:  # this process serves the database
                with self._call(f"cannot wait for the index of {self.name}"):
                    entry[1].get_collection(self.name)._wait_for_bg(timeout)
            return
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            with self._call(f"cannot describe the index of {self.name}"):
                names = self.client.list_indexes(self.name, field_name="vector")
                described = self.client.describe_index(self.name, names[0]) if names else {}
            if not described or not described.get("pending_index_rows"):
                return
            if time.monotonic() > deadline:
                logger.warning(
                    "%s: the engine is still indexing %s rows of %s (searches scan them until "
                    "it is done)",
                    self.uri,
                    described["pending_index_rows"],
                    self.name,
                )
                return
            time.sleep(0.5)

    def close(self) -> None:
        with contextlib.suppress(Exception):  # closing a dead connection has nothing to report
            self.client.close()


def _build_params(params: dict[str, int]) -> dict[str, Any]:
    """Index build parameters as both engines read them: pymilvus sends each key as its own
    pair, which a Milvus server reads; Milvus Lite 3.2.2 reads only a JSON ``params`` pair (and
    silently builds with its defaults otherwise, e.g. IVF nlist 128), which a server also
    accepts and merges."""
    return {**params, "params": dict(params)} if params else {}


def _locked(path: Path) -> bool:
    """Whether another process holds Milvus Lite's lock on the database folder ``path``."""
    from milvus_lite.server_manager import server_manager_instance

    lock = path / "LOCK"
    if not lock.is_file() or str(path) in getattr(server_manager_instance, "_servers", {}):
        return False  # no database yet, or this process serves it
    with open(lock, "a+b") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
    return False


def _one_line(text: str) -> str:
    return " ".join(str(text).split())[:500]
