"""Helpers for the engine-store tests: a Milvus Lite server on loopback, a collection's ids."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

from mmembed.retrieval.remote.milvus import MilvusCollection
from mmembed.retrieval.remote.uri import parse


def entities(uri: str) -> list[str]:
    """The primary keys stored in the collection ``uri`` names, sorted (duplicates kept)."""
    collection = MilvusCollection(parse(uri))
    try:
        return sorted(row["id"] for rows in collection.scan(False) for row in rows)
    finally:
        collection.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(data: Path, port: int, max_workers: int | None = None) -> subprocess.Popen:
    """``milvus-lite server`` on loopback; ``max_workers=1`` serves one request at a time."""
    command = [sys.executable, "-m", "milvus_lite", "server", "--data-dir", str(data)]
    command += ["--port", str(port)]
    if max_workers:
        command += ["--max-workers", str(max_workers)]
    server = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return server
        time.sleep(0.2)
    server.kill()
    raise RuntimeError("milvus-lite server did not start")
