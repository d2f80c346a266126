"""Cache files a later process trusts: published with a checksum beside them, checked on open.

Every file mmembed caches under ``$MMEMBED_HOME`` (ONNX exports, tokenizers, ConSE class
tables, downloaded weights) is published through :func:`publish_file` or
:func:`publish_folder`, which write ``NAME.xxh3`` next to each file::

    {"size": 1234, "xxh3_128": "9f2c..."}

A cache site asks :func:`intact_file` or :func:`intact_folder` before it uses what it finds.
A file that is missing, of another size, or whose xxh3-128 differs (bit rot, a truncated copy,
an edit), and a file without its record, is damaged: one warning names it, the entry is
deleted, and the caller rebuilds or downloads it again. xxh3-128 reads ~10 GB/s, so a check
costs milliseconds; each file is hashed once per process while its ``stat`` is unchanged.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import xxhash

from .atomic import write_atomic

logger = logging.getLogger(__name__)

SUFFIX = ".xxh3"  # the record beside each published file
CHUNK = 4 << 20  # bytes read per checksum step

# path -> (size, mtime, ctime, inode) when it last matched: a write changes the ctime even
# when it restores size and mtime, so only a file nobody wrote to since is trusted unhashed.
_checked: dict[str, tuple[int, int, int, int]] = {}
_lock = threading.Lock()


def file_checksum(path: Path) -> str:
    """xxh3-128 hex digest of a file, read in chunks."""
    digest = xxhash.xxh3_128()
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def record_of(path: Path) -> Path:
    """Where the checksum record of ``path`` lives."""
    return path.with_name(path.name + SUFFIX)


def seal(path: Path) -> None:
    """Write the checksum record of ``path`` (atomically) as it is now."""
    record = {"size": path.stat().st_size, "xxh3_128": file_checksum(path)}
    write_atomic(record_of(path), lambda temporary: temporary.write_text(json.dumps(record) + "\n"))


def publish_file(path: Path, write: Callable[[Path], None]) -> Path:
    """Write ``path`` atomically with ``write(temporary)``, then seal it.

    The data file is published first: a kill before its record is written leaves a file whose
    record does not match, which the next open treats as damaged and rebuilds.
    """
    write_atomic(path, write)
    seal(path)
    _remember(path)
    return path


def publish_folder(folder: Path) -> None:
    """Seal every file of a staged folder before it is renamed into place."""
    for path in _data_files(folder):
        seal(path)


def problem(path: Path, recheck: bool = False) -> str | None:
    """What is wrong with ``path`` against its record (None when it matches).

    Args:
        path: a published file.
        recheck: hash it even if this process checked it already.
    """
    try:
        stat = path.stat()
    except FileNotFoundError:
        return "is missing"
    stamp = (stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns, stat.st_ino)
    if not recheck and _checked.get(str(path)) == stamp:
        return None
    try:
        record = json.loads(record_of(path).read_text())
        size, expected = int(record["size"]), str(record["xxh3_128"])
    except FileNotFoundError:
        return f"has no checksum record ({record_of(path).name})"
    except (OSError, ValueError, TypeError, KeyError):
        return f"has a damaged checksum record ({record_of(path).name})"
    if stat.st_size != size:
        return f"has {stat.st_size} bytes, expected {size} ({record_of(path).name})"
    if file_checksum(path) != expected:
        return f"does not match its checksum ({record_of(path).name})"
    with _lock:
        _checked[str(path)] = stamp
    return None


def intact_file(path: Path, recheck: bool = False) -> bool:
    """Whether the cached ``path`` matches its record; a damaged one is warned about and
    deleted with its record (a missing one is simply not there)."""
    if not path.exists() and not record_of(path).exists():
        return False
    found = problem(path, recheck)
    if found is None:
        return True
    logger.warning("cached file %s %s; deleting it so it is made again", path, found)
    remove(path)
    return False


def intact_folder(folder: Path, required: tuple[str, ...], recheck: bool = False) -> bool:
    """Whether a published folder holds ``required`` and every file matches its record; a
    damaged folder is warned about (naming the first bad file) and deleted whole."""
    if not folder.is_dir():
        return False
    names = {path.name for path in _data_files(folder)}
    names |= {r.name.removesuffix(SUFFIX) for r in folder.glob(f"*{SUFFIX}")}
    for name in sorted(set(required) | names):
        found = problem(folder / name, recheck)
        if found is not None:
            logger.warning(
                "cached file %s %s; deleting %s so it is made again", folder / name, found, folder
            )
            remove(folder)
            return False
    return True


def remove(path: Path) -> None:
    """Delete a cache entry (file with its record, or folder) and forget it was checked."""
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)
        record_of(path).unlink(missing_ok=True)
    with _lock:
        for key in [k for k in _checked if k == str(path) or k.startswith(f"{path}{os.sep}")]:
            del _checked[key]


CACHE_FOLDERS = ("onnx", "conse", "downloads")  # what mmembed caches under $MMEMBED_HOME
UNSEALED = (".sha256-ok", ".part")  # download bookkeeping: a marker and a resumable part


def verify_tree(root: Path) -> tuple[int, list[tuple[Path, str]]]:
    """Check every published file of the caches under ``root`` against its record, hashing
    each one again; the cache entry of a damaged file (an export folder, a download folder, a
    table with its record) is deleted, to be made again on next use. Returns the number of
    files checked and the damaged ones."""
    checked, damaged, removed = 0, [], set()
    for folder in CACHE_FOLDERS:
        for path in list(published_files(root / folder)):
            entry = root / folder / path.relative_to(root / folder).parts[0]
            if entry in removed:
                continue
            checked += 1
            found = problem(path, recheck=True)
            if found is not None:
                damaged.append((path, found))
                removed.add(entry)
                remove(entry)
    return checked, damaged


def published_files(root: Path) -> Iterator[Path]:
    """Every data file under ``root`` that should carry a record (temporaries left out)."""
    if not root.is_dir():
        return
    for directory, subdirs, files in os.walk(root):
        subdirs[:] = sorted(d for d in subdirs if not d.startswith("."))
        for name in sorted(files):
            if not name.endswith((SUFFIX, *UNSEALED)) and not name.startswith("."):
                yield Path(directory) / name
        for name in sorted(files):
            if name.endswith(SUFFIX) and name.removesuffix(SUFFIX) not in files:
                yield Path(directory) / name.removesuffix(SUFFIX)  # record of a deleted file


def forget() -> None:
    """Check every file again on its next open, as a new process would."""
    with _lock:
        _checked.clear()


def _data_files(folder: Path) -> list[Path]:
    return sorted(
        path
        for path in folder.iterdir()
        if path.is_file() and not path.name.endswith(SUFFIX) and not path.name.startswith(".")
    )


def _remember(path: Path) -> None:
    stat = path.stat()
    with _lock:
        _checked[str(path)] = (stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns, stat.st_ino)
