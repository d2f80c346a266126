"""Search results: one ``Hit`` per found item, grouped per query."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

_WORD = re.compile(r"\w{3,}")  # words of three letters or more: "a", "of", "to" match anything


@dataclass
class Hit:
    """One search result.

    Attributes:
        rank: 1 for the best result.
        score: cosine similarity between query and item.
        id: the item's stable id.
        path: the item's file (None for inline text).
        modality: "image", "video", "text", "table", "document" or "page".
        metadata: manifest columns; a page also has ``page`` (its number in the PDF) and
            ``route`` (how it was read: "text", "reader", "ocr", "pixel").
        snippet: a short text preview.
        position: the item's row in the index's current generation.
    """

    rank: int
    score: float
    id: str
    path: str | None
    modality: str
    metadata: dict[str, Any] = field(default_factory=dict)
    snippet: str = ""
    position: int = -1

    @property
    def page(self) -> int | None:
        """The page number of a PDF page (None for anything else)."""
        page = self.metadata.get("page") if self.modality == "page" else None
        return page if isinstance(page, int) else None

    @property
    def route(self) -> str | None:
        """How a page was read: "text", "reader", "ocr" or "pixel" (None: not a page)."""
        route = self.metadata.get("route") if self.modality == "page" else None
        return str(route) if route else None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (what ``mmembed search --json`` prints)."""
        return {
            "rank": self.rank,
            "score": round(float(self.score), 6),
            "id": self.id,
            "path": self.path,
            "modality": self.modality,
            "page": self.page,
            "route": self.route,
            "metadata": self.metadata,
            "snippet": self.snippet,
        }


def matching_line(text: str, query: str | None = None) -> str:
    """The line of ``text`` sharing the most words with ``query`` (the first such line), else
    its first non-blank line: what a result shows of a page."""
    lines = [" ".join(line.split()) for line in text.splitlines()]
    lines = [line for line in lines if line]
    if not lines:
        return ""
    wanted = {word.lower() for word in _WORD.findall(query or "")}
    shared = [len(wanted & {word.lower() for word in _WORD.findall(line)}) for line in lines]
    best = max(range(len(lines)), key=lambda number: (shared[number], -number))
    return lines[best] if shared[best] else lines[0]


NO_TEXT = "(scanned page: no text layer)"  # a page read as pixels shows no words


def page_line(hit: Hit, query: str | None = None) -> str:
    """What a result shows of a page (a PDF page or a page image): the line of its text that
    best matches ``query``, from its text layer or from what the reader or OCR read on it."""
    return matching_line(hit.snippet, query) or NO_TEXT


@dataclass
class SearchResults:
    """Results of a batch of queries, best first for each query.

    ``results[i]`` is the list of hits for query ``i``; ``ids``, ``scores`` and
    ``metadata`` give the same content column-wise.
    """

    hits: list[list[Hit]]

    def __len__(self) -> int:
        return len(self.hits)

    def __getitem__(self, query: int) -> list[Hit]:
        return self.hits[query]

    def __iter__(self) -> Iterator[list[Hit]]:
        return iter(self.hits)

    @property
    def ids(self) -> list[list[str]]:
        return [[hit.id for hit in hits] for hits in self.hits]

    @property
    def scores(self) -> list[list[float]]:
        return [[hit.score for hit in hits] for hits in self.hits]

    @property
    def metadata(self) -> list[list[dict[str, Any]]]:
        return [[hit.metadata for hit in hits] for hits in self.hits]
