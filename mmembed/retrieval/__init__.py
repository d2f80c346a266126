"""Index and search: embed folders and manifests into an on-disk index, then query it.

Imports the Embedder API only (``encode``, ``dim``, ``modalities``, ``name``,
``query_instruction``, ``document_instruction``).
"""

from ..errors import CorruptIndexError
from .index import Index
from .results import Hit, SearchResults
from .update import UpdateReport
from .walk import Item

__all__ = ["CorruptIndexError", "Hit", "Index", "Item", "SearchResults", "UpdateReport"]
