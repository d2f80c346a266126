"""Checks every request passes before any route runs: the size of its head, the API key, the
declared size of its body. A plain ASGI middleware (no per-request task or stream wrapping)."""

from __future__ import annotations

import hmac

from .config import ServeCfg
from .errors import error_response

OPEN_PATHS = frozenset({"/health"})  # routes that need no API key
DRAIN_BYTES = 256 * 2**20  # a refused body up to this size is read, so its client sees the 413


class Guard:
    """Refuses, with a JSON error, a request whose URL or headers pass ``max_head_bytes``
    (414 / 431), that lacks the API key (401), or whose declared body passes its route's limit
    (413: ``max_body_bytes`` under ``/v1/``, ``max_upload_bytes`` elsewhere)."""

    def __init__(self, app, cfg: ServeCfg):
        self.app, self.cfg = app, cfg

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        refusal = self._refusal(scope)
        if refusal is None:
            await self.app(scope, receive, send)
            return
        status, message, code, length = refusal
        response = error_response(scope["path"], status, message, code=code)
        if status == 401:
            response.headers["WWW-Authenticate"] = "Bearer"
        if status == 413:
            await drain(receive, length)
        await response(scope, receive, send)

    def _refusal(self, scope) -> tuple[int, str, str | None, int] | None:
        cfg, path = self.cfg, scope["path"]
        target = len(scope.get("raw_path") or path) + len(scope["query_string"])
        if target > cfg.max_head_bytes:
            return 414, f"the URL is over the {_kib(cfg.max_head_bytes)} limit", None, 0
        headers = scope["headers"]
        if target + sum(len(name) + len(value) + 4 for name, value in headers) > cfg.max_head_bytes:
            return 431, f"the headers are over the {_kib(cfg.max_head_bytes)} limit", None, 0
        if cfg.api_key and path not in OPEN_PATHS and not _authorized(headers, cfg.api_key):
            message = "missing or wrong API key (send Authorization: Bearer KEY)"
            return 401, message, "invalid_api_key", 0
        limit = cfg.max_body_bytes if path.startswith("/v1/") else cfg.max_upload_bytes + 4096
        length = _header(headers, b"content-length")
        if length is not None and length.isdigit() and int(length) > limit:
            return 413, f"the body is over the {limit / 2**20:g} MiB limit", None, int(length)
        return None


async def drain(receive, length: int) -> None:
    """Read and drop a refused body, so that the client, still sending, reads the JSON error
    rather than a reset connection; past ``DRAIN_BYTES`` the connection is dropped instead."""
    if length > DRAIN_BYTES:
        return
    while True:
        message = await receive()
        if message["type"] != "http.request" or not message.get("more_body"):
            return


def _header(headers: list[tuple[bytes, bytes]], name: bytes) -> str | None:
    for key, value in headers:
        if key.lower() == name:
            return value.decode("latin-1")
    return None


def _authorized(headers: list[tuple[bytes, bytes]], key: str) -> bool:
    scheme, _, given = (_header(headers, b"authorization") or "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), key.encode())


def _kib(count: int) -> str:
    return f"{count / 1024:g} KiB"
