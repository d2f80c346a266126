"""On-disk layout of an index: immutable generations swapped by an atomic manifest.

::

    INDEX_DIR/
      current.json        {"generation": "gen-000003"}; replaced with os.replace
      gen-000003/         one complete, immutable generation
        info.json         model, instruction, dim, count, vector structure and its recall
        vectors.npy       float32 (N, D) unit vectors; row = position
        meta.sqlite       items (position, id, path, modality, hash, metadata, thumbnail)
                          and skipped (id, path, reason)
        vectors.faiss     IVF/HNSW structure (flat indexes are rebuilt from vectors.npy)
        codes.faiss       binary sign codes (binary indexes)
      staging.sqlite      checkpoint: vectors embedded since the last generation
      ray-shards/         Parquet shards of a Ray run, merged into staging.sqlite
      .lock               held by the one process writing

A writer builds ``gen-N.tmp``, renames it to ``gen-N`` and only then swaps
``current.json``; a kill at any moment leaves the previous generation readable.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import shutil
import sqlite3
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .walk import FileStamp

logger = logging.getLogger(__name__)

CURRENT = "current.json"
STAGING = "staging.sqlite"
RAY_SHARDS = "ray-shards"
FORMAT_VERSION = 1
ITEM_COLUMNS = (
    "pos",
    "id",
    "path",
    "modality",
    "content_hash",
    "size",
    "mtime_ns",
    "source",
    "metadata",
    "snippet",
    "thumbnail",
)
SKIPPED_COLUMNS = ("id", "path", "modality", "content_hash", "source", "reason")
_SCHEMA = """
CREATE TABLE items (
    pos INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, path TEXT, modality TEXT NOT NULL,
    content_hash TEXT NOT NULL, size INTEGER, mtime_ns INTEGER, source TEXT,
    metadata TEXT, snippet TEXT, thumbnail BLOB
);
CREATE INDEX items_hash ON items(content_hash);
CREATE INDEX items_modality ON items(modality);
CREATE TABLE skipped (
    id TEXT PRIMARY KEY, path TEXT, modality TEXT, content_hash TEXT, source TEXT, reason TEXT
);
"""


def is_index(folder: str | os.PathLike) -> bool:
    """Whether ``folder`` holds an index (a readable ``current.json``)."""
    return (Path(folder) / CURRENT).is_file()


@contextlib.contextmanager
def write_lock(folder: Path) -> Iterator[None]:
    """Hold the index's writer lock (released by the kernel if the process dies)."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


