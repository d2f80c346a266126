"""Closed-loop HTTP load on a local server: each client thread on its own keep-alive
connection sends its share of the requests one after another (used by ``latency.py`` and
``serve_embed.py``)."""

from __future__ import annotations

import http.client
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np

# (method, path, body or None, headers)
Request = tuple[str, str, bytes | None, dict[str, str]]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def closed_loop(
    port: int,
    clients: int,
    requests: list[Request],
    ok: Callable[[int, bytes], bool],
    timeout: float = 60,
) -> dict:
    """Send ``requests`` from ``clients`` threads; ``ok(status, body)`` judges each answer.

    Returns the count, errors (failed ``ok``, or a broken connection, then reopened), latency
    p50 / p99 in ms and requests per second of wall time.
    """
    shares = [requests[number::clients] for number in range(clients)]
    lock = threading.Lock()
    latencies: list[float] = []
    errors = [0]

    def client(number: int) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        for method, path, body, headers in shares[number]:
            start = time.perf_counter()
            try:
                connection.request(method, path, body, headers)
                response = connection.getresponse()
                good = ok(response.status, response.read())
            except (OSError, http.client.HTTPException, ValueError, KeyError):
                good = False
                connection.close()
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
            elapsed = time.perf_counter() - start
            with lock:
                latencies.append(elapsed)
                errors[0] += not good
        connection.close()

    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(client, range(clients)))
    wall = time.perf_counter() - started
    return {
        "requests": len(requests),
        "errors": errors[0],
        "p50_ms": float(np.percentile(latencies, 50) * 1000),
        "p99_ms": float(np.percentile(latencies, 99) * 1000),
        "requests_per_s": len(requests) / wall,
    }
