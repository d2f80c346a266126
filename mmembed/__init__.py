"""mmembed: one embedding space for text, images, video, interleaved documents and tables.

The heavy names (``Embedder``, ``load``, ``Index``...) are imported on first use, so that
``import mmembed`` and the ``mmembed`` command stay fast and a text search that runs through
ONNX Runtime never imports torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .errors import InputError
from .inputs import Document, Image, Page, Table, Text, Video, as_input
from .lazy import lazy_getattr
from .modality import Modality

if TYPE_CHECKING:
    from .embedder import Embedder, EmbedderCfg
    from .models.registry import list_models, load
    from .results import Embeddings
    from .retrieval import Index

__version__ = "0.1.0"

# name -> module that defines it, imported when the name is first used
_LAZY = {
    "Embedder": ".embedder",
    "EmbedderCfg": ".embedder",
    "Embeddings": ".results",
    "Index": ".retrieval",
    "list_models": ".models.registry",
    "load": ".models.registry",
}

__all__ = [
    "Document",
    "Embedder",
    "EmbedderCfg",
    "Embeddings",
    "Image",
    "Index",
    "InputError",
    "Modality",
    "Page",
    "Table",
    "Text",
    "Video",
    "__version__",
    "as_input",
    "list_models",
    "load",
]


__getattr__ = lazy_getattr(__name__, _LAZY, globals())
