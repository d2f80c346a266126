"""Layout of the download cache and the record that a cached file was checked.

Each ``UrlSource`` lives at ``<home>/downloads/<sha256[:16]>/<filename>``. Keying the folder by
the checksum means two models that pin different bytes under one file name never collide.

Verification policy: the sha256 is computed once, when a download completes (before the file is
renamed into place), and recorded in ``<filename>.sha256-ok``; the file is then published with
an xxh3-128 record beside it (``verified.py``). A later process checks that record when it first
uses the file (milliseconds); if the record is missing or does not match (bit rot, truncation,
an edit), the file is hashed against its pinned sha256 again, and deleted when that fails too.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from . import verified
from .atomic import write_atomic
from .env import mmembed_home
from .sources import UrlSource

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; concurrent downloads may race there.
    fcntl = None

logger = logging.getLogger(__name__)

_HASH_CHUNK = 1 << 20


@dataclass(frozen=True)
class CacheEntry:
    """Where one URL download lives in the cache."""

    path: Path  # final, verified file

    @property
    def directory(self) -> Path:
        """The per-checksum folder; removed when a download leaves nothing in it."""
        return self.path.parent

    @property
    def part(self) -> Path:
        """Temp file a download writes to; renamed to ``path`` only once verified."""
        return self.path.with_name(self.path.name + ".part")

    @property
    def marker(self) -> Path:
        """Record that ``path`` was hashed and matched, with the size and mtime seen then."""
        return self.path.with_name(self.path.name + ".sha256-ok")


def cache_entry(source: UrlSource) -> CacheEntry:
    """The cache location of ``source``; nothing is created."""
    return CacheEntry(mmembed_home() / "downloads" / source.sha256[:16] / source.filename)


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in chunks so large checkpoints do not fill memory."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def write_marker(entry: CacheEntry, sha256: str) -> None:
    """Record that ``entry.path`` currently matches ``sha256``, and seal it (atomic writes)."""
    write_atomic(entry.marker, lambda temporary: temporary.write_text(f"{sha256}\n"))
    verified.seal(entry.path)


def verify_cached(entry: CacheEntry, sha256: str) -> bool:
    """True if the cached file exists and matches ``sha256``; never touches the network.

    A file that fails the check is removed, so the next online call downloads it again.
    """
    if not entry.path.is_file():
        if verified.record_of(entry.path).is_file():
            logger.warning("cached file %s is missing; it is downloaded again", entry.path)
            remove_entry(entry)
        return False
    marker = entry.marker.read_text().split() if entry.marker.is_file() else []
    found = verified.problem(entry.path)
    if marker[:1] == [sha256] and found is None:
        return True
    actual = sha256_file(entry.path)
    if actual != sha256:
        logger.warning(
            "cached file %s %s: its sha256 is %s, expected %s; deleting it so it is downloaded "
            "again",
            entry.path,
            found or "changed",
            actual,
            sha256,
        )
        remove_entry(entry)
        return False
    legacy = len(marker) == 3 and found is not None and "has no checksum record" in found
    if found is not None and marker and not legacy:  # (an older mmembed wrote no record)
        logger.warning(
            "cached file %s %s, but matches its pinned sha256; recorded again", entry.path, found
        )
    write_marker(entry, sha256)
    return True


def remove_entry(entry: CacheEntry) -> None:
    """Delete the file, its temp file and marker, and the folder if that leaves it empty."""
    for path in (entry.path, entry.part, entry.marker, verified.record_of(entry.path)):
        path.unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        entry.directory.rmdir()  # fails (and is left alone) while other files remain


@contextlib.contextmanager
def download_lock(entry: CacheEntry) -> Iterator[None]:
    """Hold an exclusive lock so two processes never write the same ``.part`` file.

    Locks live under ``<home>/locks`` (not next to the file) so that a failed download leaves
    nothing in the downloads folder; the OS releases them if the process dies.
    """
    if fcntl is None:
        yield
        return
    lock_dir = mmembed_home() / "locks"
    lock_dir.mkdir(parents=True, exist_ok=True)
    with open(lock_dir / f"{entry.directory.name}.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
