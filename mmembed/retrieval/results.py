"""Search results: one ``Hit`` per found item, grouped per query."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Hit:
    """One search result.

    Attributes:
        rank: 1 for the best result.
        score: cosine similarity between query and item.
        id: the item's stable id.
        path: the item's file (None for inline text).
        modality: "image", "video", "text", "table" or "document".
        metadata: manifest columns.
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

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (what ``mmembed search --json`` prints)."""
        return {
            "rank": self.rank,
            "score": round(float(self.score), 6),
            "id": self.id,
            "path": self.path,
            "modality": self.modality,
            "metadata": self.metadata,
            "snippet": self.snippet,
        }


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
