"""``mmembed serve``: OpenAI's embeddings API for every modality, and an index's search page.

Names are imported on first use, so the CLI checks its arguments (``serve.config``) before
torch and the model load.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..lazy import lazy_getattr

if TYPE_CHECKING:
    from .app import create_app
    from .config import ServeCfg
    from .embedding import EmbeddingService
    from .errors import ApiError
    from .server import build_app, uvicorn_config
    from .service import SearchService

_LAZY = {
    "ApiError": ".errors",
    "EmbeddingService": ".embedding",
    "SearchService": ".service",
    "ServeCfg": ".config",
    "build_app": ".server",
    "create_app": ".app",
    "uvicorn_config": ".server",
}

__all__ = [
    "ApiError",
    "EmbeddingService",
    "SearchService",
    "ServeCfg",
    "build_app",
    "create_app",
    "uvicorn_config",
]

__getattr__ = lazy_getattr(__name__, _LAZY, globals())
