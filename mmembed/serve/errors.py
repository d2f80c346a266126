"""Refusals: ``ApiError`` and the JSON every refusal is sent as."""

from __future__ import annotations

from starlette.responses import JSONResponse


class ApiError(Exception):
    """A request the server refuses: HTTP ``status``, a one-line ``message`` and the request
    field at fault (``param``, e.g. ``input[3]``; OpenAI's error shape carries it)."""

    def __init__(
        self, status: int, message: str, param: str | None = None, code: str | None = None
    ):
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code


def error_response(
    path: str, status: int, message: str, param: str | None = None, code: str | None = None
) -> JSONResponse:
    """``/v1/*`` errors in OpenAI's shape, the others as ``{"error": message}``."""
    if not path.startswith("/v1/"):
        return JSONResponse({"error": message}, status_code=status)
    kind = "server_error" if status >= 500 else "invalid_request_error"
    error = {"message": message, "type": kind, "param": param, "code": code}
    return JSONResponse({"error": error}, status_code=status)
