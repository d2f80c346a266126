"""A local HTTP file server for download tests: Range requests, dropped connections, a log.

Usage::

    with FileServer({"/w.safetensors": data}) as server:
        url = server.url("/w.safetensors")
        server.drop_after = 100  # the next response stops after 100 body bytes
        ...
        server.requests[-1].range  # the Range header the client sent, or None

It binds 127.0.0.1 on a random free port and serves from a daemon thread, so tests never touch
the network.
"""

from __future__ import annotations

import logging
import re
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

logger = logging.getLogger(__name__)

_RANGE = re.compile(r"bytes=(\d+)-")


@dataclass(frozen=True)
class RequestRecord:
    """One request the server answered."""

    path: str  # request path, e.g. "/w.safetensors"
    range: str | None  # the Range header as sent, None when absent
    user_agent: str | None  # the User-Agent header as sent


class FileServer:
    """In-memory files served over HTTP on 127.0.0.1.

    Attributes:
        files: URL path -> bytes served there; edit it to change what the server returns.
        requests: every request seen, in order.
        drop_after: when set, the next response sends only this many body bytes, then closes
            the connection (Content-Length still announces the full size); reset after use.
        ignore_range: answer 200 with the whole file even when the client asks for a range.
    """

    def __init__(self, files: dict[str, bytes] | None = None):
        self.files: dict[str, bytes] = dict(files or {})
        self.requests: list[RequestRecord] = []
        self.drop_after: int | None = None
        self.ignore_range = False
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    @property
    def port(self) -> int:
        """The port bound by ``start``."""
        if self._httpd is None:
            raise RuntimeError("FileServer is not running")
        return self._httpd.server_address[1]

    def url(self, path: str) -> str:
        """Full URL of ``path`` on this server."""
        return f"http://127.0.0.1:{self.port}{path}"

    def start(self) -> FileServer:
        """Bind a random port and serve in a background thread."""
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _make_handler(self))
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving; later requests get "connection refused"."""
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> FileServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _take_drop(self) -> int | None:
        with self._lock:
            drop, self.drop_after = self.drop_after, None
            return drop


def _make_handler(owner: FileServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            owner.requests.append(
                RequestRecord(self.path, self.headers.get("Range"), self.headers.get("User-Agent"))
            )
            data = owner.files.get(self.path)
            if data is None:
                self.send_error(404)
                return
            start = self._range_start(len(data))
            if start is None:
                return
            body = data[start:]
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            drop = owner._take_drop()
            self.wfile.write(body if drop is None else body[:drop])
            self.wfile.flush()
            self.close_connection = True

        def _range_start(self, size: int) -> int | None:
            """Send the status line for the request; None when the answer is complete (416)."""
            match = _RANGE.fullmatch(self.headers.get("Range") or "")
            if match is None or owner.ignore_range:
                self.send_response(200)
                return 0
            start = int(match.group(1))
            if start >= size:
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{size}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return None
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{size - 1}/{size}")
            return start

        def log_message(self, format: str, *args: object) -> None:
            logger.debug("%s " + format, self.address_string(), *args)

    return Handler
