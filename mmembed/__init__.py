"""mmembed: one embedding space for text, images, video, interleaved documents and tables."""

from __future__ import annotations

from .embedder import Embedder, EmbedderCfg
from .errors import InputError
from .inputs import Document, Image, Page, Table, Text, Video, as_input
from .modality import Modality
from .models.registry import list_models, load
from .results import Embeddings
from .retrieval import Index

__version__ = "0.1.0"

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
