"""Find what to index: walk folders, read Parquet/CSV manifests, hash contents.

Every item gets a stable ``id`` (its absolute path, or the manifest's ``id`` column) and a
content hash; the index re-embeds an item only when its hash changes. A PDF becomes one item
per page, ``file.pdf#page=N``, each with the route that reads it (``pages.py``).
"""

from __future__ import annotations

import errno
import functools
import hashlib
import json
import logging
import math
import os
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..modality import IMAGE_EXTENSIONS, TABLE_EXTENSIONS, VIDEO_EXTENSIONS, Modality

logger = logging.getLogger(__name__)

TEXT_EXTENSIONS = frozenset({".txt", ".md", ".markdown", ".rst"})
HTML_EXTENSIONS = frozenset({".html", ".htm"})
DOCUMENT_EXTENSIONS = frozenset({".json"})
PDF_EXTENSIONS = frozenset({".pdf"})
MANIFEST_PATH_COLUMN = "path"
MANIFEST_TEXT_COLUMN = "text"
_RESERVED_COLUMNS = frozenset({"id", MANIFEST_PATH_COLUMN, MANIFEST_TEXT_COLUMN, "modality"})
TEXT_METADATA = frozenset({"caption", "title"})  # metadata shown as text: always stored as str
_NAMED_ROWS = 5  # rows named in a warning about converted values, then a count


@dataclass
class Item:
    """One thing to embed, with what the index stores about it.

    Attributes:
        id: stable key: the absolute path for files, the manifest ``id`` column, or
            ``text:<hash>`` for manifest text rows without an id.
        modality: what kind of content the item holds (None: unsupported file).
        path: absolute file path (None for inline text).
        text: inline text (manifest text rows).
        metadata: user columns from a manifest (JSON-serialisable values).
        source: the folder or manifest the item was found in (for incremental sync).
        content_hash: sha256 of the content (for documents: of the JSON and its references).
        size: file size in bytes (0 for inline text).
        mtime_ns: file modification time (0 for inline text).
        ctime_ns: file status change time (0 for inline text).
        inode: the file's inode number (0 for inline text).
        problem: why the item cannot be indexed, found while scanning (a symlink loop...).
        cache_key: what its vector is cached under (set by the index; see decode.cache_key).
        page: the page number (from 1) of a PDF page item; 0 for anything else.
        route: how a page is read: "text" (its text layer) or the model's page route
            ("reader", "ocr", "pixel"); "" for items that are not pages.
        value: an in-memory Embedder input (``Index.build([mmembed.Page(picture)])``).
    """

    id: str
    modality: Modality | None
    path: str | None = None
    text: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    source: str = ""
    content_hash: str = ""
    size: int = 0
    mtime_ns: int = 0
    ctime_ns: int = 0
    inode: int = 0
    problem: str = ""
    cache_key: str = ""
    page: int = 0
    route: str = ""
    value: Any = None

    def stored_fields(self) -> dict[str, Any]:
        """What every index row holds about the item (the folder index's table and an engine's
        ledger alike): its id, where it came from and the file state that ``update`` compares."""
        return {
            "id": self.id,
            "path": self.path,
            "modality": self.modality.value if self.modality is not None else None,
            "content_hash": self.content_hash,
            "size": self.size,
            "mtime_ns": self.mtime_ns,
            "ctime_ns": self.ctime_ns,
            "inode": self.inode,
            "source": self.source,
            "metadata": self.metadata,
        }

    @classmethod
    def from_text(cls, text: str, id: str | None = None, **metadata: Any) -> Item:
        """An inline text item (its id defaults to a hash of the text)."""
        digest = hash_bytes(text.encode("utf-8", "surrogatepass"))  # refused later, by item
        return cls(
            id=id or f"text:{digest[:16]}",
            modality=Modality.TEXT,
            text=text,
            metadata=metadata,
            content_hash=digest,
        )

    @classmethod
    def from_path(cls, path: str | os.PathLike, source: str = "", **metadata: Any) -> Item:
        """A file item; its modality comes from the extension (None when unsupported)."""
        resolved = str(Path(path).resolve())
        return cls(
            id=resolved,
            modality=modality_of(resolved),
            path=resolved,
            metadata=metadata,
            source=source or resolved,
        )


@dataclass(frozen=True)
class FileStamp:
    """What the index remembers about a file, to skip re-hashing unchanged files.

    A write changes the ctime even when it keeps the size and restores the mtime; a file
    replaced by another changes the inode.
    """

    size: int | None
    mtime_ns: int | None
    ctime_ns: int | None  # None for indexes written before ctimes were kept
    inode: int | None
    content_hash: str


