"""Bring an index up to date with a set of items: embed what is new, drop what is gone.

One call writes at most one new generation. Items whose cache key (content hash, modality,
decoding settings, model) is already in the current generation or in the staging checkpoint
are not embedded again. Every update first verifies the current generation's checksums; a
damaged one is rebuilt from its intact parts (``repair.py``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import CorruptIndexError, UsageError
from ..modality import Modality
from . import store, vectors
from .decode import cache_key
from .embed import EmbedSettings, Engine
from .repair import Salvaged, salvage
from .store import Generation, Staged, Staging
from .walk import Item, stamp_item

logger = logging.getLogger(__name__)

RECORDED_OPTIONS = ("pdf_route", "pages")  # build options info.json keeps for the next run


@dataclass
class UpdateReport:
    """What an update did.

    Attributes:
        generation: the current generation after the update.
        added / updated / removed / unchanged: item counts.
        embedded: items embedded by this run (items that failed are in ``failed``).
        failed: items this run tried to embed and could not (they are among ``skipped``).
        resumed: items taken from the checkpoint of an interrupted run.
        reused: added or updated items whose content (same cache key) already had a vector:
            an identical file elsewhere in the index or in this run.
        skipped: ``{"id", "path", "reason", ...}`` for every item not in the index.
        recall_at_10: recall of the search structure against exact search.
        repaired: what was damaged and how it was rebuilt ("" when nothing was).
    """

    generation: str | None
    added: int = 0
    updated: int = 0
    removed: int = 0
    unchanged: int = 0
    embedded: int = 0
    failed: int = 0
    resumed: int = 0
    reused: int = 0
    skipped: list[dict] = field(default_factory=list)
    recall_at_10: float = 1.0
    repaired: str = ""


@dataclass
class _Plan:
    """Final content of the next generation, before vectors are gathered."""

    rows: list[dict] = field(default_factory=list)  # new rows, position order
    sources: list[tuple[str, Any]] = field(default_factory=list)  # ("old", pos) | ("staged", hash)
    skipped: list[dict] = field(default_factory=list)


def update(
    index_dir: Path,
    items: Sequence[Item],
    embedder: Any,
    settings: EmbedSettings,
    engine: Engine,
    *,
    sync_sources: Iterable[str] = (),
    remove_ids: Iterable[str] = (),
    index_type: str | None = None,
    rehash: bool = False,
    recorded: dict[str, Any] | None = None,
) -> UpdateReport:
    """Update (or create) the index at ``index_dir``.

    Args:
        items: items to have in the index (their hashes are computed here).
        embedder: the Embedder (its ``modalities`` decide what is supported).
        settings: model, instruction and dim; must match an existing index.
        engine: embeds the items not yet embedded into the staging checkpoint.
        sync_sources: folders/manifests fully rescanned: their items missing from
            ``items`` are removed.
        remove_ids: ids to remove.
        index_type: vector structure ("auto", "flat", "ivf", "hnsw", "binary"); None keeps
            the existing index's choice.
        rehash: hash every file's content, trusting no size/time/inode stamp.
        recorded: build options kept in ``info.json`` for the next run (``pdf_route``,
            ``pages``); None keeps the existing index's.
    """
    with store.write_lock(index_dir):
        store.remove_temporaries(index_dir)
        repaired = ""
        old: Generation | Salvaged | None
        try:
            old = Generation.current(index_dir, verify=True)
        except CorruptIndexError as error:
            old = salvage(index_dir)
            repaired = f"{error.file} {error.problem}"
            if old is not None:
                repaired += f" ({old.lost})"
            logger.warning("index %s: %s; repairing", index_dir, repaired)
        # The damaged generation stays until its replacement is published (write_generation
        # swaps current.json, then removes it): a kill during a repair leaves what it found.
        # ``is not None``: a salvage that kept no vectors has len 0, and is still the old one.
        store.remove_stale(index_dir, keep=old.name if old is not None else None)
        if old is not None and old.info:
            check_settings(old.info, settings)
        index_type = (
            index_type or (old.info.get("index_type") if old is not None else None) or "auto"
        )
        staging = open_staging(index_dir, settings)
        try:
            report = _update_locked(
                index_dir,
                old,
                items,
                embedder,
                settings,
                engine,
                staging,
                set(sync_sources),
                set(remove_ids),
                index_type,
                rehash,
                recorded,
            )
            report.repaired = repaired
        except BaseException:
            staging.close()
            raise
        staging.discard()
        if old is not None:
            old.close()
        return report


def _update_locked(
    index_dir: Path,
    old: Generation | Salvaged | None,
    items: Sequence[Item],
    embedder: Any,
    settings: EmbedSettings,
    engine: Engine,
    staging: Staging,
    sync_sources: set[str],
    remove_ids: set[str],
    index_type: str,
    rehash: bool,
    recorded: dict[str, Any] | None = None,
) -> UpdateReport:
    old_rows = list(old.all_rows()) if old is not None else []
    old_skipped = old.skipped() if old is not None else []
    stamps = old.stamps() if old is not None and not rehash else {}
    ready, skipped = _stamp(items, embedder, stamps, settings.model)
    known_keys = {_row_key(row, settings.model): row["pos"] for row in old_rows}
    known_failures = {
        _row_key(row, settings.model): row
        for row in old_skipped
        if row["content_hash"] and row["modality"]
    }
    staged_keys = staging.keys()
    todo = list(
        {
            item.cache_key: item
            for item in ready
            if item.cache_key not in known_keys
            and item.cache_key not in known_failures
            and item.cache_key not in staged_keys
        }.values()
    )
    resumed = len({item.cache_key for item in ready} & staged_keys)
    if todo:
        logger.info("embedding %d items (%d reused from a checkpoint)", len(todo), resumed)
    engine(todo, staging)

    plan = _plan(
        old_rows,
        old_skipped,
        ready,
        skipped,
        staging,
        known_keys,
        known_failures,
        sync_sources,
        remove_ids,
    )
    failed = sum(
        1 for entry in staging.get(item.cache_key for item in todo).values() if entry.vector is None
    )
    report = _counts(old_rows, plan, len(todo) - failed, resumed)
    report.failed = failed
    report.reused = max(0, report.added + report.updated - report.embedded - resumed)
    if recorded is None and old is not None:
        recorded = {key: old.info[key] for key in RECORDED_OPTIONS if key in old.info}
    recorded = recorded or {}
    fingerprint = _fingerprint(plan, index_type, recorded)
    if old is not None and old.info.get("fingerprint") == fingerprint:
        report.generation, report.recall_at_10 = old.name, old.info["vectors"]["recall_at_10"]
        return report
    matrix = _gather(old, plan, staging, settings.dim or embedder.dim)
    searcher, spec = vectors.build(matrix, index_type)
    thumbnails = _old_thumbnails(old, plan)
    info = {
        **settings.to_dict(),
        "dim": int(matrix.shape[1]),
        "matryoshka_dim": settings.dim,
        "count": len(plan.rows),
        "index_type": index_type,
        "vectors": spec.to_dict(),
        "fingerprint": fingerprint,
        "skipped": len(plan.skipped),
        "sources": sorted(
            {row["source"] for row in [*plan.rows, *plan.skipped] if row.get("source")}
        ),
        **recorded,
    }
    rows = (
        {**row, "thumbnail": thumbnails.get(row["pos"], row.get("thumbnail"))} for row in plan.rows
    )
    report.generation = store.write_generation(
        index_dir,
        info,
        matrix,
        rows,
        plan.skipped,
        lambda folder: vectors.save(searcher, spec, folder),
    )
    store.remove_stale(index_dir, keep=report.generation)
    report.recall_at_10 = spec.recall_at_10
    logger.info("wrote %s: %d items, %s", report.generation, len(plan.rows), spec)
    return report


def check_settings(info: dict, settings: EmbedSettings) -> None:
    """Raise UsageError when ``settings`` differ from those an index was built with."""
    stored = {
        "model": info.get("model"),
        "instruction": info.get("instruction"),
        "dim": info.get("matryoshka_dim"),
    }
    wanted = settings.to_dict()
    differ = [key for key in stored if stored[key] != wanted[key]]
    if info.get("page_route") and settings.page_route not in (None, info["page_route"]):
        differ.append("page_route")
        stored["page_route"], wanted["page_route"] = info["page_route"], settings.page_route
    if differ:
        changes = ", ".join(f"{key} {stored[key]!r}, not {wanted[key]!r}" for key in differ)
        raise UsageError(
            f"this index was built with {changes}; "
            "index into a new folder (or delete this one) to change that"
        )


def _row_key(row: dict, model: str) -> str:
    modality = Modality(row["modality"])
    metadata = row.get("metadata") or {}
    route = str(metadata.get("route", "")) if modality is Modality.PAGE else ""
    return cache_key(modality, row["path"], row["content_hash"], model, route)


def _stamp(
    items: Sequence[Item], embedder: Any, stamps: dict, model: str
) -> tuple[list[Item], list[dict]]:
    """Hash the items; those that cannot be embedded become skipped rows."""
    ready, skipped = [], []
    supported = {getattr(modality, "value", modality) for modality in embedder.modalities}
    for item in items:
        reason = item.problem  # found while scanning (a symlink loop...)
        if not reason and item.modality is None:
            reason = f"unsupported file type {Path(item.path or '').suffix or '(no extension)'}"
        elif not reason and _needs(item).value not in supported:
            reason = f"model {model} cannot embed {item.modality.value}"
        elif not reason and item.modality is Modality.PAGE and not item.route:
            reason = f"model {model} cannot read page images"
        elif not reason:
            try:
                stamp_item(item, stamps)
                item.cache_key = cache_key(
                    item.modality, item.path, item.content_hash, model, item.route
                )
            except OSError as error:
                reason = f"cannot read file: {error}"
        if reason:
            skipped.append(_skipped_row(item, reason))
        else:
            ready.append(item)
    return ready, skipped


def _needs(item: Item) -> Modality:
    """The modality the model must embed: a page read from its text layer is text."""
    return Modality.TEXT if item.route == "text" else item.modality


def _skipped_row(item: Item, reason: str) -> dict:
    modality = item.modality.value if item.modality else None
    return {
        "id": item.id,
        "path": item.path,
        "modality": modality,
        "content_hash": item.content_hash or None,
        "source": item.source,
        "reason": reason,
    }


def _plan(
    old_rows: list[dict],
    old_skipped: list[dict],
    ready: list[Item],
    skipped: list[dict],
    staging: Staging,
    known_keys: dict[str, int],
    known_failures: dict[str, dict],
    sync_sources: set[str],
    remove_ids: set[str],
) -> _Plan:
    plan = _Plan()
    incoming = {item.id for item in ready} | {row["id"] for row in skipped}

    def kept(row: dict) -> bool:
        return (
            row["id"] not in incoming
            and row["id"] not in remove_ids
            and row["source"] not in sync_sources
        )

    for row in old_rows:
        if kept(row):
            plan.sources.append(("old", row["pos"]))
            plan.rows.append({**row, "pos": len(plan.rows), "old_pos": row["pos"]})
    plan.skipped = [row for row in old_skipped if kept(row)] + skipped
    staged = staging.get(item.cache_key for item in ready if item.cache_key not in known_keys)
    for item in ready:
        row = {"pos": len(plan.rows), **item.stored_fields()}
        if item.modality in (Modality.IMAGE, Modality.VIDEO) and item.path:
            row["snippet"] = os.path.basename(item.path)  # its own name, even for a duplicate
        if item.cache_key in known_keys:
            plan.sources.append(("old", known_keys[item.cache_key]))
            row["old_pos"] = known_keys[item.cache_key]
        elif item.cache_key in known_failures:
            plan.skipped.append(_skipped_row(item, known_failures[item.cache_key]["reason"]))
            continue
        elif item.cache_key in staged and staged[item.cache_key].vector is not None:
            entry = staged[item.cache_key]
            plan.sources.append(("staged", entry))
            row.setdefault("snippet", entry.snippet)
            row["thumbnail"] = entry.thumbnail
        else:
            entry = staged.get(item.cache_key, Staged(None, reason="not embedded"))
            plan.skipped.append(_skipped_row(item, entry.reason))
            continue
        plan.rows.append(row)
    return plan


def _gather(
    old: Generation | Salvaged | None, plan: _Plan, staging: Staging, dim: int
) -> np.ndarray:
    """The new generation's vector matrix, in position order."""
    matrix = np.empty((len(plan.rows), dim), dtype=np.float32)
    old_rows = [(new, source) for new, (kind, source) in enumerate(plan.sources) if kind == "old"]
    if old_rows and old is not None:
        new_positions, old_positions = (np.array(column) for column in zip(*old_rows, strict=True))
        order = np.argsort(old_positions)  # sequential reads from the memory map
        matrix[new_positions[order]] = old.vectors[old_positions[order]]
    for new, (kind, entry) in enumerate(plan.sources):
        if kind == "staged":
            if entry.vector.shape != (dim,):
                raise ValueError(
                    f"embedder returned {entry.vector.shape[0]}-d vectors, expected {dim}"
                )
            matrix[new] = entry.vector
    return matrix


