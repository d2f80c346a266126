"""The local ledger of a collection: what was embedded and stored, with vector checksums.

::

    LEDGER_DIR/               (``StoreURI.ledger``)
      ledger.sqlite           config (settings, URI), items (file stamps, metadata,
                              thumbnail, xxh3 of the stored vector), skipped
      staging.sqlite          vectors embedded but not yet recorded as stored (store.Staging)
      .lock                   held by the one process writing
      onnx exports            the query towers, as next to a folder index

A row enters ``items`` only after the engine accepted its vector, in the same order as the
upload, so a killed or disconnected upload leaves rows the ledger does not know: the rerun
uploads them again under the same primary key (an upsert: never a duplicate), from the
staging checkpoint, without embedding them again.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import xxhash

from .. import store
from ..names import from_sql, to_sql
from ..walk import FileStamp

LEDGER = "ledger.sqlite"
# The folder index's item columns (less its row number), keyed for the engine, with the cache
# key and the vector's checksum that reconciliation compares.
COLUMNS = ("id", "key", "position", *store.ITEM_COLUMNS[2:], "cache_key", "checksum")
_TEXT = (store.TEXT_COLUMNS - {"reason"}) | {"key"}
_SCHEMA = """
CREATE TABLE IF NOT EXISTS config (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS items (
    id TEXT PRIMARY KEY, key TEXT NOT NULL UNIQUE, position INTEGER NOT NULL, path TEXT,
    modality TEXT, content_hash TEXT, size INTEGER, mtime_ns INTEGER, ctime_ns INTEGER,
    inode INTEGER, source TEXT, metadata TEXT, snippet TEXT, thumbnail BLOB, cache_key TEXT,
    checksum TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS items_position ON items(position);
CREATE TABLE IF NOT EXISTS skipped (
    id TEXT PRIMARY KEY, path TEXT, modality TEXT, content_hash TEXT, source TEXT, reason TEXT
);
"""


def vector_checksum(vector: np.ndarray) -> str:
    """xxh3-128 of a vector's float32 bytes (what the engine must give back)."""
    return xxhash.xxh3_128_hexdigest(np.ascontiguousarray(vector, dtype=np.float32).tobytes())


def position_of(key: str) -> int:
    """A stable 63-bit number for a primary key: the hit's ``position`` (thumbnails)."""
    return xxhash.xxh3_64_intdigest(key.encode("utf-8")) >> 1


def recorded_settings(folder: Path) -> dict[str, Any]:
    """``Ledger.recorded`` of the ledger in ``folder`` ({} when there is none)."""
    ledger = Ledger.open_existing(folder)
    if ledger is None:
        return {}
    try:
        return ledger.recorded()
    finally:
        ledger.close()


class Ledger:
    """The ledger's SQLite file (see the module docstring)."""

    def __init__(self, folder: Path, readonly: bool = False):
        self.folder = folder
        path = folder / LEDGER
        if readonly:
            self.db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)
        else:
            folder.mkdir(parents=True, exist_ok=True)
            self.db = sqlite3.connect(path, check_same_thread=False)
            self.db.executescript(_SCHEMA)
            self.db.commit()
        self.db.row_factory = sqlite3.Row

    @classmethod
    def open_existing(cls, folder: Path) -> Ledger | None:
        """The ledger read-only, or None when there is none (a search server elsewhere)."""
        if not (folder / LEDGER).is_file():
            return None
        try:
            return cls(folder, readonly=True)
        except sqlite3.DatabaseError:
            return None

    def config(self) -> dict[str, Any]:
        row = self.db.execute("SELECT value FROM config WHERE key = 'config'").fetchone()
        return json.loads(row[0]) if row else {}

    def recorded(self) -> dict[str, Any]:
        """What the index was built with, as a folder index's ``info.json`` says it ({} before
        its first run): model, instruction, ``matryoshka_dim``, page options and route, and
        the sources of its items (a page glob's deleted files are found among them)."""
        config = self.config()
        if not config.get("model"):
            return {}
        query = "SELECT source FROM items UNION SELECT source FROM skipped"
        sources = sorted(row[0] for row in self.db.execute(query) if row[0])
        return {**config, "matryoshka_dim": config.get("dim"), "sources": sources}

    def set_config(self, config: dict[str, Any]) -> None:
        self.db.execute("INSERT OR REPLACE INTO config VALUES ('config', ?)", (json.dumps(config),))
        self.db.commit()

    def rows(self) -> list[dict]:
        """Every item row (without thumbnails)."""
        columns = [column for column in COLUMNS if column != "thumbnail"]
        query = f"SELECT {', '.join(columns)} FROM items ORDER BY id"
        return [self._decode(dict(row)) for row in self.db.execute(query)]

    def count(self) -> int:
        return int(self.db.execute("SELECT count(*) FROM items").fetchone()[0])

    def stamps(self, rows: Iterable[dict]) -> dict[str, FileStamp]:
        return store.stamps_of(rows)

    def put(self, rows: Iterable[dict]) -> None:
        """Record stored items (one transaction), replacing rows with the same id."""
        values = []
        for row in rows:
            encoded = {**row, "metadata": json.dumps(row.get("metadata") or {}, sort_keys=True)}
            values.append(tuple(to_sql(encoded.get(column)) for column in COLUMNS))
        self.db.executemany(
            f"INSERT OR REPLACE INTO items ({', '.join(COLUMNS)}) "
            f"VALUES ({', '.join('?' * len(COLUMNS))})",
            values,
        )
        self.db.commit()

    def restamp(self, rows: Iterable[dict]) -> None:
        """Update the file stamps, metadata and source of items (one transaction)."""
        self.db.executemany(
            "UPDATE items SET size = ?, mtime_ns = ?, ctime_ns = ?, inode = ?, metadata = ?, "
            "source = ? WHERE id = ?",
            [
                (
                    row["size"],
                    row["mtime_ns"],
                    row["ctime_ns"],
                    row["inode"],
                    json.dumps(row.get("metadata") or {}, sort_keys=True),
                    to_sql(row["source"]),
                    to_sql(row["id"]),
                )
                for row in rows
            ],
        )
        self.db.commit()

    def remove(self, ids: Iterable[str]) -> None:
        """Forget items (one transaction)."""
        self.db.executemany("DELETE FROM items WHERE id = ?", [(to_sql(i),) for i in ids])
        self.db.commit()

    def checksums(self) -> dict[str, str]:
        """``{key: checksum}`` of every item."""
        return {
            from_sql(key): value
            for key, value in self.db.execute("SELECT key, checksum FROM items")
        }

    def skipped(self) -> list[dict]:
        query = f"SELECT {', '.join(store.SKIPPED_COLUMNS)} FROM skipped ORDER BY id"
        return [store.text_row(dict(row)) for row in self.db.execute(query)]

    def set_skipped(self, rows: Iterable[dict]) -> None:
        self.db.execute("DELETE FROM skipped")
        self.db.executemany(
            f"INSERT OR REPLACE INTO skipped VALUES ({', '.join('?' * len(store.SKIPPED_COLUMNS))})",
            [tuple(to_sql(row.get(column)) for column in store.SKIPPED_COLUMNS) for row in rows],
        )
        self.db.commit()

    def thumbnails(self, positions: Iterable[int]) -> dict[int, bytes | None]:
        wanted = sorted({int(position) for position in positions})
        found: dict[int, bytes | None] = {}
        for start in range(0, len(wanted), 500):
            chunk = wanted[start : start + 500]
            query = (
                "SELECT position, thumbnail FROM items "
                f"WHERE position IN ({', '.join('?' * len(chunk))})"
            )
            found.update({row[0]: row[1] for row in self.db.execute(query, chunk)})
        return found

    def by_key(self, keys: Iterable[str]) -> dict[str, dict]:
        """Rows of the given primary keys (without thumbnails)."""
        wanted = list(keys)
        columns = [column for column in COLUMNS if column != "thumbnail"]
        found = {}
        for start in range(0, len(wanted), 500):
            chunk = [to_sql(key) for key in wanted[start : start + 500]]
            query = (
                f"SELECT {', '.join(columns)} FROM items "
                f"WHERE key IN ({', '.join('?' * len(chunk))})"
            )
            for row in self.db.execute(query, chunk):
                decoded = self._decode(dict(row))
                found[decoded["key"]] = decoded
        return found

    def close(self) -> None:
        self.db.close()

    @staticmethod
    def _decode(row: dict) -> dict:
        row = {key: from_sql(value) if key in _TEXT else value for key, value in row.items()}
        row["metadata"] = json.loads(row["metadata"]) if row.get("metadata") else {}
        return row
