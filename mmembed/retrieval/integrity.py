"""Integrity checks of a published generation: sizes, checksums, headers and unit vectors.

``current.json`` lists every file of the generation it publishes with its size and an
xxh3-128 checksum, and carries a checksum of itself. Sizes and headers are checked on every
open; checksums on ``verify`` (``mmembed search --verify``, every ``mmembed index`` run), when a
size or header is off, and always for files that are read whole anyway or are small.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import xxhash

from ..errors import CorruptIndexError
from ..hub.verified import file_checksum  # the one xxh3-128 file checksum

__all__ = ["bad_rows", "check_files", "check_headers", "describe_files", "file_checksum", "seal"]

SMALL_FILE = 64 << 20  # files up to this size are checksummed on every open
READ_WHOLE = frozenset({"info.json", "vectors.faiss", "codes.faiss"})  # loaded whole anyway
NORM_TOLERANCE = 1e-3  # how far from 1 a stored vector's norm may be
NPY_MAGIC = b"\x93NUMPY"
SQLITE_MAGIC = b"SQLite format 3\x00"
_HEADER_READERS = {
    (1, 0): np.lib.format.read_array_header_1_0,
    (2, 0): np.lib.format.read_array_header_2_0,
}


def describe_files(folder: Path) -> dict[str, dict[str, Any]]:
    """``{name: {"size", "xxh3_128"}}`` for every file of a finished generation folder."""
    return {
        path.name: {"size": path.stat().st_size, "xxh3_128": file_checksum(path)}
        for path in sorted(folder.iterdir())
        if path.is_file()
    }


def seal(manifest: dict[str, Any]) -> dict[str, Any]:
    """The manifest with a checksum of its own content added."""
    body = {key: value for key, value in manifest.items() if key != "checksum"}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"))
    return {**body, "checksum": xxhash.xxh3_128_hexdigest(text.encode())}


def is_sealed(manifest: Any) -> bool:
    """Whether a parsed manifest carries a checksum that matches its content."""
    return (
        isinstance(manifest, dict)
        and isinstance(manifest.get("checksum"), str)
        and seal(manifest)["checksum"] == manifest["checksum"]
    )


def check_files(
    index_dir: Path, folder: Path, files: dict[str, dict], verify: bool, read_whole: set[str]
) -> None:
    """Check each listed file's presence, size and (when due) checksum.

    Args:
        index_dir: the index folder (named in errors).
        folder: the generation folder.
        files: the manifest's file list.
        verify: checksum every file.
        read_whole: extra files to checksum because the caller reads them whole.

    Raises:
        CorruptIndexError: naming the first missing or damaged file.
    """
    for name, expected in files.items():
        path = folder / name
        where = f"{folder.name}/{name}"
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            raise CorruptIndexError(str(index_dir), where, "is missing") from None
        if size != expected["size"]:
            raise CorruptIndexError(
                str(index_dir), where, f"has {size} bytes, expected {expected['size']}"
            )
        due = verify or name in READ_WHOLE or name in read_whole or size <= SMALL_FILE
        if due and file_checksum(path) != expected["xxh3_128"]:
            raise CorruptIndexError(str(index_dir), where, "does not match its checksum")


def check_headers(index_dir: Path, folder: Path, count: int, dim: int) -> None:
    """Check the headers of ``vectors.npy`` (shape, dtype, length) and ``meta.sqlite``."""
    vectors = folder / "vectors.npy"
    where = f"{folder.name}/vectors.npy"
    try:
        with open(vectors, "rb") as handle:
            version = np.lib.format.read_magic(handle)
            if version not in _HEADER_READERS:
                raise ValueError(f"unknown .npy version {version}")
            shape, fortran, dtype = _HEADER_READERS[version](handle)
            offset = handle.tell()
    except FileNotFoundError:
        raise CorruptIndexError(str(index_dir), where, "is missing") from None
    except (ValueError, OSError, SyntaxError) as error:
        raise CorruptIndexError(str(index_dir), where, f"has a damaged header ({error})") from None
    if tuple(shape) != (count, dim) or dtype != np.float32 or fortran:
        raise CorruptIndexError(
            str(index_dir),
            where,
            f"holds {dtype} {tuple(shape)}, expected float32 ({count}, {dim})",
        )
    if vectors.stat().st_size != offset + count * dim * 4:
        raise CorruptIndexError(str(index_dir), where, "is truncated")
    meta = folder / "meta.sqlite"
    try:
        with open(meta, "rb") as handle:
            magic = handle.read(len(SQLITE_MAGIC))
    except FileNotFoundError:
        raise CorruptIndexError(
            str(index_dir), f"{folder.name}/meta.sqlite", "is missing"
        ) from None
    if magic != SQLITE_MAGIC:
        raise CorruptIndexError(
            str(index_dir), f"{folder.name}/meta.sqlite", "has a damaged header"
        )


def bad_rows(vectors: np.ndarray, block: int = 65_536) -> np.ndarray:
    """Positions of rows that are not finite unit vectors (scanned in blocks: memory maps)."""
    found = []
    for start in range(0, len(vectors), block):
        chunk = np.asarray(vectors[start : start + block], dtype=np.float32)
        with np.errstate(over="ignore", invalid="ignore"):
            norms = np.linalg.norm(chunk, axis=1)
        wrong = ~np.isfinite(chunk).all(axis=1) | ~(np.abs(norms - 1.0) <= NORM_TOLERANCE)
        found.append(np.flatnonzero(wrong) + start)
    return np.concatenate(found) if found else np.empty(0, dtype=np.int64)