def modality_of(path: str | os.PathLike) -> Modality | None:
    """The modality a file's extension implies (None when mmembed cannot index it)."""
    suffix = Path(path).suffix.lower()
    if suffix in IMAGE_EXTENSIONS:
        return Modality.IMAGE
    if suffix in VIDEO_EXTENSIONS:
        return Modality.VIDEO
    if suffix in TABLE_EXTENSIONS:
        return Modality.TABLE
    if suffix in TEXT_EXTENSIONS or suffix in HTML_EXTENSIONS:
        return Modality.TEXT
    if suffix in DOCUMENT_EXTENSIONS:
        return Modality.DOCUMENT
    if suffix in PDF_EXTENSIONS:
        return Modality.PAGE
    return None


def is_pdf(path: str | os.PathLike | None) -> bool:
    """Whether a path names a PDF (by its extension)."""
    return path is not None and Path(path).suffix.lower() in PDF_EXTENSIONS


def hash_bytes(data: bytes) -> str:
    """sha256 hex digest of ``data``."""
    return hashlib.sha256(data).hexdigest()


def hash_file(path: str | os.PathLike, chunk_size: int = 1 << 20) -> str:
    """sha256 hex digest of a file's bytes, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


def document_references(path: str | os.PathLike) -> list[str]:
    """Absolute paths of the images and tables a segments JSON document refers to."""
    with open(path, encoding="utf-8") as handle:
        data = json.load(handle)
    base = Path(path).resolve().parent
    references = []
    for segment in data.get("segments", []) if isinstance(data, dict) else []:
        if isinstance(segment, dict):
            for key in ("image", "table"):
                if isinstance(segment.get(key), str):
                    references.append(str((base / segment[key]).resolve()))
    return references


def stamp_item(item: Item, known: Mapping[str, FileStamp] | None = None) -> None:
    """Fill ``size``, the times, ``inode`` and ``content_hash`` of a file item in place.

    A file whose size, mtime, ctime and inode all match ``known[item.id]`` keeps the known
    hash (like git's index); pass no ``known`` to re-hash everything. Documents are always
    re-hashed because their references may have changed. Raises OSError when the file
    cannot be read.
    """
    if item.path is None:
        if not item.content_hash:
            item.content_hash = hash_bytes((item.text or "").encode("utf-8"))
        return
    stat = os.stat(item.path)
    item.size, item.mtime_ns = stat.st_size, stat.st_mtime_ns
    item.ctime_ns, item.inode = stat.st_ctime_ns, stat.st_ino
    previous = (known or {}).get(item.id)
    if (
        previous is not None
        and item.modality is not Modality.DOCUMENT
        and (previous.size, previous.mtime_ns, previous.ctime_ns, previous.inode)
        == (item.size, item.mtime_ns, item.ctime_ns, item.inode)
    ):
        item.content_hash = previous.content_hash
        return
    if item.page:  # one PDF, many pages: the file is hashed once per version
        digest = _file_digest(item.path, item.size, item.mtime_ns, item.ctime_ns, item.inode)
        item.content_hash = hash_bytes(f"{digest}#page={item.page}".encode())
        return
    digest = hash_file(item.path)
    if item.modality is Modality.DOCUMENT:
        try:
            references = document_references(item.path)
        except (ValueError, OSError):
            references = []  # the decoder reports the broken document
        parts = [digest] + [_hash_or_missing(reference) for reference in references]
        digest = hash_bytes("\n".join(parts).encode("utf-8"))
    item.content_hash = digest


@functools.lru_cache(maxsize=64)
def _file_digest(path: str, size: int, mtime_ns: int, ctime_ns: int, inode: int) -> str:
    """``hash_file``, remembered for a file version (its stamp is part of the key)."""
    return hash_file(path)


def _hash_or_missing(path: str) -> str:
    try:
        return hash_file(path)
    except OSError:
        return f"missing:{path}"


def walk_folder(
    root: str | os.PathLike,
    exclude: Iterable[str | os.PathLike] = (),
    roots: Iterable[str | os.PathLike] = (),
    follow_symlinks: bool = False,
) -> Iterator[Item]:
    """Yield one item per file under ``root`` (sorted, hidden files and ``exclude`` skipped).

    Files with unsupported extensions are yielded with ``modality=None``, and symlinks that
    loop, dangle or (without ``follow_symlinks``) lead outside ``root`` and ``roots`` with a
    ``problem``, so the index can report them as skipped. Linked folders are walked only
    with ``follow_symlinks``, each real folder once.
    """
    root_path = Path(root).resolve()
    inside = [root_path, *(Path(path).resolve() for path in roots)]
    excluded = {Path(path).resolve() for path in exclude}
    seen_dirs: set[Path] = set()
    for directory, subdirs, files in os.walk(root_path, followlinks=follow_symlinks):
        current = Path(directory)
        real = current.resolve()
        if real in seen_dirs:  # a linked folder already walked (or a loop)
            subdirs[:] = []
            continue
        seen_dirs.add(real)
        if not follow_symlinks:
            for name in sorted(subdirs):
                if not name.startswith(".") and _leads_outside(current / name, inside):
                    yield _problem(
                        current / name,
                        str(root_path),
                        "symlinked folder leads outside the indexed folders "
                        "(use --follow-symlinks)",
                    )
        subdirs[:] = sorted(
            name
            for name in subdirs
            if not name.startswith(".") and (current / name).resolve() not in excluded
        )
        for name in sorted(files):
            if not name.startswith("."):
                yield _file_item(current / name, str(root_path), inside, follow_symlinks)


def _file_item(path: Path, source: str, inside: list[Path], follow_symlinks: bool) -> Item:
    """The item of a walked file; a symlink is checked before it is followed."""
    if not path.is_symlink():
        return Item.from_path(path, source=source)
    try:
        target = path.resolve(strict=True)
    except RuntimeError:  # Python < 3.13 reports a loop this way
        return _problem(path, source, "symlink loop")
    except OSError as error:
        problem = "symlink loop" if error.errno == errno.ELOOP else "dangling symlink"
        return _problem(path, source, problem)
    if not follow_symlinks and not any(target.is_relative_to(root) for root in inside):
        return _problem(
            path, source, "symlink leads outside the indexed folders (use --follow-symlinks)"
        )
    return Item.from_path(path, source=source)


def _leads_outside(path: Path, inside: list[Path]) -> bool:
    """Whether ``path`` is a symlink to a folder outside every one of ``inside``."""
    if not path.is_symlink():
        return False
    try:
        target = path.resolve(strict=True)
    except (OSError, RuntimeError):
        return False  # a loop: os.walk does not follow it
    return not any(target.is_relative_to(root) for root in inside)


def _problem(path: Path, source: str, problem: str) -> Item:
    name = str(path.absolute())
    return Item(name, modality_of(name), path=name, source=source, problem=problem)


def read_manifest(path: str | os.PathLike) -> list[Item]:
    """Items from a Parquet/CSV manifest, or a JSON list of row objects: one row per item.

    A row names a file in a ``path`` column (relative to the manifest's folder) or holds
    inline text in a ``text`` column; an optional ``id`` column gives stable ids and an
    optional ``modality`` column overrides the extension; every other column is metadata.
    """
    manifest = Path(path).resolve()
    rows, columns = _manifest_rows(manifest)
    if MANIFEST_PATH_COLUMN not in columns and MANIFEST_TEXT_COLUMN not in columns:
        raise ValueError(f"manifest {manifest} needs a 'path' or a 'text' column")
    items = []
    converted: list[str] = []
    for row_number, row in enumerate(rows):
        raw = {str(key): value for key, value in row.items()}
        row = {key: _json_value(value) for key, value in raw.items()}
        metadata = {key: value for key, value in row.items() if key not in _RESERVED_COLUMNS}
        for key, value in metadata.items():
            if key in TEXT_METADATA and value is not None and not isinstance(value, str):
                metadata[key] = str(value)
            if isinstance(metadata[key], str) and not isinstance(raw[key], str):
                converted.append(f"row {row_number} {key}={raw[key]!r}")
        file_name = row.get(MANIFEST_PATH_COLUMN)
        if file_name:
            item = Item.from_path(manifest.parent / str(file_name), source=str(manifest))
        elif row.get(MANIFEST_TEXT_COLUMN):
            item = Item.from_text(str(row[MANIFEST_TEXT_COLUMN]))
            item.source = str(manifest)
        else:
            item = Item(f"{manifest}#{row_number}", None, source=str(manifest))
        if row.get("id") is not None:
            item.id = str(row["id"])
        if row.get("modality"):
            try:
                item.modality = Modality(str(row["modality"]))
            except ValueError:  # skipped with the reason, like a file of an unknown type
                known = ", ".join(modality.value for modality in Modality)
                item.problem = f"unknown modality {str(row['modality'])!r} (use {known})"
        item.metadata = metadata
        items.append(item)
    if converted:
        more = len(converted) - _NAMED_ROWS
        logger.warning(
            "manifest %s: stored as text: %s%s",
            manifest,
            "; ".join(converted[:_NAMED_ROWS]),
            f"; and {more} more rows" if more > 0 else "",
        )
    return items


def _manifest_rows(manifest: Path) -> tuple[list[dict], set[str]]:
    """A manifest's rows and column names. JSON rows are read as they are (not through pandas,
    whose Arrow strings refuse a name that is not valid UTF-8)."""
    if manifest.suffix == ".json":
        rows = json.loads(manifest.read_text(encoding="utf-8"))
        if not isinstance(rows, list) or not all(isinstance(row, dict) for row in rows):
            raise ValueError(f"manifest {manifest} must be a JSON list of objects")
        return rows, {str(key) for row in rows for key in row}
    import pandas as pd

    frame = pd.read_parquet(manifest) if manifest.suffix == ".parquet" else _read_csv(manifest)
    return frame.to_dict(orient="records"), {str(column) for column in frame.columns}


def is_manifest(path: str | os.PathLike) -> bool:
    """Whether a file is a manifest: a CSV/Parquet file with a ``path`` or ``text`` column,
    or a JSON list of objects with one of these keys."""
    import pyarrow.parquet as pq

    path = Path(path)
    if path.suffix == ".json":
        try:
            rows = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return False
        return (
            isinstance(rows, list)
            and bool(rows)
            and all(isinstance(row, dict) for row in rows)
            and any({MANIFEST_PATH_COLUMN, MANIFEST_TEXT_COLUMN} & row.keys() for row in rows)
        )
    if path.suffix == ".parquet":
        columns = set(pq.read_schema(path).names)
    elif path.suffix in (".csv", ".tsv"):
        columns = set(_read_csv(path, nrows=0).columns)
    else:
        return False
    return bool(columns & {MANIFEST_PATH_COLUMN, MANIFEST_TEXT_COLUMN})


def scan(
    sources: Iterable[str | os.PathLike | Item],
    exclude: Iterable[str | os.PathLike] = (),
    follow_symlinks: bool = False,
) -> list[Item]:
    """Items from folders, manifests, single files and ready-made ``Item``s.

    A CSV/Parquet file given directly is read as a manifest when it has a ``path`` or
    ``text`` column, and indexed as one table otherwise; tables inside folders are tables.
    JSON manifests are read wherever they are; their rows (with the metadata) replace the
    walked files they list. Symlinks in folders are followed only inside the given folders
    unless ``follow_symlinks``. Raises FileNotFoundError for a source that does not exist.
    """
    sources = list(sources)
    folders = [
        source for source in sources if not isinstance(source, Item) and Path(source).is_dir()
    ]
    items: list[Item] = []
    for source in sources:
        if isinstance(source, Item):
            items.append(source)
            continue
        path = Path(source)
        if path.is_dir():
            walked = list(walk_folder(path, exclude, folders, follow_symlinks))
            manifests = [
                item
                for item in walked
                if not item.problem and item.path.endswith(".json") and is_manifest(item.path)
            ]
            items.extend(item for item in walked if item not in manifests)
            for manifest in manifests:
                items.extend(read_manifest(manifest.path))
        elif (
            path.is_file()
            and path.suffix in (".csv", ".tsv", ".parquet", ".json")
            and is_manifest(path)
        ):
            items.extend(read_manifest(path))
        elif path.is_file():
            items.append(Item.from_path(path))
        else:
            raise FileNotFoundError(f"no such file or folder: {source}")
    return _dedupe(items)


def _dedupe(items: list[Item]) -> list[Item]:
    seen: dict[str, Item] = {}
    for item in items:
        if item.id in seen:
            logger.debug("item %s listed twice; keeping the last", item.id)
        seen[item.id] = item
    return list(seen.values())


def _read_csv(path: Path, **kwargs: Any) -> Any:
    """A CSV/TSV manifest. One that is not UTF-8 (a Latin-1 file name, say) is read as text,
    each undecodable byte kept as ``os.fsdecode`` keeps it, so its paths still name the files."""
    import pandas as pd

    sep = "\t" if path.suffix == ".tsv" else ","
    try:
        return pd.read_csv(path, sep=sep, **kwargs)
    except UnicodeError:
        if kwargs.get("nrows") != 0:
            logger.warning(
                "manifest %s is not valid UTF-8: its values are read as text, bytes that are "
                "not UTF-8 kept as in file names",
                path,
            )
        errors = "surrogateescape"  # Arrow strings cannot hold these: plain Python str objects
        return pd.read_csv(path, sep=sep, encoding_errors=errors, dtype=object, **kwargs)


def _json_value(value: Any) -> Any:
    """A manifest cell as a JSON-serialisable value (NaN becomes None)."""
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        try:
            value = value.item()
        except (ValueError, AttributeError):
            value = str(value)
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)
