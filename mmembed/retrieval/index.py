"""``Index``: build, update and search an on-disk multimodal index.

Example::

    index = Index.build(["photos/", "notes/"], mmembed.load("mmembed-mini"), "my-index")
    results = Index.open("my-index").search("a cat on a sofa", k=5)
    for hit in results[0]:
        print(hit.rank, hit.score, hit.path)
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import CorruptIndexError, InputError, UsageError
from ..inputs import Input, Text, as_input
from ..models.reference import model_reference
from . import integrity, store, vectors
from .embed import EmbedSettings, Engine, local_engine
from .pages import (
    MODEL_ROUTES,
    PageOptions,
    PageRouting,
    expand_pages,
    is_input,
    item_of_input,
    matching_sources,
    page_files,
)
from .remote.uri import parse as parse_uri
from .results import Hit, SearchResults
from .store import Generation
from .update import UpdateReport, update
from .walk import Item, scan

logger = logging.getLogger(__name__)

Source = str | os.PathLike | Item | Input
Query = Any  # str, PIL.Image or an mmembed input (Text, Image, Video, Table, Document, Page)


class Index:
    """A folder of index generations, searchable with the Embedder that built it.

    Use ``Index.build`` to create or update one and ``Index.open`` to read one.
    """

    def __init__(self, path: Path, generation: Generation, embedder: Any = None):
        self.path = path
        self.generation = generation
        self._embedder = embedder
        self._searcher: vectors.Searcher | None = None
        self.last_update: UpdateReport | None = None

    @classmethod
    def build(
        cls,
        sources: Iterable[Source],
        embedder: Any,
        path: str | os.PathLike,
        *,
        instruction: str | None = None,
        dim: int | None = None,
        index_type: str | None = None,
        engine: str = "local",
        batch_size: int = 32,
        num_workers: int | None = None,
        show_progress: bool | None = None,
        sync: bool = True,
        devices: Sequence[str] | None = None,
        embedder_factory: Callable[[], Any] | None = None,
        rehash: bool = False,
        follow_symlinks: bool = False,
        pdf_route: str | None = None,
        pages: Iterable[str | os.PathLike] | None = None,
        **store_options: Any,
    ) -> Index:
        """Create the index at ``path``, or bring an existing one up to date.

        Args:
            sources: folders, Parquet/CSV manifests, files, ``Item``s and typed inputs
                (``mmembed.Page(picture)``, ``Image``, ``Video``, ``Table``, ``Document``,
                ``Text``); a PDF is indexed page by page, ids ``file.pdf#page=N``.
            embedder: an Embedder, or a model name for ``mmembed.load``.
            path: the index folder, or an engine URI (``milvus-lite:///PATH/db.db?collection=NAME``,
                ``milvus://HOST:PORT/NAME``: see ``remote/uri.py``).
            instruction: instruction for indexed items (default: the model's document one).
            dim: Matryoshka dimension to keep (default: the model's full dimension).
            index_type: "auto", "flat", "ivf", "hnsw" or "binary" (default: keep the
                existing index's, else "auto").
            engine: "local" (this process) or "ray" (a Ray Data pipeline).
            batch_size: items per ``encode`` call (and per checkpoint).
            num_workers: decoding processes (local; default: the CPUs, at most 16) or embedding
                actors (ray; default 2).
            devices: embed on a copy of the model per device (local), e.g.
                ``["cuda:0", "cuda:1"]``; default: the model's device. With the Ray engine,
                a CUDA model asks Ray for one GPU per embedding actor.
            show_progress: progress bar (default: when stderr is a terminal).
            sync: remove items of the given folders/manifests that no longer exist.
            embedder_factory: builds the Embedder inside Ray actors (default: load it by name).
            rehash: hash every file's content instead of trusting size, times and inode.
            follow_symlinks: follow links in folders that lead outside the given folders.
            pdf_route: how PDF pages are read: "auto" (the text layer where it has real text,
                else the model's page route), "text", or the model's page route by name
                ("reader", "ocr", "pixel"; mmembed-mini loaded with that ``page=``).
                Default: the existing index's, else "auto". Pages whose route changes are
                embedded again.
            pages: image files (paths or glob patterns) to index as pages, not photos.
                Default: the existing index's patterns (matched again: new files join, the
                items of deleted ones leave). Files that a pattern left out no longer marks are
                embedded again as images.
            store_options: for an engine URI: ``options`` (``CollectionOptions``), ``verify``
                (read every stored vector back), ``upload_batch``.

        A damaged existing index is not an error: it is rebuilt from its intact parts
        (``last_update.repaired`` says what was damaged).
        """
        embedder = _load(embedder)
        target = parse_uri(path)  # None: a folder
        if target is None and store_options:
            raise UsageError(f"{', '.join(store_options)}: options of an engine URI, not a folder")
        if target is not None and index_type not in (None, "auto"):
            raise UsageError(
                f"{target}: index_type is for folders; pass options=CollectionOptions.make(...)"
            )
        path = Path(path) if target is None else target.ledger  # an engine's: its ledger
        excluded = [path]
        if target is not None and target.embedded:  # the database and all its ledgers
            excluded += [target.path, target.ledger.parent]
        recorded = _recorded_info(path, remote=target is not None)
        before = PageOptions.recorded(recorded)
        options = PageOptions.resolve(recorded, pdf_route, pages)
        if options.changes(before) and recorded:
            logger.info("%s: pages read anew: %s", path, options.changes(before))
        # A glob given anew must match; a recorded one may match nothing now (files deleted).
        given = [p for p in options.pages if p not in before.pages] if pages is not None else []
        marked = page_files(given) | page_files(set(options.pages) - set(given), strict=False)
        unmarked = page_files(set(before.pages) - set(options.pages), strict=False) - marked
        sources = [
            item_of_input(source) if is_input(source) else source for source in sources
        ] + sorted(marked | unmarked)  # unmarked: embedded again, as what they are now
        route = options.pdf_route
        routing = PageRouting(
            route, functools.partial(page_route_of, embedder, route, recorded), marked
        )
        if route in MODEL_ROUTES:
            routing.model_route()  # a route by name must be the model's: refused before work
        items = expand_pages(
            scan(sources, exclude=excluded, follow_symlinks=follow_symlinks), routing
        )
        read_by_model = {item.route for item in items if item.route not in ("", "text")}
        settings = EmbedSettings(
            model=model_reference(embedder.name),  # a folder as its absolute path
            instruction=instruction if instruction is not None else embedder.document_instruction,
            dim=dim,
            page_route=next(iter(read_by_model), None) or recorded.get("page_route"),
        )
        if engine == "local":
            run: Engine = local_engine(
                embedder, settings, batch_size, num_workers, show_progress, devices
            )
        elif engine == "ray":
            from .ray_engine import ray_engine

            device = str(devices[0]) if devices else str(embedder.device)
            factory = embedder_factory or functools.partial(_load, embedder.name, device)
            gpus = 1 if device.startswith("cuda") else 0  # one GPU per embedding actor
            run = ray_engine(
                factory, settings, batch_size, num_workers or 2, path / store.RAY_SHARDS, gpus
            )
        else:
            raise ValueError(f"unknown engine {engine!r}; use 'local' or 'ray'")
        roots = {_source_root(source) for source in sources if sync}
        roots |= {item.source for item in items if sync}
        if sync:  # page files of the patterns that are gone: their items leave
            patterns = {*before.pages, *options.pages}
            roots |= matching_sources(recorded.get("sources") or [], patterns)
        if target is not None:
            from .remote.index import RemoteIndex

            return RemoteIndex.build_items(
                target,
                items,
                embedder,
                settings,
                run,
                roots,
                rehash,
                recorded=options.to_dict(),
                **store_options,
            )
        report = update(
            path,
            items,
            embedder,
            settings,
            run,
            sync_sources=roots,
            index_type=index_type,
            rehash=rehash,
            recorded=options.to_dict(),
        )
        index = cls.open(path, embedder)
        index.last_update = report
        return index

    @classmethod
    def open(cls, path: str | os.PathLike, embedder: Any = None, verify: bool = False) -> Index:
        """Open the current generation at ``path`` (the Embedder loads on first search).

        Sizes and headers are always checked; ``verify`` also compares every file's checksum
        and checks every vector (a full read).

        ``path`` may be an engine URI (see ``build``): the index then searches the collection.

        Raises:
            FileNotFoundError: there is no index at ``path``.
            CorruptIndexError: a file is missing or damaged (the message names it and the fix).
            StoreError: the engine is unreachable or has no such collection.
        """
        if parse_uri(path) is not None:
            from .remote.index import RemoteIndex

            return RemoteIndex.open(path, embedder, verify)
        path = Path(path)
        generation = Generation.current(path, verify=verify)
        if generation is None:
            raise FileNotFoundError(f"no index at {path} (expected {path / store.CURRENT})")
        return cls(path, generation, embedder)

    @classmethod
    def repair(cls, path: str | os.PathLike, embedder: Any = None, **options: Any) -> Index:
        """Re-index the folders and manifests an index was built from, repairing damage.

        ``embedder`` defaults to the index's model; ``options`` go to ``build``.

        Raises:
            UsageError: the index no longer says what it was built from.
        """
        from .repair import recorded_info

        path = Path(path)
        info = recorded_info(path)
        model, sources = info.get("model"), info.get("sources") or []
        existing = [source for source in sources if Path(source).exists()]
        for source in sorted(set(sources) - set(existing)):
            logger.warning("%s is gone; its items are dropped where their vectors are lost", source)
        if not existing or not (embedder or model):
            raise UsageError(
                f"index {path} no longer says which folders it was built from; "
                f"rerun `mmembed index PATH... --out {path}`"
            )
        options.setdefault("instruction", info.get("instruction"))
        options.setdefault("dim", info.get("matryoshka_dim"))
        return cls.build(existing, embedder or model, path, **options)

    def add(self, sources: Iterable[Source], **options: Any) -> UpdateReport:
        """Embed and add files, folders, manifests or ``Item``s; keeps everything else.

        ``pages`` patterns join those the index has; ``pdf_route`` defaults to the index's.
        """
        options = {**self._settings(), **options}
        if options.get("pages") is not None:
            options["pages"] = [*PageOptions.recorded(self.info).pages, *options["pages"]]
        updated = Index.build(sources, self.embedder, self.location, sync=False, **options)
        self._adopt(updated)
        return updated.last_update

    def remove(self, ids: Iterable[str]) -> UpdateReport:
        """Remove items by id (files: their path, made absolute)."""
        wanted = {form for key in ids for form in (str(key), str(Path(key).resolve()))}
        settings = EmbedSettings(**{"model": self.info["model"], **self._settings()})
        report = update(
            self.path,
            [],
            self.embedder,
            settings,
            local_engine(self.embedder, settings),
            remove_ids=wanted,
        )
        self._switch(Generation.current(self.path))
        return report

    def search(
        self,
        queries: Query | Sequence[Query],
        k: int = 10,
        instruction: str | None = None,
        modalities: Iterable[str] | None = None,
    ) -> SearchResults:
        """The ``k`` best items for each query.

        Args:
            queries: one query or a list; a ``str`` is text (wrap file paths in
                ``mmembed.Image``/``Video``/``Table``).
            k: results per query.
            instruction: query instruction (default: the model's query instruction).
            modalities: only return items of these modalities, e.g. ``{"image", "video"}``.

        Raises:
            InputError: a query's modality is one the model cannot embed.
        """
        single = not isinstance(queries, (list, tuple))
        query_vectors = self.query_vectors([queries] if single else list(queries), instruction)
        return self.search_vectors(query_vectors, k, modalities)

    def query_vectors(self, queries: Sequence[Query], instruction: str | None = None) -> np.ndarray:
        """``(Q, D)`` unit query vectors as ``search`` embeds them with the index's model.

        Raises:
            InputError: a query's modality is one the model cannot embed.
        """
        inputs = [Text(query) if isinstance(query, str) else as_input(query) for query in queries]
        self._check_modalities(inputs)
        embedder = self.embedder
        query_vectors = embedder.encode(
            inputs,
            instruction=instruction if instruction is not None else embedder.query_instruction,
            batch_size=32,
            normalize=True,
            dim=self.info.get("matryoshka_dim"),
            show_progress_bar=False,
        )
        return np.asarray(query_vectors, dtype=np.float32)

    def search_vectors(
        self, query_vectors: np.ndarray, k: int = 10, modalities: Iterable[str] | None = None
    ) -> SearchResults:
        """Search with ready query vectors ``(Q, D)`` (unit length)."""
        query_vectors = checked_queries(query_vectors, self.info["dim"], k)
        allowed = None
        if modalities is not None:
            allowed = set(self.generation.positions_of(sorted(set(modalities))).tolist())
        found = self._search_filtered(query_vectors, k, allowed)
        self._check_hits(found)
        rows = self.generation.rows(pos for hits in found for _, pos in hits)
        return SearchResults(
            [
                [
                    Hit(
                        rank + 1,
                        score,
                        rows[pos]["id"],
                        rows[pos]["path"],
                        rows[pos]["modality"],
                        rows[pos]["metadata"],
                        rows[pos]["snippet"] or "",
                        pos,
                    )
                    for rank, (score, pos) in enumerate(hits)
                ]
                for hits in found
            ]
        )

    def _search_filtered(
        self, queries: np.ndarray, k: int, allowed: set[int] | None
    ) -> list[list[tuple[float, int]]]:
        """Top ``k`` ``(score, position)`` per query among ``allowed`` positions.

        With a filter, candidates are fetched 4x at a time until ``k`` pass it.
        """
        total = len(self)
        limit = k if allowed is None else min(k, len(allowed))
        wanted = min(total, k if allowed is None else 4 * k)
        while True:
            scores, positions = self.searcher.search(queries, wanted)  # (Q, wanted)
            found = [
                [
                    (float(score), int(pos))
                    for score, pos in zip(row_scores, row_positions, strict=True)
                    if pos >= 0 and (allowed is None or pos in allowed)
                ][:limit]
                for row_scores, row_positions in zip(scores, positions, strict=True)
            ]
            if wanted >= total or all(len(hits) >= limit for hits in found):
                return found
            wanted = min(total, wanted * 4)

    def _check_hits(self, found: list[list[tuple[float, int]]]) -> None:
        """Refuse results a damaged file could have produced: a score no pair of unit
        vectors gives, a position past the end, or a found vector that is not a unit one."""
        positions = sorted({pos for hits in found for _, pos in hits})
        where = f"{self.generation.name}/vectors"
        for hits in found:
            for score, pos in hits:
                if not abs(score) <= 1.0 + integrity.NORM_TOLERANCE or pos >= len(self):
                    kind = self.info["vectors"]["kind"]
                    name = {"flat": ".npy", "binary": ".npy"}.get(kind, ".faiss")
                    raise CorruptIndexError(
                        str(self.path),
                        where + name,
                        f"gave an impossible result (score {score:.4g})",
                    )
        bad = integrity.bad_rows(self.generation.vectors[positions]) if positions else []
        if len(bad):
            raise CorruptIndexError(
                str(self.path), where + ".npy", "holds vectors that are not finite unit vectors"
            )

    def thumbnails(self, hits: Iterable[Hit]) -> dict[int, bytes | None]:
        """JPEG thumbnail bytes of hits, by position."""
        rows = self.generation.rows([hit.position for hit in hits], thumbnails=True)
        return {position: row["thumbnail"] for position, row in rows.items()}

    def skipped(self) -> list[dict]:
        """Items that could not be indexed: ``id``, ``path``, ``modality``, ``reason``."""
        return self.generation.skipped()

    def __len__(self) -> int:
        return len(self.generation)

    @property
    def info(self) -> dict[str, Any]:
        """Model, instruction, dim, count and the vector structure with its recall@10."""
        return self.generation.info

    @property
    def embedder(self) -> Any:
        """The Embedder (loaded by the model name stored in the index on first use)."""
        if self._embedder is None:
            self._embedder = _load(self.info["model"])
        return self._embedder

    @property
    def searcher(self) -> vectors.Searcher:
        if self._searcher is None:
            spec = vectors.VectorSpec(**self.info["vectors"])
            self._searcher = vectors.load(spec, self.generation.folder, self.generation.vectors)
        return self._searcher

    def _check_modalities(self, inputs: list) -> None:
        supported = {getattr(modality, "value", modality) for modality in self.embedder.modalities}
        for number, query in enumerate(inputs):
            if query.modality.value not in supported:
                raise InputError(
                    f"model {self.info['model']} cannot embed {query.modality.value} queries "
                    f"(it embeds {', '.join(sorted(supported))})",
                    number,
                )

    def close(self) -> None:
        """Release the open files (or the engine connection)."""
        self.generation.close()

    def _settings(self) -> dict[str, Any]:
        return {"instruction": self.info["instruction"], "dim": self.info.get("matryoshka_dim")}

    @property
    def location(self) -> str | Path:
        """What ``Index.build`` takes to update this index: its folder."""
        return self.path

    def _adopt(self, updated: Index) -> None:
        """Serve what ``updated`` (built over this index by ``add``) holds from now on."""
        self._switch(updated.generation)

    def _switch(self, generation: Generation) -> None:
        self.generation.close()
        self.generation, self._searcher = generation, None


def _load(embedder: Any, device: str | None = None) -> Any:
    """An Embedder from a model name (anything else is returned as is)."""
    if isinstance(embedder, str):
        from ..models.registry import load

        return load(embedder, device=device)
    return embedder


def page_route_of(
    embedder: Any, pdf_route: str = "auto", recorded: dict | None = None
) -> str | None:
    """How ``embedder`` reads page images ("reader", "ocr", "pixel"; None: it reads none).

    Answered from a ``LazyEmbedder``'s options or a loaded model's build record, else from
    the existing index (so a no-op re-run loads no model), else by loading the model.

    Raises:
        UsageError: ``pdf_route`` names a page route the model does not have.
    """
    supported = {getattr(modality, "value", modality) for modality in embedder.modalities}
    if "page" not in supported:
        return None
    options = getattr(embedder, "options", None)  # a LazyEmbedder's: it may not be loaded yet
    route = (options or {}).get("page")
    if route is None and (options is None or embedder.loaded):
        route = _built_page_route(embedder.load() if options is not None else embedder)
    route = route or (recorded or {}).get("page_route")
    if route is None:  # a model that has not said yet: load it and read its build record
        route = _built_page_route(embedder.load())
    if pdf_route in MODEL_ROUTES and route != pdf_route:
        raise UsageError(
            f"pdf_route {pdf_route!r}: model {embedder.name} reads pages by {route!r} "
            f"(load it with page={pdf_route!r})"
        )
    return route


def _built_page_route(model: Any) -> str:
    """The page route in a loaded model's build record ("page" when it has none)."""
    build = getattr(getattr(model, "cfg", None), "build", None)
    return getattr(getattr(build, "cfg", None), "page", None) or "page"


def _recorded_info(path: Path, remote: bool = False) -> dict[str, Any]:
    """The existing index's settings ({} for a new index); ``remote``: ``path`` is an engine
    index's ledger folder."""
    if remote:
        from .remote.ledger import recorded_settings

        return recorded_settings(path)
    from .repair import recorded_info

    return recorded_info(path) if (path / store.CURRENT).is_file() else {}


def _source_root(source: Source) -> str:
    if isinstance(source, Item):
        return source.source or source.id
    return str(Path(source).resolve())


def checked_queries(query_vectors: np.ndarray, dim: int, k: int) -> np.ndarray:
    """``query_vectors`` as ``(Q, dim)``; a wrong width or ``k < 1`` is refused in one line
    (by the folder index and the engine index alike)."""
    query_vectors = np.atleast_2d(query_vectors)
    if query_vectors.shape[1] != dim:
        raise ValueError(f"query vectors have {query_vectors.shape[1]} dims, the index {dim}")
    if k < 1:
        raise UsageError(f"k must be at least 1, got {k}")
    return query_vectors
