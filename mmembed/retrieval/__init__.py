"""Index and search: embed folders and manifests into an on-disk index, then query it.

Imports the Embedder API only (``encode``, ``dim``, ``modalities``, ``name``,
``query_instruction``, ``document_instruction``). Names are imported on first use, so that
``mmembed.retrieval.vectors`` or ``store`` can be used without the rest.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import CorruptIndexError
from ..lazy import lazy_getattr

if TYPE_CHECKING:
    from .index import Index
    from .results import Hit, SearchResults
    from .update import UpdateReport
    from .walk import Item

_LAZY = {
    "Hit": ".results",
    "Index": ".index",
    "Item": ".walk",
    "SearchResults": ".results",
    "UpdateReport": ".update",
}

__all__ = ["CorruptIndexError", "Hit", "Index", "Item", "SearchResults", "UpdateReport"]


__getattr__ = lazy_getattr(__name__, _LAZY, globals())
