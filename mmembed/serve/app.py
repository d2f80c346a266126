"""The HTTP layer: FastAPI routes over a ``SearchService``.

FastAPI (on Starlette, served by uvicorn) is used because it is the maintained, widely used
choice for a small JSON API in Python: request validation, multipart uploads and a thread pool
for blocking handlers come with it, and uvicorn shuts down cleanly on SIGTERM.

Routes::

    GET  /                       the search page (a form; results rendered by the server)
    POST /                       the page, searching with an uploaded image or video
    GET  /api/search?q=TEXT&k=10&modality=image,video
    POST /api/search?k=10        multipart ``file`` = an image or video
    GET  /api/health             {"items", "model", "text_queries"}

Every error is a 4xx (or 503) with ``{"error": "..."}``; the server keeps serving.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Annotated

from fastapi import FastAPI, File, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..errors import InputError
from . import page
from .service import MODALITY_NAMES, SearchService, Upload

logger = logging.getLogger(__name__)

MAX_K = 1000  # the most results one request may ask for


@dataclass(frozen=True)
class ServeCfg:
    max_upload_bytes: int = 20 * 1024 * 1024  # larger uploads are refused with 413
    default_k: int = 10  # results when the request does not say


class ApiError(Exception):
    """A request the server refuses: HTTP ``status`` and a one-line ``message``."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


def create_app(service: SearchService, cfg: ServeCfg | None = None) -> FastAPI:
    """The app serving ``service``; run it with uvicorn (``mmembed serve`` does)."""
    cfg = cfg or ServeCfg()
    app = FastAPI(title="mmembed", docs_url=None, redoc_url=None, openapi_url=None)
    k_param = Query(cfg.default_k, description="results to return")

    @app.middleware("http")
    async def limit_upload(request: Request, call_next):
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > cfg.max_upload_bytes + 4096:
            return _error(413, f"upload over the {_megabytes(cfg.max_upload_bytes)} limit")
        return await call_next(request)

    @app.exception_handler(ApiError)
    async def api_error(request: Request, error: ApiError):
        return _error(error.status, error.message)

    @app.exception_handler(InputError)
    async def input_error(request: Request, error: InputError):
        return _error(422, str(error))

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, error: RequestValidationError):
        problems = [
            f"{'.'.join(str(part) for part in problem['loc'][1:])}: {problem['msg']}"
            for problem in error.errors()
        ]
        return _error(422, "; ".join(problems) or "malformed request")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException):
        return _error(error.status_code, str(error.detail))

    @app.get("/api/health")
    def health() -> dict:
        return {"items": len(service), "model": service.model, "text_queries": service.description}

    @app.get("/api/search")
    def search_get(q: str | None = None, k: int = k_param, modality: str | None = None):
        if q is None or not q.strip():
            raise ApiError(400, "give a text query as ?q=TEXT, or POST a file")
        return _hits(service.search_text(q, _k(k), _modalities(modality)))

    @app.post("/api/search")
    async def search_post(
        file: Annotated[UploadFile, File()], k: int = k_param, modality: str | None = None
    ):
        upload = await _read_upload(file, cfg.max_upload_bytes)
        hits = await _in_thread(service.search_upload, upload, _k(k), _modalities(modality))
        return _hits(hits)

    @app.get("/", response_class=HTMLResponse)
    def page_get(q: str | None = None, k: int = k_param, modality: str | None = None):
        if q is None or not q.strip():
            return page.render(service, "", [], {})
        hits = service.search_text(q, _k(k), _modalities(modality))
        return page.render(service, f"“{q}”", hits, service.thumbnails(hits), query=q)

    @app.post("/", response_class=HTMLResponse)
    async def page_post(file: Annotated[UploadFile, File()], k: int = k_param):
        upload = await _read_upload(file, cfg.max_upload_bytes)
        hits = await _in_thread(service.search_upload, upload, _k(k), None)
        thumbnails = await _in_thread(service.thumbnails, hits)
        return page.render(service, f"image: {upload.filename or 'upload'}", hits, thumbnails)

    return app


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


async def _in_thread(function, *args):
    from starlette.concurrency import run_in_threadpool

    return await run_in_threadpool(function, *args)


def _megabytes(count: int) -> str:
    return f"{count / 2**20:g} MiB"


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)
