"""Build what ``mmembed serve`` runs: the services, the app and uvicorn's settings.

The command, the tests and ``benchmarks/serve_embed.py`` all start servers through here, so
they run the same limits and the same HTTP parser.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import FastAPI

from ..errors import UsageError
from .app import create_app
from .config import ServeCfg
from .embedding import EmbeddingService
from .service import SearchService

# Bytes of a request head uvicorn's h11 parser buffers (its default is 16 KiB, above which it
# answers a plain-text 400 and drops the connection): heads up to this size reach the app,
# which refuses those over ``ServeCfg.max_head_bytes`` with a JSON 414 or 431.
H11_MAX_HEAD = 4 * 2**20


def build_app(
    cfg: ServeCfg,
    index_dir: Path | str | None = None,
    model: str | None = None,
    embedder: Any = None,
    use_onnx: bool = True,
) -> FastAPI:
    """The app for an index (search and embeddings with its model) or a model alone.

    Args:
        cfg: limits, batching, key and file access.
        index_dir: an index folder or engine URI; its model is served.
        model: a model name; required without an index, and must match the index's.
        embedder: an already loaded model (tests and benchmarks share one).
        use_onnx: let search queries use the index's ONNX export.
    """
    from ..models.reference import check_model, same_model
    from ..models.registry import load
    from ..retrieval import store
    from ..retrieval.remote.uri import is_uri

    if index_dir is not None:
        manifest = {} if is_uri(index_dir) else store.read_current(Path(index_dir)) or {}
        indexed = (manifest.get("info") or {}).get("model")
        if indexed is None:
            from ..retrieval import Index

            opened = Index.open(index_dir)
            indexed = opened.info["model"]
            opened.close()
        if model is None:
            try:  # an older index may record a folder relative to where it was built
                check_model(indexed, what=f"index {index_dir} was built with the model")
            except UsageError as error:
                raise UsageError(f"{error}; give --model with that model's folder") from None
            model = indexed
        elif not same_model(model, indexed):
            raise UsageError(f"index {index_dir} was built with {indexed}, not --model {model}")
    if model is None and embedder is None:
        raise UsageError("give an index folder, or --model NAME to serve embeddings only")
    embeddings = EmbeddingService(embedder if embedder is not None else load(model), cfg)
    search = None
    if index_dir is not None:
        try:
            search = SearchService(index_dir, embeddings, use_onnx, cfg.reload_interval_s)
        except BaseException:
            embeddings.close()
            raise
    return create_app(embeddings, search, cfg)


def uvicorn_config(app: FastAPI, host: str, port: int) -> Any:
    """uvicorn's settings for ``app``: its h11 parser (sizes as above), quiet logs."""
    import uvicorn

    return uvicorn.Config(
        app,
        host=host,
        port=port,
        http="h11",
        h11_max_incomplete_event_size=H11_MAX_HEAD,
        log_level="warning",
    )