def _old_thumbnails(old: Generation | Salvaged | None, plan: _Plan) -> dict[int, bytes | None]:
    """Thumbnails and snippets of rows carried over, by new position (updates plan rows)."""
    carried = {row["old_pos"]: row for row in plan.rows if "old_pos" in row}
    if old is None or not carried:
        return {}
    thumbnails = {}
    for old_pos, old_row in old.rows(carried, thumbnails=True).items():
        row = carried[old_pos]
        row.setdefault("snippet", old_row["snippet"])
        thumbnails[row["pos"]] = old_row["thumbnail"]
    for row in plan.rows:
        row.pop("old_pos", None)
    return thumbnails


def _counts(old_rows: list[dict], plan: _Plan, embedded: int, resumed: int) -> UpdateReport:
    before = {row["id"]: row["content_hash"] for row in old_rows}
    after = {row["id"]: row["content_hash"] for row in plan.rows}
    return UpdateReport(
        generation=None,
        added=sum(1 for key in after if key not in before),
        updated=sum(1 for key, digest in after.items() if key in before and before[key] != digest),
        removed=sum(1 for key in before if key not in after),
        unchanged=sum(1 for key, digest in after.items() if before.get(key) == digest),
        embedded=embedded,
        resumed=resumed,
        skipped=plan.skipped,
    )


