"""On-disk layout of an index: immutable generations swapped by an atomic manifest.

::

    INDEX_DIR/
      current.json        {"generation": "gen-000003", "files": {name: {size, xxh3_128}},
                          "checksum": ...}; replaced with os.replace (see integrity.py)
      gen-000003/         one complete, immutable generation
        info.json         model, instruction, dim, count, vector structure and its recall
        vectors.npy       float32 (N, D) unit vectors; row = position
        meta.sqlite       items (position, id, path, modality, hash, metadata, thumbnail)
                          and skipped (id, path, reason)
        vectors.faiss     IVF/HNSW structure (flat indexes are rebuilt from vectors.npy)
        codes.faiss       binary sign codes (binary indexes)
      staging.sqlite      checkpoint: vectors embedded since the last generation
      ray-shards/         Parquet shards of a Ray run, merged into staging.sqlite
      .lock               held by the one process writing (holds its pid)

A writer builds ``gen-N.tmp``, renames it to ``gen-N`` and only then swaps
``current.json``; a kill at any moment leaves the previous generation readable. A reader
that finds a file missing or damaged raises ``CorruptIndexError`` naming it; the next
writer rebuilds the generation from its intact parts (``repair.py``).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import re
import shutil
import sqlite3
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import CorruptIndexError
from ..hub.atomic import fsync_path, write_atomic
from . import integrity
from .names import from_sql, to_sql
from .walk import FileStamp

logger = logging.getLogger(__name__)

CURRENT = "current.json"
STAGING = "staging.sqlite"
RAY_SHARDS = "ray-shards"
LOCK = ".lock"
MANIFEST_INFO = ("model", "instruction", "matryoshka_dim", "dim", "count", "index_type")
FORMAT_VERSION = 2  # 2: checksummed files, ctime and inode stamps
_GENERATION_NAME = re.compile(r"gen-\d{6}")
ITEM_COLUMNS = (
    "pos",
    "id",
    "path",
    "modality",
    "content_hash",
    "size",
    "mtime_ns",
    "ctime_ns",
    "inode",
    "source",
    "metadata",
    "snippet",
    "thumbnail",
)
SKIPPED_COLUMNS = ("id", "path", "modality", "content_hash", "source", "reason")
# Columns that hold names or text: stored through ``names.to_sql``, so any file name fits.
TEXT_COLUMNS = frozenset({"id", "path", "modality", "content_hash", "source", "snippet", "reason"})
_SCHEMA = """
CREATE TABLE items (
    pos INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, path TEXT, modality TEXT NOT NULL,
    content_hash TEXT NOT NULL, size INTEGER, mtime_ns INTEGER, ctime_ns INTEGER,
    inode INTEGER, source TEXT,
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
    """Hold the index's writer lock (released by the kernel if the process dies).

    The holder writes its pid into the lock file, so a second writer can say whom it waits for.
    """
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
            logger.warning("waiting for another `mmembed index` on %s (pid %s)", folder, holder)
            fcntl.flock(fd, fcntl.LOCK_EX)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        try:
            yield
        finally:
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def read_current(index_dir: Path) -> dict[str, Any] | None:
    """The parsed, checked ``current.json`` (None when the folder holds no index).

    Raises:
        CorruptIndexError: ``current.json`` is damaged, or missing next to generations.
    """
    try:
        text = (index_dir / CURRENT).read_bytes()
    except FileNotFoundError:
        if published_generations(index_dir):
            raise CorruptIndexError(str(index_dir), CURRENT, "is missing") from None
        return None
    except IsADirectoryError:
        raise CorruptIndexError(str(index_dir), CURRENT, "is not a file") from None
    try:
        manifest = json.loads(text)
    except (ValueError, UnicodeDecodeError):
        raise CorruptIndexError(str(index_dir), CURRENT, "is not valid JSON") from None
    if not isinstance(manifest, dict) or not _GENERATION_NAME.fullmatch(
        str(manifest.get("generation"))
    ):
        raise CorruptIndexError(str(index_dir), CURRENT, "does not name a generation")
    sealed = "files" in manifest or "checksum" in manifest or manifest.get("format", 1) >= 2
    if sealed and not integrity.is_sealed(manifest):
        raise CorruptIndexError(str(index_dir), CURRENT, "does not match its checksum")
    if manifest.get("format", 1) > FORMAT_VERSION:
        raise CorruptIndexError(
            str(index_dir), CURRENT, f"has format {manifest['format']}; upgrade mmembed to read it"
        )
    return manifest


def published_generations(index_dir: Path) -> list[Path]:
    """Finished generation folders (``gen-NNNNNN``), oldest first."""
    if not index_dir.is_dir():
        return []
    return sorted(
        path
        for path in index_dir.iterdir()
        if path.is_dir() and _GENERATION_NAME.fullmatch(path.name)
    )


class Generation:
    """A read-only view of one generation: info, memory-mapped vectors and metadata.

    Opening checks every file's size and the headers; checksums are compared for small
    files, files read whole, and every file when ``verify`` is set (see ``integrity.py``).
    Exact (flat) indexes, whose vectors are read whole, are checked to be finite unit vectors.
    """

    def __init__(self, folder: Path, files: dict[str, dict] | None = None, verify: bool = False):
        self.folder = folder
        self.index_dir = folder.parent
        if files is not None:
            structures = {"vectors.faiss", "codes.faiss"} & files.keys()
            whole = set() if structures else {"vectors.npy"}  # flat: read whole anyway
            integrity.check_files(self.index_dir, folder, files, verify, whole)
        self.info: dict[str, Any] = self._read_info()
        integrity.check_headers(self.index_dir, folder, self.info["count"], self.info["dim"])
        self.vectors: np.ndarray = _load_vectors(folder / "vectors.npy")
        if verify or self.info["vectors"].get("kind") == "flat":
            bad = integrity.bad_rows(self.vectors)
            if len(bad):
                raise CorruptIndexError(
                    str(self.index_dir),
                    f"{folder.name}/vectors.npy",
                    f"holds {len(bad)} vectors that are not finite unit vectors",
                )
        with self.reading():
            uri = f"file:{folder / 'meta.sqlite'}?mode=ro"
            self.db = sqlite3.connect(uri, uri=True, check_same_thread=False)
            self.db.row_factory = sqlite3.Row
            present = {row[1] for row in self.db.execute("PRAGMA table_info(items)")}
            self.item_columns = tuple(column for column in ITEM_COLUMNS if column in present)
            count = self.db.execute("SELECT count(*) FROM items").fetchone()[0]
        if count != self.info["count"]:
            self.db.close()
            raise CorruptIndexError(
                str(self.index_dir),
                f"{folder.name}/meta.sqlite",
                f"lists {count} items, expected {self.info['count']}",
            )

    def _read_info(self) -> dict[str, Any]:
        where = f"{self.folder.name}/info.json"
        try:
            info = json.loads((self.folder / "info.json").read_bytes())
        except FileNotFoundError:
            raise CorruptIndexError(str(self.index_dir), where, "is missing") from None
        except (ValueError, UnicodeDecodeError):
            raise CorruptIndexError(str(self.index_dir), where, "is not valid JSON") from None
        wanted = {"count": int, "dim": int, "vectors": dict, "model": str}
        if not isinstance(info, dict) or any(
            not isinstance(info.get(key), kind) for key, kind in wanted.items()
        ):
            raise CorruptIndexError(str(self.index_dir), where, "lacks count, dim or model")
        return info

    @contextlib.contextmanager
    def reading(self) -> Iterator[None]:
        """Turn SQLite's errors on a damaged ``meta.sqlite`` into a CorruptIndexError."""
        try:
            yield
        except sqlite3.DatabaseError as error:
            raise CorruptIndexError(
                str(self.index_dir), f"{self.folder.name}/meta.sqlite", f"cannot be read ({error})"
            ) from None

    @classmethod
    def current(cls, index_dir: Path, verify: bool = False, attempts: int = 3) -> Generation | None:
        """The generation ``current.json`` names (None for a folder without an index).

        Raises:
            CorruptIndexError: a file is missing or damaged (and no writer swapped
                generations meanwhile).
        """
        for attempt in range(attempts):
            manifest = read_current(index_dir)
            if manifest is None:
                return None
            try:
                return cls(index_dir / manifest["generation"], manifest.get("files"), verify)
            except CorruptIndexError:
                if attempt + 1 == attempts or read_current(index_dir) == manifest:
                    raise
                time.sleep(0.05 * (attempt + 1))  # a writer swapped generations meanwhile
        raise AssertionError("unreachable")

    @property
    def name(self) -> str:
        return self.folder.name

    def __len__(self) -> int:
        return len(self.vectors)

    def rows(self, positions: Iterable[int], thumbnails: bool = False) -> dict[int, dict]:
        """Metadata rows by position (thumbnail bytes only when asked)."""
        columns = self._columns(thumbnails)
        wanted = sorted({int(position) for position in positions if position >= 0})
        found: dict[int, dict] = {}
        with self.reading():
            for start in range(0, len(wanted), 500):
                chunk = wanted[start : start + 500]
                query = (
                    f"SELECT {', '.join(columns)} FROM items "
                    f"WHERE pos IN ({', '.join('?' * len(chunk))})"
                )
                for row in self.db.execute(query, chunk):
                    found[row["pos"]] = self._decode_row(dict(row))
        missing = set(wanted) - set(found)
        if missing:
            raise CorruptIndexError(
                str(self.index_dir),
                f"{self.folder.name}/meta.sqlite",
                f"has no row for position {min(missing)}",
            )
        return found

    def all_rows(self, thumbnails: bool = False) -> Iterator[dict]:
        """Every item row, in position order."""
        columns = self._columns(thumbnails)
        with self.reading():
            query = f"SELECT {', '.join(columns)} FROM items ORDER BY pos"
            rows = [self._decode_row(dict(row)) for row in self.db.execute(query)]
        yield from rows

    def positions_of(self, modalities: Iterable[str]) -> np.ndarray:
        """Positions of the items of the given modalities."""
        names = list(modalities)
        query = f"SELECT pos FROM items WHERE modality IN ({', '.join('?' * len(names))})"
        with self.reading():
            return np.array([row[0] for row in self.db.execute(query, names)], dtype=np.int64)

    def stamps(self) -> dict[str, FileStamp]:
        """What the index knows of each indexed file (to skip re-hashing), by item id."""
        return stamps_of(self.all_rows())

    def skipped(self) -> list[dict]:
        """Items that could not be indexed, with the reason."""
        query = f"SELECT {', '.join(SKIPPED_COLUMNS)} FROM skipped ORDER BY id"
        with self.reading():
            return [text_row(dict(row)) for row in self.db.execute(query)]

    def _columns(self, thumbnails: bool) -> tuple[str, ...]:
        return tuple(column for column in self.item_columns if thumbnails or column != "thumbnail")

    def _decode_row(self, row: dict) -> dict:
        row = text_row(row)
        try:
            row["metadata"] = json.loads(row["metadata"]) if row.get("metadata") else {}
        except ValueError:
            raise CorruptIndexError(
                str(self.index_dir),
                f"{self.folder.name}/meta.sqlite",
                f"holds damaged metadata at position {row.get('pos')}",
            ) from None
        for column in ITEM_COLUMNS:
            row.setdefault(column, None)  # columns an older format lacks
        return row

    def close(self) -> None:
        self.db.close()


def text_row(row: dict) -> dict:
    """A row read from SQLite with its text columns back as the str that was stored."""
    return {key: from_sql(value) if key in TEXT_COLUMNS else value for key, value in row.items()}


def _load_vectors(path: Path) -> np.ndarray:
    """A read-only memory map of ``vectors.npy`` (a plain array when it is empty)."""
    try:
        return np.load(path, mmap_mode="r")
    except ValueError:  # numpy cannot memory-map an empty array
        return np.load(path)
    except FileNotFoundError:  # removed after the checks: a writer replaced the generation
        where = f"{path.parent.name}/{path.name}"
        raise CorruptIndexError(str(path.parent.parent), where, "is missing") from None


def stamps_of(rows: Iterable[dict]) -> dict[str, FileStamp]:
    """``FileStamp`` of each file row, by item id."""
    return {
        row["id"]: FileStamp(
            row["size"], row["mtime_ns"], row["ctime_ns"], row["inode"], row["content_hash"]
        )
        for row in rows
        if row["path"] is not None
    }


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
    bad = integrity.bad_rows(vectors)
    if len(bad):
        raise ValueError(
            f"refusing to write {len(bad)} vectors that are not finite unit vectors "
            f"(first at position {bad[0]})"
        )
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
        fsync_path(path)
    files = integrity.describe_files(temporary)
    os.rename(temporary, index_dir / name)
    fsync_path(index_dir)
    settings = {key: info.get(key) for key in MANIFEST_INFO}  # a spare copy, for repairs
    manifest = {"generation": name, "format": FORMAT_VERSION, "files": files, "info": settings}
    write_json_atomic(index_dir / CURRENT, integrity.seal(manifest))
    return name


def _write_metadata(path: Path, rows: Iterable[dict], skipped: Iterable[dict]) -> None:
    db = sqlite3.connect(path)
    try:
        db.executescript(_SCHEMA)
        insert = f"INSERT INTO items VALUES ({', '.join('?' * len(ITEM_COLUMNS))})"
        batch: list[tuple] = []
        for row in rows:
            values = {**row, "metadata": json.dumps(row.get("metadata") or {}, sort_keys=True)}
            batch.append(tuple(to_sql(values.get(column)) for column in ITEM_COLUMNS))
            if len(batch) >= 2000:
                db.executemany(insert, batch)
                batch.clear()
        db.executemany(insert, batch)
        db.executemany(
            f"INSERT OR REPLACE INTO skipped VALUES ({', '.join('?' * len(SKIPPED_COLUMNS))})",
            [tuple(to_sql(row.get(column)) for column in SKIPPED_COLUMNS) for row in skipped],
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


def remove_temporaries(index_dir: Path) -> None:
    """Delete ``.NAME.PID.tmp`` files a killed writer left (call with the writer lock held)."""
    for path in index_dir.glob(".*.tmp"):
        if path.is_file():
            logger.info("removing %s left by an interrupted run", path.name)
            path.unlink(missing_ok=True)


def write_json_atomic(path: Path, data: dict) -> None:
    """Write JSON to a temporary file, fsync it, and move it over ``path``."""
    write_atomic(
        path, lambda temporary: temporary.write_text(json.dumps(data, indent=2, sort_keys=True))
    )


@dataclass
class Staged:
    """One embedded item kept in the staging checkpoint."""

    vector: np.ndarray | None  # None when embedding failed
    snippet: str = ""
    thumbnail: bytes | None = None
    reason: str = ""  # why it failed


class Staging:
    """Checkpoint of embeddings made since the last generation, keyed by cache key.

    Each batch is committed in one SQLite transaction, so a killed run loses at most the
    batch in flight and a re-run reuses everything committed. The checkpoint is tied to
    the embedding settings (``config``) and discarded when they differ or it is damaged.
    """

    def __init__(self, index_dir: Path, config: dict[str, Any]):
        self.path = index_dir / STAGING
        try:
            self.db = self._open({**config, "staging": 2})
        except sqlite3.DatabaseError as error:
            logger.warning("discarding a damaged staging checkpoint %s (%s)", self.path, error)
            self.discard()
            self.db = self._open({**config, "staging": 2})

    def _open(self, config: dict[str, Any]) -> sqlite3.Connection:
        db = sqlite3.connect(self.path)
        try:
            db.execute("CREATE TABLE IF NOT EXISTS config (key TEXT PRIMARY KEY, value TEXT)")
            wanted = json.dumps(config, sort_keys=True)
            stored = db.execute("SELECT value FROM config WHERE key = 'config'").fetchone()
            if stored is not None and stored[0] != wanted:
                logger.info("embedding settings changed; discarding the staging checkpoint")
                db.execute("DROP TABLE IF EXISTS staged")
            db.execute(
                "CREATE TABLE IF NOT EXISTS staged (cache_key TEXT PRIMARY KEY, vector BLOB,"
                " snippet TEXT, thumbnail BLOB, reason TEXT)"
            )
            db.execute("INSERT OR REPLACE INTO config VALUES ('config', ?)", (wanted,))
            db.commit()
            db.execute("SELECT count(*) FROM staged").fetchone()
        except sqlite3.DatabaseError:
            db.close()
            raise
        return db

    def keys(self) -> set[str]:
        """Cache keys already staged (embedded or failed)."""
        return {from_sql(row[0]) for row in self.db.execute("SELECT cache_key FROM staged")}

    def put(self, entries: dict[str, Staged]) -> None:
        """Commit one batch atomically."""
        self.db.executemany(
            "INSERT OR REPLACE INTO staged VALUES (?, ?, ?, ?, ?)",
            [
                (
                    to_sql(key),
                    None
                    if entry.vector is None
                    else np.asarray(entry.vector, np.float32).tobytes(),
                    to_sql(entry.snippet),
                    entry.thumbnail,
                    to_sql(entry.reason),
                )
                for key, entry in entries.items()
            ],
        )
        self.db.commit()

    def get(self, keys: Iterable[str]) -> dict[str, Staged]:
        """Staged entries for the given cache keys (missing ones left out)."""
        wanted = list(dict.fromkeys(keys))
        found: dict[str, Staged] = {}
        for start in range(0, len(wanted), 500):
            chunk = wanted[start : start + 500]
            query = (
                "SELECT cache_key, vector, snippet, thumbnail, reason FROM staged "
                f"WHERE cache_key IN ({', '.join('?' * len(chunk))})"
            )
            params = [to_sql(key) for key in chunk]
            for key, vector, snippet, thumbnail, reason in self.db.execute(query, params):
                array = None if vector is None else np.frombuffer(vector, dtype=np.float32)
                found[from_sql(key)] = Staged(
                    array, from_sql(snippet) or "", thumbnail, from_sql(reason) or ""
                )
        return found

    def close(self) -> None:
        if getattr(self, "db", None) is not None:
            self.db.close()

    def discard(self) -> None:
        """Close and delete the checkpoint (after its content reached a generation)."""
        self.close()
        for suffix in ("", "-journal", "-wal", "-shm"):
            Path(f"{self.path}{suffix}").unlink(missing_ok=True)
