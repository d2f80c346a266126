"""``mmembed serve``: OpenAI's embeddings API for every modality, and an index's search page."""

from .app import create_app
from .config import ServeCfg
from .embedding import EmbeddingService
from .errors import ApiError
from .server import build_app, uvicorn_config
from .service import SearchService

__all__ = [
    "ApiError",
    "EmbeddingService",
    "SearchService",
    "ServeCfg",
    "build_app",
    "create_app",
    "uvicorn_config",
]