def _fingerprint(plan: _Plan, index_type: str, recorded: dict[str, Any]) -> str:
    """A digest of everything a generation holds, to skip writing an identical one."""
    digest = hashlib.sha256(f"{index_type} {store.FORMAT_VERSION}".encode())
    if recorded:  # an index from before options were recorded keeps its fingerprint
        digest.update(json.dumps(recorded, sort_keys=True).encode())
    keys = ("id", "path", "content_hash", "size", "mtime_ns", "ctime_ns", "inode", "source")
    for row in sorted(plan.rows, key=lambda row: row["id"]):
        fields = [row[key] for key in keys]
        digest.update(json.dumps([fields, row["metadata"]], sort_keys=True).encode())
    for row in sorted(plan.skipped, key=lambda row: row["id"]):
        digest.update(json.dumps([row["id"], row["reason"]]).encode())
    return digest.hexdigest()


def open_staging(folder: Path, settings: EmbedSettings) -> Staging:
    """The embedding checkpoint in ``folder``, with the complete shards of a killed Ray run
    merged in: what a rerun of the local or the engine updater resumes from."""
    staging = Staging(folder, settings.to_dict())
    if (folder / store.RAY_SHARDS).exists():
        from .ray_engine import salvage_shards  # imported only when a Ray run left shards

        salvage_shards(folder / store.RAY_SHARDS, staging, settings)
    return staging
