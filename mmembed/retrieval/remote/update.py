"""Bring a collection up to date with a set of items, with the local index's semantics.

One run, holding the ledger's writer lock:

1. open the collection (create it, recording model, instruction and dim; or check them);
2. reconcile the ledger with the collection (``reconcile``): counts, and a sample of vectors
   read back and compared with the ledger's checksums (all of them with ``verify``);
3. stamp the items and embed the new and changed ones into the staging checkpoint;
4. upsert them in batches, each recorded in the ledger once the engine accepted it;
5. delete removed items, flush, wait for the engine's index over the new segments (a search
   before it scans them by brute force), and only then drop the checkpoint.

A kill or a lost connection at any point leaves the checkpoint and the ledger consistent
with what the engine accepted; the rerun uploads the rest, under the same primary keys.
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from ...errors import StoreError
from ...modality import Modality
from .. import store
from ..embed import EmbedSettings, Engine
from ..store import Staged, Staging
from ..update import UpdateReport, _skipped_row, _stamp, open_staging
from ..walk import Item
from .ledger import Ledger, position_of, vector_checksum
from .milvus import MAX_SNIPPET, PROPERTY, CollectionOptions, MilvusCollection, _text, remote_key
from .uri import StoreURI

logger = logging.getLogger(__name__)

UPLOAD_BATCH = 1000  # entities per upsert (and per ledger transaction)
RECONCILE_SAMPLE = 64  # vectors read back and compared on every run


def update_remote(
    uri: StoreURI,
    items: Sequence[Item],
    embedder: Any,
    settings: EmbedSettings,
    engine: Engine,
    *,
    options: CollectionOptions | None = None,
    sync_sources: Iterable[str] = (),
    remove_ids: Iterable[str] = (),
    rehash: bool = False,
    verify: bool = False,
    upload_batch: int = UPLOAD_BATCH,
    recorded: dict[str, Any] | None = None,
) -> UpdateReport:
    """Update (or create) the collection ``uri`` names; see the module docstring.

    ``recorded``: build options (``pdf_route``, ``pages``) the ledger keeps, with the page
    route, for the next run, once this one has succeeded (as a folder's ``info.json``).

    Raises:
        StoreError: the engine is unreachable, the collection belongs to another model or
            dimension, or the engine refused a write (the rerun finishes the upload).
    """
    with store.write_lock(uri.ledger):
        store.remove_temporaries(uri.ledger)
        collection = MilvusCollection(uri)
        ledger = Ledger(uri.ledger)
        staging = None
        try:
            dim = settings.dim or embedder.dim
            notes = open_collection(collection, ledger, settings, dim, options)
            notes += reconcile(collection, ledger, full=verify)
            staging = open_staging(uri.ledger, settings)
            report = _update(
                collection,
                ledger,
                items,
                embedder,
                settings,
                engine,
                staging,
                set(sync_sources),
                set(remove_ids),
                rehash,
                upload_batch,
            )
            collection.flush()
            collection.wait_indexed()
            ledger.set_config({**ledger.config(), **settings.to_dict(), **(recorded or {})})
            report.repaired = "; ".join(notes)
            report.generation = uri.collection
            staging.discard()
            staging = None
            return report
        finally:
            if staging is not None:
                staging.close()
            ledger.close()
            collection.close()


def open_collection(
    collection: MilvusCollection,
    ledger: Ledger,
    settings: EmbedSettings,
    dim: int,
    options: CollectionOptions | None,
) -> list[str]:
    """Create the collection, or check it was made with these settings; returns notes.

    A ledger written for another collection (dropped and made again, or a new one) is
    emptied, so that every item is uploaded again.
    """
    notes = []
    uri = collection.uri
    if collection.exists():
        recorded = collection.info()
        if not recorded.get("model"):
            raise StoreError(
                f"{uri}: collection {collection.name} was not made by mmembed "
                f"(no {PROPERTY} property); choose another collection"
            )
        check_recorded(uri, recorded, settings, dim)
        collection.load()
    else:
        options = options or CollectionOptions.make()
        recorded = {
            **settings.to_dict(),
            "matryoshka_dim": settings.dim,
            "dim": dim,
            "uid": uuid.uuid4().hex,
            "index_type": options.index_type,
            "build_params": options.build_params,
            "search_params": options.search_params,
            "shards": options.shards,
            "replicas": options.replicas,
        }
        collection.create(dim, recorded, options)
        logger.info("created collection %s (%s)", collection.name, options)
    config = ledger.config()
    if config.get("uid") != recorded["uid"]:
        if ledger.count():
            notes.append(
                f"the ledger listed {ledger.count()} items of another collection; "
                "uploading every item again"
            )
            ledger.remove(row["id"] for row in ledger.rows())
        ledger.set_config({"uid": recorded["uid"], "uri": str(uri), **settings.to_dict()})
    return notes


def check_recorded(uri: StoreURI, recorded: dict, settings: EmbedSettings, dim: int) -> None:
    """Raise StoreError when a collection was made with another model, instruction or dim."""
    wanted = {**settings.to_dict(), "dim": dim}
    stored = {
        "model": recorded.get("model"),
        "instruction": recorded.get("instruction"),
        "dim": recorded.get("field_dim", recorded.get("dim")),
    }
    differ = [key for key in ("model", "dim", "instruction") if stored[key] != wanted[key]]
    if differ:
        changes = ", ".join(f"{key} {stored[key]!r}, not {wanted[key]!r}" for key in differ)
        raise StoreError(
            f"{uri}: the collection was made with {changes}; index into another collection"
        )


def reconcile(
    collection: MilvusCollection, ledger: Ledger, full: bool = False, repair: bool = True
) -> list[str]:
    """Make the ledger and the collection agree; returns what was found, in words.

    ``full`` reads every vector back (``--verify``), else a sample of ``RECONCILE_SAMPLE`` and
    the counts; without ``repair`` nothing is changed (a search's ``--verify``).

    Items the ledger lists but the engine lacks, or holds with another vector, are dropped
    from the ledger (the run embeds and uploads them again); entities the ledger does not
    list (a killed upload, a removal cut short) are deleted from the collection.
    """
    sums = ledger.checksums()
    by_key = {row["key"]: row["id"] for row in ledger.rows()}
    if full:
        remote: dict[str, str] = {}
        for rows in collection.scan(with_vectors=True):
            remote.update({row["id"]: vector_checksum(row["vector"]) for row in rows})
        missing = [key for key in sums if key not in remote]
        differ = [key for key in sums if key in remote and remote[key] != sums[key]]
        extra = [key for key in remote if key not in sums]
        checked = len(sums)
    else:
        rng = np.random.default_rng()
        keys = sorted(sums)
        sample = [keys[i] for i in rng.choice(len(keys), min(len(keys), RECONCILE_SAMPLE), False)]
        found = collection.vectors(sample)
        missing = [key for key in sample if key not in found]
        differ = [
            key for key in sample if key in found and vector_checksum(found[key]) != sums[key]
        ]
        extra = []
        checked = len(sample)
        if collection.count() != len(sums) - len(missing) or missing:
            remote_keys = {row["id"] for rows in collection.scan(False) for row in rows}
            missing = [key for key in sums if key not in remote_keys]
            extra = [key for key in remote_keys if key not in sums]
    notes = []
    if missing or differ:
        if repair:
            ledger.remove(by_key[key] for key in [*missing, *differ])
        notes.append(
            f"{len(missing)} items missing from the collection and {len(differ)} with another "
            f"vector (of {checked} checked)" + ("; uploading them again" if repair else "")
        )
    if extra:
        if repair:
            collection.delete(extra)
        notes.append(
            f"{'deleted ' if repair else ''}{len(extra)} entities the ledger does not list"
            + (" (an upload cut short)" if repair else "")
        )
    for note in notes:
        logger.warning("%s: %s", collection.uri, note)
    return notes


def _update(
    collection: MilvusCollection,
    ledger: Ledger,
    items: Sequence[Item],
    embedder: Any,
    settings: EmbedSettings,
    engine: Engine,
    staging: Staging,
    sync_sources: set[str],
    remove_ids: set[str],
    rehash: bool,
    upload_batch: int,
) -> UpdateReport:
    old_rows = ledger.rows()
    old = {row["id"]: row for row in old_rows}
    old_skipped = ledger.skipped()
    ready, skipped = _stamp(
        items, embedder, {} if rehash else ledger.stamps(old_rows), settings.model
    )
    known_failures = {row["id"]: row for row in old_skipped}
    unchanged = [item for item in ready if old.get(item.id, {}).get("cache_key") == item.cache_key]
    unchanged_ids = {item.id for item in unchanged}
    _relabel(collection, ledger, [(item, old[item.id]) for item in unchanged], upload_batch)
    wanted = [item for item in ready if item.id not in unchanged_ids]
    retried = []
    for item in wanted:  # a failure stays one until the content changes (as in a folder index)
        failure = known_failures.get(item.id)
        if failure and failure["content_hash"] == item.content_hash and failure["reason"]:
            skipped.append(_skipped_row(item, failure["reason"]))
        else:
            retried.append(item)
    staged_keys = staging.keys()
    todo = list(
        {item.cache_key: item for item in retried if item.cache_key not in staged_keys}.values()
    )
    resumed = len({item.cache_key for item in retried} & staged_keys)
    if todo:
        logger.info("embedding %d items (%d from a checkpoint)", len(todo), resumed)
    stored_by_actors = _embed(engine, todo, staging, collection, settings.dim or embedder.dim)

    staged = staging.get(item.cache_key for item in retried)
    uploads = []
    for item in retried:
        entry = staged.get(item.cache_key)
        if entry is None or entry.vector is None:
            skipped.append(_skipped_row(item, entry.reason if entry else "not embedded"))
        else:
            uploads.append((item, entry))
    dim = settings.dim or embedder.dim
    for start in range(0, len(uploads), upload_batch):
        batch = uploads[start : start + upload_batch]
        for _, entry in batch:
            if entry.vector.shape != (dim,):
                raise ValueError(
                    f"embedder returned {entry.vector.shape[0]}-d vectors, expected {dim}"
                )
        collection.upsert(
            [_entity(item, entry) for item, entry in batch if item.id not in stored_by_actors]
        )
        ledger.put(_ledger_row(item, entry) for item, entry in batch)

    incoming = {item.id for item in ready} | {row["id"] for row in skipped}
    stored = {item.id for item, _ in uploads} | unchanged_ids
    gone = [
        row
        for row in old_rows
        if row["id"] not in stored
        and (row["id"] in incoming or row["id"] in remove_ids or row["source"] in sync_sources)
    ]
    collection.delete([row["key"] for row in gone])
    ledger.remove(row["id"] for row in gone)
    kept_skipped = [
        row
        for row in old_skipped
        if row["id"] not in incoming
        and row["id"] not in remove_ids
        and row["source"] not in sync_sources
    ]
    ledger.set_skipped([*kept_skipped, *skipped])

    embedded = sum(
        1
        for item in todo
        if staged.get(item.cache_key) and staged[item.cache_key].vector is not None
    )
    changed = [item for item, _ in uploads]
    return UpdateReport(
        generation=None,
        added=sum(1 for item in changed if item.id not in old),
        updated=sum(1 for item in changed if item.id in old),
        removed=sum(1 for row in gone if row["id"] not in stored),
        unchanged=len(unchanged),
        embedded=embedded,
        failed=sum(
            1
            for item in todo
            if not (staged.get(item.cache_key) and staged[item.cache_key].vector is not None)
        ),
        resumed=resumed,
        reused=max(0, len(uploads) - embedded - resumed),
        skipped=[*kept_skipped, *skipped],
        recall_at_10=float("nan"),
    )


def _embed(
    engine: Engine, todo: list[Item], staging: Staging, collection: MilvusCollection, dim: int
) -> set[str]:
    """Run ``engine``; returns the ids its workers already stored in the collection.

    The Ray engine's actors upsert their own batches into a Milvus server. Milvus Lite keeps
    one writer (this process): its Collection.insert (milvus-lite 3.2.2,
    engine/collection.py) takes sequence numbers and writes its WAL and memtable without a
    lock, so writers on several of its server threads could interleave. The ledger records
    the actors' items after the run, as it does this process's batches: a run cut short in
    between leaves entities the ledger does not list, which the rerun's ``reconcile`` deletes
    before uploading them again from the checkpoint.
    """
    writes = hasattr(engine, "writer") and not collection.uri.embedded
    if writes:
        engine.writer = ActorWriter(str(collection.uri), dim, collection.timeout)
    try:
        engine(todo, staging)
    finally:
        if writes:
            engine.writer = None
    stored = set(engine.stored) if writes else set()
    if stored:
        logger.info("%d items stored by the embedding actors", len(stored))
    return stored


class ActorWriter:
    """Stores items in the collection at ``uri`` from another process (a Ray actor).

    Picklable: the connection opens on first use in the process that writes. An actor that
    cannot reach the engine stores nothing (it logs why): this process then uploads its
    items, and reports the error in one line if it cannot either.
    """

    def __init__(self, uri: str, dim: int, timeout: float = 30.0):
        self.uri, self.dim, self.timeout = uri, dim, timeout
        self._collection: MilvusCollection | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {"uri": self.uri, "dim": self.dim, "timeout": self.timeout}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(**state)

    def __call__(self, pairs: list[tuple[Item, Staged]]) -> list[str]:
        from .uri import parse

        good = [(item, entry) for item, entry in pairs if entry.vector.shape == (self.dim,)]
        try:
            if self._collection is None:
                self._collection = MilvusCollection(parse(self.uri), self.timeout)
            self._collection.upsert([_entity(item, entry) for item, entry in good])
        except StoreError as error:
            logger.warning("%s; the driver uploads these %d items", error, len(good))
            return []
        return [item.id for item, _ in good]


def _relabel(
    collection: MilvusCollection, ledger: Ledger, pairs: list[tuple[Item, dict]], batch: int
) -> None:
    """Items whose content is unchanged: new metadata or source is written to the engine
    (with the stored vector, read back), new file stamps to the ledger only."""
    stamps = ("size", "mtime_ns", "ctime_ns", "inode")
    relabelled = [
        (item, row)
        for item, row in pairs
        if (item.metadata or {}) != (row["metadata"] or {}) or item.source != row["source"]
    ]
    relabelled_ids = {item.id for item, _ in relabelled}
    restamped = [
        (item, row)
        for item, row in pairs
        if item.id in relabelled_ids or any(getattr(item, key) != row[key] for key in stamps)
    ]
    for start in range(0, len(relabelled), batch):
        chunk = relabelled[start : start + batch]
        found = collection.vectors([row["key"] for _, row in chunk])
        entities = []
        for item, row in chunk:
            if row["key"] in found:  # else reconcile's next run uploads it again
                entry = Staged(found[row["key"]], row["snippet"] or "")
                entities.append(_entity(item, entry))
        collection.upsert(entities)
    ledger.restamp(
        {"id": item.id, "metadata": item.metadata, "source": item.source}
        | {key: getattr(item, key) for key in stamps}
        for item, _ in restamped
    )


def _snippet(item: Item, entry: Any) -> str:
    if item.modality in (Modality.IMAGE, Modality.VIDEO) and item.path:
        return os.path.basename(item.path)
    return entry.snippet or ""


def _entity(item: Item, entry: Any) -> dict[str, Any]:
    """The collection entity of an item (see milvus.py)."""
    key = remote_key(item.id)
    return {
        "id": key,
        "vector": np.asarray(entry.vector, dtype=np.float32),
        "position": position_of(key),
        "path": _text(item.path),
        "modality": item.modality.value,
        "content_hash": item.content_hash,
        "source": _text(item.source),
        "snippet": _text(_snippet(item, entry), MAX_SNIPPET),
        "metadata": item.metadata or {},
    }


def _ledger_row(item: Item, entry: Any) -> dict[str, Any]:
    key = remote_key(item.id)
    return {
        **item.stored_fields(),
        "key": key,
        "position": position_of(key),
        "snippet": _snippet(item, entry),
        "thumbnail": entry.thumbnail,
        "cache_key": item.cache_key,
        "checksum": vector_checksum(entry.vector),
    }
