"""Pages in the index: a PDF becomes one item per page, each with the route that reads it.

Routes: ``text`` reads the page's text layer (exact, fastest); ``reader``, ``ocr`` and
``pixel`` hand the rendered page to the model's page tower (mmembed-mini's ``page=`` option);
``auto`` takes the text layer where it holds real text and the model's page route elsewhere.
Images marked as pages (a manifest's ``"modality": "page"``, ``mmembed index --pages GLOB``)
always go through the model's page route. Typed inputs (``mmembed.Page(picture)``...) become
items here too.
"""

from __future__ import annotations

import fnmatch
import functools
import glob
import hashlib
import io
import json
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import InputError, UsageError
from ..inputs import INPUT_TYPES, Image, Input, Page, Table, Text, Video
from ..modality import Modality
from .walk import Item, hash_file, is_pdf, modality_of

if TYPE_CHECKING:
    from .decode import Decoded

MODEL_ROUTES = ("reader", "ocr", "pixel")  # the page towers of mmembed-mini (``page=``)
PAGE_ROUTES = ("auto", "text", *MODEL_ROUTES)


@dataclass
class PageRouting:
    """How an index reads pages.

    Attributes:
        route: "auto", "text", or one of ``MODEL_ROUTES`` for every PDF page.
        model_route: the route the model reads page images by (None: it reads none); called
            only when a page needs it, since naming it may load the model.
        page_files: absolute paths of images to index as pages (``--pages GLOB``).
    """

    route: str = "auto"
    model_route: Callable[[], str | None] = lambda: None
    page_files: frozenset[str] = field(default_factory=frozenset)

    def __post_init__(self) -> None:
        if self.route not in PAGE_ROUTES:
            raise UsageError(
                f"page route must be one of {', '.join(PAGE_ROUTES)}, got {self.route!r}"
            )
        self.model_route = functools.cache(self.model_route)


@dataclass(frozen=True)
class PageOptions:
    """How an index reads pages; recorded with it (``info.json``), so a re-run that does not
    say reads them the same way.

    Attributes:
        pdf_route: "auto", "text", or one of ``MODEL_ROUTES`` (see ``PageRouting``).
        pages: absolute glob patterns of the images indexed as pages (``--pages``).
    """

    pdf_route: str = "auto"
    pages: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"pdf_route": self.pdf_route, "pages": list(self.pages)}

    @classmethod
    def recorded(cls, info: dict[str, Any]) -> PageOptions:
        """The options an index was built with (an index from before they were recorded:
        the defaults)."""
        return cls(info.get("pdf_route") or "auto", tuple(info.get("pages") or ()))

    @classmethod
    def resolve(
        cls, info: dict[str, Any], pdf_route: str | None, pages: Iterable[str | os.PathLike] | None
    ) -> PageOptions:
        """This run's options: each one given (not None), else the index's recorded one."""
        before = cls.recorded(info)
        patterns = before.pages if pages is None else tuple(_absolute(p) for p in pages)
        return cls(before.pdf_route if pdf_route is None else pdf_route, patterns)

    def changes(self, before: PageOptions) -> dict[str, str]:
        """What differs from ``before``: ``{"--pdf-route": "text -> auto", ...}`` ({}: same)."""
        changed = {}
        if self.pdf_route != before.pdf_route:
            changed["--pdf-route"] = f"{before.pdf_route} -> {self.pdf_route}"
        if set(self.pages) != set(before.pages):
            changed["--pages"] = f"{list(before.pages)} -> {list(self.pages)}"
        return changed


def _absolute(pattern: str | os.PathLike) -> str:
    """A glob pattern made absolute, so a re-run from another folder matches the same files."""
    return os.path.abspath(os.path.expanduser(os.fspath(pattern)))


def page_files(patterns: Iterable[str], strict: bool = True) -> frozenset[str]:
    """Absolute paths of the files that paths and glob patterns name.

    Raises:
        UsageError: with ``strict``, a pattern that matches no file (a pattern the index
            recorded may match nothing now: its files were deleted).
    """
    found: set[str] = set()
    for pattern in patterns:
        matches = glob.glob(pattern, recursive=True)
        if strict and not matches:
            raise UsageError(f"--pages {pattern!r} matches no file")
        found.update(str(Path(match).resolve()) for match in matches if Path(match).is_file())
    return frozenset(found)


def matching_sources(sources: Iterable[str], patterns: Iterable[str]) -> set[str]:
    """The recorded item sources that ``patterns`` name (page files, gone ones too, so that a
    re-run drops the items of deleted page files)."""
    patterns = list(patterns)
    return {s for s in sources if any(fnmatch.fnmatchcase(s, p) for p in patterns)}


def expand_pages(items: Iterable[Item], routing: PageRouting) -> list[Item]:
    """Items with every PDF replaced by its pages and every page image given its route.

    An unreadable PDF (encrypted, damaged, no pages, too many) stays one item with the
    reason as its ``problem``; a page that cannot be read is that page's problem only.
    """
    expanded: list[Item] = []
    for item in items:
        if item.path in routing.page_files and item.modality is Modality.IMAGE:
            item.modality = Modality.PAGE
        if item.problem or item.modality is not Modality.PAGE or item.page:
            expanded.append(item)
        elif item.value is None and is_pdf(item.path):
            expanded.extend(pdf_page_items(item, routing))
        else:
            item.route = routing.model_route() or ""  # none: the model cannot embed it
            if item.route:
                item.metadata = {**item.metadata, "route": item.route}
            expanded.append(item)
    return expanded


