"""The HTTP layer: FastAPI routes over an ``EmbeddingService`` and, with an index, a
``SearchService``.

FastAPI (on Starlette, served by uvicorn) is used because it is the maintained, widely used
choice for a small JSON API in Python: request validation, multipart uploads and a thread pool
for blocking handlers come with it, and uvicorn shuts down cleanly on SIGTERM.

Routes::

    GET  /health                 {"status": "ok"} (no key needed)
    POST /v1/embeddings          OpenAI's embeddings API, every modality (openai_request.py)
    GET  /v1/models              the served model, in OpenAI's list shape
    GET  /                       the search page (a form; results rendered by the server)
    POST /                       the page, searching with an uploaded image or video
    GET  /api/search?q=TEXT&k=10&modality=image,video
    POST /api/search?k=10        multipart ``file`` = an image or video
    GET  /api/health             {"items", "model", "text_queries", "generation"}

Errors are JSON with a 4xx (5xx only for a bug): ``/v1/*`` in OpenAI's shape
``{"error": {"message", "type", "param", "code"}}``, the rest as ``{"error": "..."}``.
"""

from __future__ import annotations

import asyncio
import json
import logging
from contextlib import asynccontextmanager
from typing import Annotated

from fastapi import FastAPI, File, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..errors import InputError
from . import openai_request, page
from .config import ServeCfg
from .embedding import EmbeddingService
from .errors import ApiError, error_response
from .guard import DRAIN_BYTES, Guard
from .service import MODALITY_NAMES, SearchService, Upload

logger = logging.getLogger(__name__)

MAX_K = 1000  # the most results one request may ask for
INLINE_BYTES = 16 * 1024  # smaller bodies are parsed on the event loop, larger in a thread


def create_app(
    embeddings: EmbeddingService, search: SearchService | None = None, cfg: ServeCfg | None = None
) -> FastAPI:
    """The app serving ``embeddings`` (and ``search`` when given); run it with
    ``serve.server.uvicorn_config`` (``mmembed serve`` does). Closing the app closes both."""
    cfg = cfg or ServeCfg()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        if search is not None:
            search.close()
        embeddings.close()

    app = FastAPI(
        title="mmembed", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan
    )
    app.state.embeddings, app.state.search = embeddings, search
    k_param = Query(cfg.default_k, description="results to return")

    app.add_middleware(Guard, cfg=cfg)

    @app.exception_handler(ApiError)
    async def api_error(request: Request, error: ApiError):
        return error_response(
            request.url.path, error.status, error.message, error.param, error.code
        )

    @app.exception_handler(InputError)
    async def input_error(request: Request, error: InputError):
        return error_response(request.url.path, 422, str(error))

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, error: RequestValidationError):
        problems = [
            f"{'.'.join(str(part) for part in problem['loc'][1:])}: {problem['msg']}"
            for problem in error.errors()
        ]
        return error_response(request.url.path, 422, "; ".join(problems) or "malformed request")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException):
        return error_response(request.url.path, error.status_code, str(error.detail))

    @app.exception_handler(Exception)
    async def bug(request: Request, error: Exception):
        logger.exception("%s %s failed", request.method, request.url.path)
        return error_response(request.url.path, 500, f"internal error: {type(error).__name__}")

    @app.get("/health")
    def health() -> dict:
        return {"status": "ok"}

    @app.get("/v1/models")
    def models() -> dict:
        return {"object": "list", "data": [embeddings.card()]}

    @app.post("/v1/embeddings")
    async def embed(request: Request) -> Response:
        body = await _read_body(request, cfg.max_body_bytes)
        model = embeddings.embedder
        if len(body) <= INLINE_BYTES:
            parsed = openai_request.parse(body, cfg, model)
        else:
            parsed = await run_in_threadpool(openai_request.parse, body, cfg, model)
        try:
            results = await asyncio.wrap_future(embeddings.submit(parsed))
            if len(parsed.items) <= 16:
                content = _json(embeddings.response(parsed, results))
            else:
                content = await run_in_threadpool(
                    lambda: _json(embeddings.response(parsed, results))
                )
        finally:
            parsed.close()
        return Response(content, media_type="application/json")

    def searching() -> SearchService:
        if search is None:
            raise ApiError(
                404,
                f"no index: this server was started without one and serves only "
                f"/v1/embeddings with {embeddings.model}",
            )
        return search

    @app.get("/api/health")
    def search_health() -> dict:
        if search is None:
            return {"items": 0, "model": embeddings.model, "index": None, "generation": None}
        return {
            "items": len(search),
            "model": search.model,
            "text_queries": search.description,
            "index": str(search.index_dir),
            "generation": search.generation,
        }

    @app.get("/api/search")
    def search_get(q: str | None = None, k: int = k_param, modality: str | None = None):
        service = searching()
        if q is None or not q.strip():
            raise ApiError(400, "give a text query as ?q=TEXT, or POST a file")
        return _hits(service.search_text(q, _k(k), _modalities(modality)))

    @app.post("/api/search")
    async def search_post(
        file: Annotated[UploadFile, File()], k: int = k_param, modality: str | None = None
    ):
        service = searching()
        upload = await _read_upload(file, cfg.max_upload_bytes)
        hits = await run_in_threadpool(service.search_upload, upload, _k(k), _modalities(modality))
        return _hits(hits)

    @app.get("/", response_class=HTMLResponse)
    def page_get(q: str | None = None, k: int = k_param, modality: str | None = None):
        service = searching()
        if q is None or not q.strip():
            return page.render(service, "", [], {})
        index = service.current()
        hits = service.search_text(q, _k(k), _modalities(modality), index)
        return page.render(service, f"“{q}”", hits, service.thumbnails(hits, index), query=q)

    @app.post("/", response_class=HTMLResponse)
    async def page_post(file: Annotated[UploadFile, File()], k: int = k_param):
        service = searching()
        upload = await _read_upload(file, cfg.max_upload_bytes)
        index = service.current()
        hits = await run_in_threadpool(service.search_upload, upload, _k(k), None, index)
        thumbnails = await run_in_threadpool(service.thumbnails, hits, index)
        return page.render(service, f"image: {upload.filename or 'upload'}", hits, thumbnails)

    return app


