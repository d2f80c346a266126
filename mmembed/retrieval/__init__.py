"""Index and search: embed folders and manifests into an on-disk index, then query it.

Imports the Embedder API only (``encode``, ``dim``, ``modalities``, ``name``,
``query_instruction``, ``document_instruction``). Names are imported on first use, so that
``mmembed.retrieval.vectors`` or ``store`` can be used without the rest.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ..errors import CorruptIndexError

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


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name], __name__), name)
    globals()[name] = value
    return value
