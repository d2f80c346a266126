"""``mmembed serve``: an index and its model kept loaded behind a JSON API and a search page."""

from .app import ServeCfg, create_app
from .service import SearchService

__all__ = ["SearchService", "ServeCfg", "create_app"]