async def _read_body(request: Request, limit: int) -> bytes:
    """The body, refused with 413 once it passes ``limit`` (a chunked body has no length)."""
    chunks, size = [], 0
    stream = request.stream()
    async for chunk in stream:
        size += len(chunk)
        if size > limit:
            await _drain_stream(stream)
            raise ApiError(413, f"the body is over the {_megabytes(limit)} limit")
        chunks.append(chunk)
    return b"".join(chunks)


async def _drain_stream(stream) -> None:
    """Read the rest of a refused body (up to ``DRAIN_BYTES``), as ``guard.drain`` does."""
    size = 0
    async for chunk in stream:
        size += len(chunk)
        if size > DRAIN_BYTES:
            return


def _json(payload: dict) -> bytes:
    return json.dumps(payload, separators=(",", ":")).encode()


def _hits(hits: list) -> JSONResponse:
    """The hits as ``mmembed search --json`` prints them (plain dicts: no model validation)."""
    return JSONResponse([hit.to_dict() for hit in hits])


def _k(k: int) -> int:
    if not 1 <= k <= MAX_K:
        raise ApiError(422, f"k must be between 1 and {MAX_K}, got {k}")
    return k


def _modalities(value: str | None) -> list[str] | None:
    if not value:
        return None
    names = [name.strip() for name in value.split(",") if name.strip()]
    unknown = sorted(set(names) - MODALITY_NAMES)
    if unknown:
        raise ApiError(422, f"unknown modality {', '.join(unknown)}")
    return names


async def _read_upload(file: UploadFile, limit: int) -> Upload:
    data = await file.read(limit + 1)
    if len(data) > limit:
        raise ApiError(413, f"upload over the {_megabytes(limit)} limit")
    if not data:
        raise ApiError(400, "the uploaded file is empty")
    return Upload(data, file.filename or "", file.content_type or "")


def _megabytes(count: int) -> str:
    return f"{count / 2**20:g} MiB"