class Generation:
    """A read-only view of one generation: info, memory-mapped vectors and metadata."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.info: dict[str, Any] = json.loads((folder / "info.json").read_text())
        self.vectors: np.ndarray = _load_vectors(folder / "vectors.npy")
        uri = f"file:{folder / 'meta.sqlite'}?mode=ro"
        self.db = sqlite3.connect(uri, uri=True, check_same_thread=False)
        self.db.row_factory = sqlite3.Row

    @classmethod
    def current(cls, index_dir: Path, attempts: int = 3) -> Generation | None:
        """The generation ``current.json`` names (None for an empty folder)."""
        for attempt in range(attempts):
            try:
                name = json.loads((index_dir / CURRENT).read_text())["generation"]
                return cls(index_dir / name)
            except FileNotFoundError:
                if not (index_dir / CURRENT).exists():
                    return None
                time.sleep(0.05 * (attempt + 1))  # a writer swapped generations meanwhile
        raise FileNotFoundError(f"index {index_dir} changed while opening; try again")

    @property
    def name(self) -> str:
        return self.folder.name

    def __len__(self) -> int:
        return len(self.vectors)

    def rows(self, positions: Iterable[int], thumbnails: bool = False) -> dict[int, dict]:
        """Metadata rows by position (thumbnail bytes only when asked)."""
        columns = ITEM_COLUMNS if thumbnails else ITEM_COLUMNS[:-1]
        wanted = sorted({int(position) for position in positions if position >= 0})
        found: dict[int, dict] = {}
        for start in range(0, len(wanted), 500):
            chunk = wanted[start : start + 500]
            query = (
                f"SELECT {', '.join(columns)} FROM items "
                f"WHERE pos IN ({', '.join('?' * len(chunk))})"
            )
            for row in self.db.execute(query, chunk):
                found[row["pos"]] = _decode_row(dict(row))
        return found

    def all_rows(self, thumbnails: bool = False) -> Iterator[dict]:
        """Every item row, in position order."""
        columns = ITEM_COLUMNS if thumbnails else ITEM_COLUMNS[:-1]
        for row in self.db.execute(f"SELECT {', '.join(columns)} FROM items ORDER BY pos"):
            yield _decode_row(dict(row))

    def positions_of(self, modalities: Iterable[str]) -> np.ndarray:
        """Positions of the items of the given modalities."""
        names = list(modalities)
        query = f"SELECT pos FROM items WHERE modality IN ({', '.join('?' * len(names))})"
        return np.array([row[0] for row in self.db.execute(query, names)], dtype=np.int64)

    def stamps(self) -> dict[str, FileStamp]:
        """Size, mtime and hash of each indexed file, by item id."""
        query = "SELECT id, size, mtime_ns, content_hash FROM items WHERE path IS NOT NULL"
        return {row[0]: FileStamp(row[1], row[2], row[3]) for row in self.db.execute(query)}

    def skipped(self) -> list[dict]:
        """Items that could not be indexed, with the reason."""
        query = f"SELECT {', '.join(SKIPPED_COLUMNS)} FROM skipped ORDER BY id"
        return [dict(row) for row in self.db.execute(query)]

    def close(self) -> None:
        self.db.close()


def _load_vectors(path: Path) -> np.ndarray:
    """A read-only memory map of ``vectors.npy`` (a plain array when it is empty)."""
    try:
        return np.load(path, mmap_mode="r")
    except ValueError:  # numpy cannot memory-map an empty array
        return np.load(path)


def _decode_row(row: dict) -> dict:
    row["metadata"] = json.loads(row["metadata"]) if row.get("metadata") else {}
    return row


def write_generation(
    index_dir: Path,
    info: dict[str, Any],
    vectors: np.ndarray,
    rows: Iterable[dict],
    skipped: Iterable[dict],
    save_structure: Any,
) -> str:
    """Write a complete new generation and make it current; returns its name.

    Args:
        index_dir: the index folder (the writer lock must be held).
        info: the generation's ``info.json``.
        vectors: ``(N, D)`` float32, row = position.
        rows: item rows (``ITEM_COLUMNS``; metadata as a dict) in position order.
        skipped: skipped rows (``SKIPPED_COLUMNS``).
        save_structure: called with the new folder to write the search structure files.
    """
    name = f"gen-{next_generation_number(index_dir):06d}"
    temporary = index_dir / f"{name}.tmp"
    shutil.rmtree(temporary, ignore_errors=True)
    temporary.mkdir(parents=True)
    with open(temporary / "vectors.npy", "wb") as handle:
        np.save(handle, np.ascontiguousarray(vectors, dtype=np.float32))
    _write_metadata(temporary / "meta.sqlite", rows, skipped)
    save_structure(temporary)
    write_json_atomic(temporary / "info.json", {**info, "format": FORMAT_VERSION})
    for path in temporary.iterdir():
        _fsync_file(path)
    os.rename(temporary, index_dir / name)
    _fsync_dir(index_dir)
    write_json_atomic(index_dir / CURRENT, {"generation": name, "format": FORMAT_VERSION})
    return name


def _write_metadata(path: Path, rows: Iterable[dict], skipped: Iterable[dict]) -> None:
    db = sqlite3.connect(path)
    try:
        db.executescript(_SCHEMA)
        insert = f"INSERT INTO items VALUES ({', '.join('?' * len(ITEM_COLUMNS))})"
        batch: list[tuple] = []
        for row in rows:
            values = {**row, "metadata": json.dumps(row.get("metadata") or {}, sort_keys=True)}
            batch.append(tuple(values.get(column) for column in ITEM_COLUMNS))
            if len(batch) >= 2000:
                db.executemany(insert, batch)
                batch.clear()
        db.executemany(insert, batch)
        db.executemany(
            f"INSERT OR REPLACE INTO skipped VALUES ({', '.join('?' * len(SKIPPED_COLUMNS))})",
            [tuple(row.get(column) for column in SKIPPED_COLUMNS) for row in skipped],
        )
        db.commit()
    finally:
        db.close()


def next_generation_number(index_dir: Path) -> int:
    """One more than any generation folder present, finished or not."""
    numbers = [0]
    for path in index_dir.glob("gen-*"):
        digits = path.name[4:].split(".")[0]
        if digits.isdigit():
            numbers.append(int(digits))
    return max(numbers) + 1


def remove_stale(index_dir: Path, keep: str | None) -> None:
    """Delete generations other than ``keep`` (old ones and unfinished ``.tmp`` ones)."""
    for path in index_dir.glob("gen-*"):
        if path.name != keep:
            shutil.rmtree(path, ignore_errors=True)


def write_json_atomic(path: Path, data: dict) -> None:
    """Write JSON to a temporary file, fsync it, and move it over ``path``."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(temporary, "w") as handle:
        json.dump(data, handle, indent=2, sort_keys=True)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)
    _fsync_dir(path.parent)


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@dataclass
class Staged:
    """One embedded item kept in the staging checkpoint."""

    vector: np.ndarray | None  # None when embedding failed
    snippet: str = ""
    thumbnail: bytes | None = None
    reason: str = ""  # why it failed


