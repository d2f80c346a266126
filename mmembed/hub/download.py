"""Checksummed, resumable, atomic download of one ``UrlSource`` into the cache.

Bytes go to ``<file>.part``; an interrupted download keeps it and the next call asks the server
for the rest with an HTTP ``Range`` header (servers that ignore ``Range`` get a fresh start).
Only a file whose sha256 matches is renamed into place, with ``os.replace`` so readers never see
a half-written file.
"""

from __future__ import annotations

import http.client
import logging
import os
import re
from pathlib import Path
from urllib.error import HTTPError, URLError
from urllib.request import Request, urlopen

from tqdm.auto import tqdm

from .cache import CacheEntry, remove_entry, sha256_file, write_marker
from .env import user_agent
from .errors import DownloadError
from .sources import UrlSource

logger = logging.getLogger(__name__)

_CHUNK = 1 << 20
_TIMEOUT_S = 30.0
_CONTENT_RANGE = re.compile(r"bytes (\d+)-\d+/(\d+|\*)")


def download(source: UrlSource, entry: CacheEntry, *, progress: bool = True) -> Path:
    """Fetch ``source`` into ``entry.path`` and verify it; the caller holds the download lock.

    Raises:
        DownloadError: on a network failure (the ``.part`` file is kept for resuming) or a
            checksum mismatch (nothing is left in the cache).
    """
    entry.directory.mkdir(parents=True, exist_ok=True)
    try:
        _fetch_part(source.url, entry.part, progress=progress)
    except DownloadError:
        if not entry.part.exists() or entry.part.stat().st_size == 0:
            remove_entry(entry)  # nothing worth resuming: leave no empty folder behind
        raise
    actual = sha256_file(entry.part)
    if actual != source.sha256:
        remove_entry(entry)
        raise DownloadError(
            f"Checksum mismatch for {source.url}: expected sha256 {source.sha256}, got {actual}. "
            "The file was deleted; the server may be serving different weights than the ones "
            "this model was pinned to."
        )
    os.replace(entry.part, entry.path)
    write_marker(entry, source.sha256)
    logger.info("Downloaded %s to %s", source.url, entry.path)
    return entry.path


def _fetch_part(url: str, part: Path, *, progress: bool) -> None:
    """Write the remote file into ``part``, resuming from its current size when possible."""
    offset = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": user_agent()}
    if offset:
        headers["Range"] = f"bytes={offset}-"
        logger.info("Resuming %s from byte %d", url, offset)
    try:
        response = urlopen(Request(url, headers=headers), timeout=_TIMEOUT_S)
    except HTTPError as err:
        if err.code == 416 and offset:
            # The .part already holds every byte: the checksum decides whether it is good.
            return
        raise DownloadError(f"Download of {url} failed: HTTP {err.code} {err.reason}") from err
    except (URLError, OSError) as err:
        raise DownloadError(f"Could not connect to {url}: {err}") from err
    with response:
        start, total = _start_and_total(response, offset, url, part)
        _stream(response, part, start=start, total=total, url=url, progress=progress)


def _start_and_total(
    response: http.client.HTTPResponse, offset: int, url: str, part: Path
) -> tuple[int, int | None]:
    """Where the response body starts in the file and the file's full size (None if unknown)."""
    if response.status == 206:
        match = _CONTENT_RANGE.fullmatch(response.headers.get("Content-Range", "").strip())
        if match is None or int(match.group(1)) != offset:
            part.unlink(missing_ok=True)
            raise DownloadError(
                f"Server sent an unexpected range for {url} "
                f"({response.headers.get('Content-Range')!r}); call again to restart."
            )
        return offset, None if match.group(2) == "*" else int(match.group(2))
    if offset:
        logger.info("Server ignored the Range request for %s; restarting from byte 0", url)
    length = response.headers.get("Content-Length")
    return 0, int(length) if length is not None else None


def _stream(
    response: http.client.HTTPResponse,
    part: Path,
    *,
    start: int,
    total: int | None,
    url: str,
    progress: bool,
) -> None:
    """Copy the body into ``part`` (appending from ``start``) with a progress bar."""
    received = start
    bar = tqdm(
        total=total,
        initial=start,
        unit="B",
        unit_scale=True,
        unit_divisor=1024,
        desc=part.name.removesuffix(".part"),
        disable=not progress,
    )
    with bar, part.open("ab" if start else "wb") as f:
        while chunk := _read(response, url, part):
            f.write(chunk)
            received += len(chunk)
            bar.update(len(chunk))
    if total is not None and received < total:
        raise DownloadError(
            f"Connection to {url} closed after {received} of {total} bytes; "
            f"kept {part} so that calling again resumes the download."
        )


def _read(response: http.client.HTTPResponse, url: str, part: Path) -> bytes:
    try:
        return response.read(_CHUNK)
    except (OSError, http.client.HTTPException) as err:
        raise DownloadError(
            f"Download of {url} was interrupted ({err}); "
            f"kept {part} so that calling again resumes the download."
        ) from err