def pdf_page_items(pdf: Item, routing: PageRouting) -> list[Item]:
    """One item per page of ``pdf``, ids ``<pdf id>#page=N``, one page's text in memory at
    a time; the PDF item itself with a ``problem`` when the file cannot be read."""
    from ..processors.pdf import page_count, text_layers

    pages: list[Item] = []
    try:
        if routing.route in MODEL_ROUTES:  # no text layer is read: counting pages is enough
            layers = [(number, False, False) for number in range(1, page_count(pdf.path) + 1)]
        else:
            layers = [
                (page.number, page.real, bool(page.text.strip())) for page in text_layers(pdf.path)
            ]
    except InputError as error:
        pdf.problem = error.reason
        return [pdf]
    for number, real, has_text in layers:
        route, problem = _page_route(routing, real, has_text)
        page = Item(
            f"{pdf.id}#page={number}",
            Modality.PAGE,
            path=pdf.path,
            metadata={**pdf.metadata, "page": number, **({"route": route} if route else {})},
            source=pdf.source,
            page=number,
            route=route,
            problem=f"page {number}: {problem}" if problem else "",
        )
        pages.append(page)
    return pages


def _page_route(routing: PageRouting, real: bool, has_text: bool) -> tuple[str, str]:
    """``(route, problem)`` of one PDF page."""
    if routing.route == "text" or (routing.route == "auto" and real):
        if has_text:
            return "text", ""
        return "", "no text layer (index with --pdf-route auto, reader or ocr)"
    if routing.route in MODEL_ROUTES:
        return routing.route, ""
    model_route = routing.model_route()
    if model_route is None:
        return "", "no text layer, and the model cannot read page images"
    return model_route, ""


def page_planner(model: Any, instruction: str | None) -> Callable[[Decoded], Decoded]:
    """Plans a decoded item for ``model`` as ``model.planner`` does (in the index's workers);
    a page that the model's page tower reads to text (reader, OCR) gets the lines it read as
    its snippet, so results show scanned pages like pages with a text layer. Each page is
    read once: the lines come from the same reading as the tokens embedded.
    """
    from ..processors.plan import Planned, plan_item
    from .decode import PAGE_SNIPPET_CHARS

    cfg = model.plan_cfg()
    tower = model.towers["page"] if "page" in model.towers else None
    reads = tower is not None and hasattr(tower, "preprocess_read") and "page" not in cfg.raw
    read: list[str] = []  # the lines of the page being planned

    def preprocess(image: Any) -> Any:
        tensor, lines = tower.preprocess_read(image)
        read.extend(lines)
        return tensor

    if reads:
        cfg.preprocess = {**cfg.preprocess, "page": preprocess}

    def plan(decoded: Decoded) -> Decoded:
        read.clear()
        planned = Planned(plan_item(decoded.input, instruction, cfg), instruction)
        snippet = "\n".join(read)[:PAGE_SNIPPET_CHARS] if read else decoded.snippet
        return replace(decoded, input=planned, snippet=snippet)

    return plan


def item_of_input(value: Input) -> Item:
    """An index item for a typed input: a file path stays a file item (incremental, shown by
    name); in-memory content gets an id from its content, ``page:<hash>``, ``image:<hash>``..."""
    source = getattr(value, "source", None)
    if isinstance(value, (Image, Page, Video, Table)) and isinstance(source, (str, Path)):
        item = Item.from_path(source)
        if not Path(item.path).is_file():
            item.problem = f"no such file: {source}"
        if isinstance(value, Page) or modality_of(item.path) is None:
            item.modality = value.modality  # a page image, or a file named without extension
        return item
    if isinstance(value, Text):
        return Item.from_text(value.text)
    digest = input_digest(value)
    return Item(
        f"{value.modality.value}:{digest[:16]}", value.modality, content_hash=digest, value=value
    )


def input_digest(value: Any) -> str:
    """sha256 of an in-memory input's content (pixels, table cells, segments, frames; the
    bytes of a file a segment names, so an edited file is a new document)."""
    digest = hashlib.sha256(type(value).__name__.encode())
    _feed(digest, value)
    return digest.hexdigest()


def _feed(digest: Any, value: Any) -> None:
    from PIL import Image as PILImage

    if isinstance(value, INPUT_TYPES):
        for part in vars(value).values():
            _feed(digest, part)
    elif isinstance(value, PILImage.Image):
        digest.update(f"{value.mode} {value.size}".encode())
        digest.update(value.tobytes())
    elif isinstance(value, np.ndarray):
        digest.update(f"{value.dtype} {value.shape}".encode())
        digest.update(np.ascontiguousarray(value).tobytes())
    elif isinstance(value, (list, tuple)):
        digest.update(f"[{len(value)}".encode())
        for part in value:
            _feed(digest, part)
    elif isinstance(value, (str, Path)) and len(str(value)) < 4096 and Path(value).is_file():
        digest.update(f"{value}\n{hash_file(value)}".encode())  # a segment's file: its bytes
    elif hasattr(value, "to_parquet"):  # a DataFrame: its cells and column names
        buffer = io.BytesIO()
        value.to_csv(buffer)
        digest.update(buffer.getvalue())
    else:
        digest.update(json.dumps(value, sort_keys=True, default=str).encode())


def is_input(value: Any) -> bool:
    """Whether a source is a typed input (not a path or an ``Item``)."""
    return isinstance(value, INPUT_TYPES)
