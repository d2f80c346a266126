"""Where an index lives: a folder (FAISS + SQLite) or a collection of a vector engine.

The one place that reads index targets. Forms::

    my-index/                                        a folder: FAISS + SQLite (store.py)
    milvus-lite:///PATH/db.db?collection=NAME         Milvus Lite, embedded in this process
    milvus://HOST:PORT/NAME                           a Milvus server or cluster (gRPC)
    qdrant-local:///PATH?collection=NAME              refused: see QDRANT_REASON
    qdrant://HOST:PORT/NAME                           refused: see QDRANT_REASON

Every URI may end in ``?ledger=FOLDER``: the local ledger of what was embedded (default: next
to a Milvus Lite database, else under ``$MMEMBED_HOME/stores``).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

from ...errors import UsageError
from ...hub.env import mmembed_home

SCHEMES = ("milvus-lite", "milvus", "qdrant-local", "qdrant")
DEFAULT_COLLECTION = "mmembed"
MILVUS_PORT = 19530
# Why Qdrant is not a backend (qdrant-client 1.20.0, `benchmarks/store.py --qdrant-count`):
QDRANT_REASON = (
    "Qdrant's local mode searches by brute force in Python (46 ms per query at 2x10^4 vectors, "
    "200 upserts/s), so tests could not exercise the engine a cluster runs; use milvus-lite:// "
    "or milvus://"
)
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,254}$")  # Milvus collection names


@dataclass(frozen=True)
class StoreURI:
    """A parsed engine URI.

    Attributes:
        text: the URI as given (named in every error).
        scheme: "milvus-lite" or "milvus".
        collection: the collection name.
        path: the Milvus Lite database folder (milvus-lite only).
        host: the server's host (milvus only).
        port: the server's port (milvus only).
        ledger: the local ledger folder.
    """

    text: str
    scheme: str
    collection: str
    path: Path | None = None
    host: str = ""
    port: int = 0
    ledger: Path = Path()

    @property
    def embedded(self) -> bool:
        """Whether the engine runs inside this process (one process at a time)."""
        return self.scheme == "milvus-lite"

    @property
    def client_uri(self) -> str:
        """What ``pymilvus.MilvusClient(uri=...)`` takes."""
        if self.path is not None:
            return str(self.path)
        return f"http://{self.host}:{self.port}"

    def __str__(self) -> str:
        return self.text


def is_uri(target: str | os.PathLike) -> bool:
    """Whether ``target`` is written as a URI (``scheme://...``) rather than a folder."""
    return isinstance(target, str) and _SCHEME.match(target) is not None


def parse(target: str | os.PathLike) -> StoreURI | None:
    """The engine URI ``target`` names, or None for a plain folder.

    Raises:
        UsageError: an unknown scheme, a refused backend or a malformed URI (names the URI).
    """
    if not is_uri(target):
        return None
    text = str(target)
    scheme = _SCHEME.match(text).group(1).lower()
    if scheme not in SCHEMES:
        raise UsageError(
            f"{text}: unknown scheme {scheme}:// (use milvus-lite://, milvus:// or a folder)"
        )
    if scheme.startswith("qdrant"):
        raise UsageError(f"{text}: Qdrant is not supported: {QDRANT_REASON}")
    parts = urlsplit(text)
    query = {key: values[-1] for key, values in parse_qs(parts.query).items()}
    unknown = set(query) - {"collection", "ledger"}
    if unknown:
        raise UsageError(
            f"{text}: unknown option {', '.join(sorted(unknown))} (collection, ledger)"
        )
    if scheme == "milvus-lite":
        if parts.netloc:
            raise UsageError(f"{text}: write milvus-lite:///PATH/db.db (three slashes, a path)")
        raw = unquote(parts.path)
        if not raw or raw == "/":
            raise UsageError(f"{text}: no database path (milvus-lite:///PATH/db.db)")
        path = Path(raw).absolute()
        collection = query.get("collection", DEFAULT_COLLECTION)
        ledger = path.parent / f"{path.name}.ledger" / collection
        location = {"path": path}
    else:
        try:
            host, port = parts.hostname or "", parts.port or MILVUS_PORT
        except ValueError:
            raise UsageError(f"{text}: the port is not a number") from None
        if not host:
            raise UsageError(f"{text}: no host (milvus://HOST:PORT/COLLECTION)")
        collection = unquote(parts.path).strip("/") or query.get("collection", "")
        if not collection:
            raise UsageError(f"{text}: no collection (milvus://HOST:PORT/COLLECTION)")
        ledger = mmembed_home() / "stores" / "milvus" / f"{host}-{port}" / collection
        location = {"host": host, "port": port}
    if not _NAME.match(collection):
        raise UsageError(
            f"{text}: collection {collection!r} must be letters, digits and _, "
            "starting with a letter or _"
        )
    if "ledger" in query:
        ledger = Path(query["ledger"]).expanduser().absolute()
    return StoreURI(text, scheme, collection, ledger=ledger, **location)
