"""Rebuild a damaged generation from its intact parts.

``salvage`` reads what can be trusted: a part is intact when its checksum matches the
manifest (or, when ``current.json`` itself is lost, when it passes the structural checks).
Metadata rows keep their file stamps and skipped reasons; vectors are kept only when the
metadata, the vectors and the settings (``info.json``, or the copy in ``current.json``, which
name the model) are all intact, because a vector without its row, or without its model,
cannot be placed. Everything else is re-embedded by the update that called ``salvage``.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import CorruptIndexError
from . import integrity, store
from .walk import FileStamp

logger = logging.getLogger(__name__)


class Salvaged:
    """The intact parts of a damaged generation, in memory, read like a ``Generation``.

    Attributes:
        name: the damaged generation's folder name.
        info: its ``info.json`` ({} when damaged).
        vectors: ``(N, D)`` vectors of the kept rows.
        lost: what could not be kept, in words (for the update report).
    """

    def __init__(
        self,
        name: str,
        info: dict[str, Any],
        rows: list[dict],
        skipped: list[dict],
        vectors: np.ndarray,
        file_rows: list[dict],
        lost: str,
    ):
        self.name = name
        self.info = {key: value for key, value in info.items() if key != "fingerprint"}
        self._rows = rows
        self._skipped = skipped
        self.vectors = vectors
        self._file_rows = file_rows
        self.lost = lost

    def __len__(self) -> int:
        return len(self._rows)

    def all_rows(self, thumbnails: bool = False) -> Iterator[dict]:
        for row in self._rows:
            yield row if thumbnails else {k: v for k, v in row.items() if k != "thumbnail"}

    def rows(self, positions: Iterable[int], thumbnails: bool = False) -> dict[int, dict]:
        return {int(pos): self._rows[int(pos)] for pos in positions if 0 <= pos < len(self._rows)}

    def stamps(self) -> dict[str, FileStamp]:
        return store.stamps_of(self._file_rows)

    def skipped(self) -> list[dict]:
        return self._skipped

    def sources(self) -> list[str]:
        """The folders, manifests and files the generation was built from."""
        recorded = self.info.get("sources") or []
        rows = [*self._file_rows, *self._skipped]
        return sorted({*recorded, *(row["source"] for row in rows if row.get("source"))})

    def close(self) -> None:
        pass


def salvage(index_dir: Path) -> Salvaged | None:
    """The intact parts of the current (or newest) generation; None when there is none."""
    try:
        manifest = store.read_current(index_dir)
    except CorruptIndexError:
        manifest = None
    if manifest is not None:
        folder, files = index_dir / manifest["generation"], manifest.get("files")
    else:
        generations = store.published_generations(index_dir)
        if not generations:
            return None
        folder, files = generations[-1], None
    if not folder.is_dir():
        return None
    intact = {
        name: _intact(folder / name, (files or {}).get(name), files is None)
        for name in ("info.json", "meta.sqlite", "vectors.npy")
    }
    info = _read_info(folder) if intact["info.json"] else None
    if info is None and manifest is not None and isinstance(manifest.get("info"), dict):
        info = dict(manifest["info"])  # current.json keeps a copy of the settings
    rows, skipped = _read_meta(folder / "meta.sqlite") if intact["meta.sqlite"] else (None, [])
    vectors = _read_vectors(folder / "vectors.npy", info) if intact["vectors.npy"] else None
    damaged = [name for name, ok in intact.items() if not ok]
    keep = (
        info is not None
        and rows is not None
        and vectors is not None
        and len(vectors) == len(rows) == info.get("count")
        and [row["pos"] for row in rows] == list(range(len(rows)))
    )
    if keep:
        lost = f"{folder.name}: {', '.join(damaged) or 'a structure file'} rebuilt, kept all rows"
        return Salvaged(folder.name, info, rows, skipped, vectors, rows, lost)
    dim = int(info["dim"]) if info else 0
    lost = (
        f"{folder.name}: {', '.join(damaged) or 'the parts disagree'}; "
        f"re-embedding {len(rows) if rows is not None else 'all'} items"
    )
    return Salvaged(
        folder.name,
        info or {},
        [],
        skipped if info is not None else [],
        np.empty((0, dim), np.float32),
        rows or [],
        lost,
    )


def _intact(path: Path, expected: dict | None, unchecked: bool) -> bool:
    """Whether a part matches its manifest entry (without a manifest: whether it exists)."""
    if unchecked:
        return path.is_file()
    try:
        return (
            expected is not None
            and path.stat().st_size == expected["size"]
            and integrity.file_checksum(path) == expected["xxh3_128"]
        )
    except OSError:
        return False


def _read_info(folder: Path) -> dict[str, Any] | None:
    try:
        info = json.loads((folder / "info.json").read_bytes())
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) and isinstance(info.get("dim"), int) else None


def _read_meta(path: Path) -> tuple[list[dict] | None, list[dict]]:
    """All item rows (with thumbnails) and skipped rows, or ``(None, [])`` when unreadable."""
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    except sqlite3.DatabaseError:
        return None, []
    db.row_factory = sqlite3.Row
    try:
        if db.execute("PRAGMA quick_check").fetchone()[0] != "ok":
            return None, []
        present = {row[1] for row in db.execute("PRAGMA table_info(items)")}
        columns = [column for column in store.ITEM_COLUMNS if column in present]
        rows = []
        for row in db.execute(f"SELECT {', '.join(columns)} FROM items ORDER BY pos"):
            row = store.text_row(dict(row))
            row["metadata"] = json.loads(row["metadata"]) if row.get("metadata") else {}
            rows.append({column: row.get(column) for column in store.ITEM_COLUMNS})
        query = f"SELECT {', '.join(store.SKIPPED_COLUMNS)} FROM skipped"
        skipped = [store.text_row(dict(row)) for row in db.execute(query)]
        return rows, skipped
    except (sqlite3.DatabaseError, ValueError):
        return None, []
    finally:
        db.close()


def _read_vectors(path: Path, info: dict[str, Any] | None) -> np.ndarray | None:
    """The vectors, when they load, match ``info`` and are all finite unit vectors."""
    try:
        vectors = np.load(path)
    except (OSError, ValueError, EOFError):
        return None
    if (
        info is None
        or vectors.dtype != np.float32
        or vectors.shape != (info.get("count"), info["dim"])
    ):
        return None
    return None if len(integrity.bad_rows(vectors)) else vectors


def recorded_info(index_dir: Path) -> dict[str, Any]:
    """The settings an index was built with (``info.json``: model, instruction,
    matryoshka_dim, sources...), read without opening the vectors; from the intact parts
    when the index is damaged. {} when there is no index."""
    try:
        manifest = store.read_current(index_dir)
        if manifest is None:
            return {}
        folder, files = index_dir / manifest["generation"], manifest.get("files") or {}
        if "info.json" in files:
            integrity.check_files(index_dir, folder, {"info.json": files["info.json"]}, True, set())
        info = _read_info(folder)
        if info is not None and info.get("sources"):
            return info
    except CorruptIndexError:
        pass
    salvaged = salvage(index_dir)  # damaged, or written before info.json kept the sources
    if salvaged is None:
        return {}
    return {**salvaged.info, "sources": salvaged.sources()}
