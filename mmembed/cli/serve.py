"""``mmembed serve INDEX_DIR``: keep an index and its model loaded; answer over HTTP."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from pathlib import Path

from ..errors import InputError

logger = logging.getLogger(__name__)


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "serve",
        help="serve an index: a JSON API and a search page",
        description="Serve GET/POST /api/search and a search page at http://HOST:PORT/.",
    )
    parser.add_argument("index", type=Path, help="index folder built by 'mmembed index'")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=8000, help="port to listen on")
    parser.add_argument(
        "--max-upload-mb", type=float, default=20.0, help="largest query upload accepted"
    )
    parser.add_argument(
        "--no-onnx", action="store_true", help="embed text queries with torch even with an export"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..retrieval import store

    if not store.is_index(args.index):  # before the model loads
        raise InputError(f"no index at {args.index} (build one with 'mmembed index')")
    if not 0 < args.port < 65536:
        raise InputError(f"--port must be in 1..65535, got {args.port}")
    if args.max_upload_mb <= 0:
        raise InputError(f"--max-upload-mb must be positive, got {args.max_upload_mb}")
    import uvicorn

    from ..serve import SearchService, ServeCfg, create_app

    service = SearchService(args.index, use_onnx=not args.no_onnx)
    app = create_app(service, ServeCfg(max_upload_bytes=int(args.max_upload_mb * 2**20)))
    print(
        f"serving {args.index} ({len(service)} items, {service.description}) "
        f"on http://{args.host}:{args.port}/",
        flush=True,
    )
    server = uvicorn.Server(
        uvicorn.Config(app, host=args.host, port=args.port, log_level="warning")
    )
    # On SIGTERM or Ctrl-C uvicorn stops accepting, finishes the requests in flight, then
    # raises the signal again with the handlers it found restored: ours ends the command.
    previous = signal.signal(signal.SIGTERM, _stopped)
    try:
        server.run()
    except (Stopped, KeyboardInterrupt):
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
    print("mmembed serve: stopped", file=sys.stderr)
    return 0


class Stopped(Exception):
    """SIGTERM reached the command after the server shut down."""


def _stopped(signum: int, frame: object) -> None:
    raise Stopped(signum)