class Staging:
    """Checkpoint of embeddings made since the last generation, keyed by content hash.

    Each batch is committed in one SQLite transaction, so a killed run loses at most the
    batch in flight and a re-run reuses everything committed. The checkpoint is tied to
    the embedding settings (``config``) and discarded when they differ.
    """

    def __init__(self, index_dir: Path, config: dict[str, Any]):
        self.path = index_dir / STAGING
        self.db = sqlite3.connect(self.path)
        self.db.executescript(
            "CREATE TABLE IF NOT EXISTS config (key TEXT PRIMARY KEY, value TEXT);"
            "CREATE TABLE IF NOT EXISTS staged (content_hash TEXT PRIMARY KEY, vector BLOB,"
            " snippet TEXT, thumbnail BLOB, reason TEXT);"
        )
        wanted = json.dumps(config, sort_keys=True)
        stored = self.db.execute("SELECT value FROM config WHERE key = 'config'").fetchone()
        if stored is not None and stored[0] != wanted:
            logger.info("embedding settings changed; discarding the staging checkpoint")
            self.db.execute("DELETE FROM staged")
        self.db.execute("INSERT OR REPLACE INTO config VALUES ('config', ?)", (wanted,))
        self.db.commit()

    def hashes(self) -> set[str]:
        """Content hashes already staged (embedded or failed)."""
        return {row[0] for row in self.db.execute("SELECT content_hash FROM staged")}

    def put(self, entries: dict[str, Staged]) -> None:
        """Commit one batch atomically."""
        self.db.executemany(
            "INSERT OR REPLACE INTO staged VALUES (?, ?, ?, ?, ?)",
            [
                (
                    key,
                    None
                    if entry.vector is None
                    else np.asarray(entry.vector, np.float32).tobytes(),
                    entry.snippet,
                    entry.thumbnail,
                    entry.reason,
                )
                for key, entry in entries.items()
            ],
        )
        self.db.commit()

    def get(self, keys: Iterable[str]) -> dict[str, Staged]:
        """Staged entries for the given content hashes (missing ones left out)."""
        wanted = list(dict.fromkeys(keys))
        found: dict[str, Staged] = {}
        for start in range(0, len(wanted), 500):
            chunk = wanted[start : start + 500]
            query = (
                "SELECT content_hash, vector, snippet, thumbnail, reason FROM staged "
                f"WHERE content_hash IN ({', '.join('?' * len(chunk))})"
            )
            for key, vector, snippet, thumbnail, reason in self.db.execute(query, chunk):
                array = None if vector is None else np.frombuffer(vector, dtype=np.float32)
                found[key] = Staged(array, snippet or "", thumbnail, reason or "")
        return found

    def close(self) -> None:
        self.db.close()

    def discard(self) -> None:
        """Close and delete the checkpoint (after its content reached a generation)."""
        self.close()
        for suffix in ("", "-journal", "-wal", "-shm"):
            Path(f"{self.path}{suffix}").unlink(missing_ok=True)
