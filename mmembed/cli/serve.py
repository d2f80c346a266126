"""``mmembed serve [INDEX_DIR] [--model M]``: keep a model (and an index) loaded; answer over
HTTP with OpenAI's ``/v1/embeddings`` (and the search API and page)."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from pathlib import Path

from ..errors import InputError, UsageError
from .index import index_target

logger = logging.getLogger(__name__)


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "serve",
        help="serve embeddings (OpenAI's /v1/embeddings) and an index's search",
        description="Serve POST /v1/embeddings for every modality and, with an index, "
        "GET/POST /api/search and a search page at http://HOST:PORT/.",
    )
    parser.add_argument(
        "index",
        type=index_target,
        nargs="?",
        help="index folder or vector engine URI built by 'mmembed index' (optional)",
    )
    parser.add_argument("--model", help="model to serve (default: the index's; needed without)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=8000, help="port to listen on")
    parser.add_argument(
        "--api-key",
        default=os.environ.get("MMEMBED_API_KEY"),
        help="require 'Authorization: Bearer KEY' on every route but /health "
        "(default: $MMEMBED_API_KEY; none: open)",
    )
    parser.add_argument(
        "--max-batch", type=int, help="items per encode call; 1: no batching (default 64)"
    )
    parser.add_argument(
        "--max-wait-ms",
        type=float,
        help="how long a batch waits for more requests after its first (default 0: requests "
        "that arrive while the model is busy share the next call)",
    )
    parser.add_argument(
        "--allow-files", type=Path, help="let requests read file:// URLs under this folder"
    )
    parser.add_argument(
        "--max-upload-mb", type=float, default=20.0, help="largest query upload accepted"
    )
    parser.add_argument(
        "--no-onnx", action="store_true", help="embed text queries with torch even with an export"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..retrieval import store

    cfg = _cfg(args)  # every argument is checked before the model loads
    if isinstance(args.index, Path) and not store.is_index(args.index):  # a URI: when opened
        raise InputError(f"no index at {args.index} (build one with 'mmembed index')")
    if args.index is None and not args.model:
        raise UsageError("give an index folder, or --model NAME to serve embeddings only")
    import uvicorn

    from ..serve.server import build_app, uvicorn_config

    app = build_app(cfg, args.index, args.model, use_onnx=not args.no_onnx)
    served = f"{args.index} and its model" if args.index else f"model {args.model}"
    key = ", API key required" if cfg.api_key else ""
    print(f"serving {served} on http://{args.host}:{args.port}/{key}", flush=True)
    server = uvicorn.Server(uvicorn_config(app, args.host, args.port))
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


def _cfg(args: argparse.Namespace):
    from ..serve.config import ServeCfg

    if not 0 < args.port < 65536:
        raise UsageError(f"--port must be in 1..65535, got {args.port}")
    if args.max_upload_mb <= 0:
        raise UsageError(f"--max-upload-mb must be positive, got {args.max_upload_mb}")
    if args.max_batch is not None and args.max_batch < 1:
        raise UsageError(f"--max-batch must be at least 1, got {args.max_batch}")
    if args.max_wait_ms is not None and args.max_wait_ms < 0:
        raise UsageError(f"--max-wait-ms must be 0 or more, got {args.max_wait_ms}")
    if args.allow_files is not None and not args.allow_files.is_dir():
        raise UsageError(f"--allow-files {args.allow_files} is not a folder")
    given = {"max_batch": args.max_batch, "max_wait_ms": args.max_wait_ms}  # else ServeCfg's
    return ServeCfg(
        max_upload_bytes=int(args.max_upload_mb * 2**20),
        api_key=args.api_key or None,
        allow_files=args.allow_files.resolve() if args.allow_files else None,
        **{name: value for name, value in given.items() if value is not None},
    )


class Stopped(Exception):
    """SIGTERM reached the command after the server shut down."""


def _stopped(signum: int, frame: object) -> None:
    raise Stopped(signum)
