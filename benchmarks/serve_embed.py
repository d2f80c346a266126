"""``POST /v1/embeddings`` throughput and latency, with and without dynamic batching; prints a
table and writes JSON (never asserted).

    python -m benchmarks.serve_embed            # about 5 minutes on 2 cores
    python -m benchmarks.serve_embed --smoke    # a few requests per level: checks it runs

Starts ``mmembed serve --model mmembed-mini`` three times on 127.0.0.1: with its default
batching (``--max-batch 64 --max-wait-ms 0``: requests that arrive while the model is busy
share the next call), with ``--max-wait-ms 5`` (a batch also waits 5 ms for more), and with
``--max-batch 1``, where each request is encoded alone, as a plain FastAPI handler around
``encode`` would. Against each, 1, 8 and 32 client
threads (one keep-alive connection each) send ``--requests`` requests per level, each holding
one item: a short text (1-4 random words), or a 224x224 JPEG photo as a data URL. Every answer
is checked (status 200, one 384-d row); failures are counted as errors. Clients run on the
same machine as the server, so they share its cores. The load average before and after is
recorded: the development machine is shared, and a run with load above the core count is
labelled busy. Last, ``encode`` alone (no server) is timed per item at 1, 8 and 32 items per
call, which bounds what batching can gain for each kind of item; images are timed at the
server's ``ServeCfg.pixel_batch_size`` and at encode's default ``batch_size=32``.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import io
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from .http_load import closed_loop, free_port
from .output import write_json

REPO = Path(__file__).resolve().parents[1]
ASSETS = REPO / "assets"
MODEL = "mmembed-mini"
WORDS = "cat dog rocket coffee flower camera palace planet moon street car boat tree".split()
# extra `mmembed serve` arguments per mode
MODES = {
    "batched": [],
    "batched, wait 5 ms": ["--max-wait-ms", "5"],
    "unbatched": ["--max-batch", "1"],
}
GOALS = {"text": 3.0, "image": 2.0}  # throughput at 32 clients, batched / unbatched


def photos() -> list[str]:
    """The asset photos as 224x224 JPEG data URLs."""
    from PIL import Image

    urls = []
    for path in sorted((ASSETS / "images").glob("*.jpg")):
        buffer = io.BytesIO()
        Image.open(path).convert("RGB").resize((224, 224)).save(buffer, "JPEG", quality=90)
        urls.append("data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode())
    return urls


def bodies(workload: str, count: int, seed: int, images: list[str]) -> list[bytes]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        if workload == "text":
            item: object = " ".join(rng.choice(WORDS, size=int(rng.integers(1, 5))))
        else:
            item = {"type": "image_url", "image_url": {"url": images[rng.integers(len(images))]}}
        out.append(json.dumps({"model": MODEL, "input": [item]}).encode())
    return out


def start_server(extra: list[str]) -> tuple[subprocess.Popen, int, float]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    port = free_port()
    command = [sys.executable, "-m", "mmembed.cli", "serve", "--model", MODEL]
    command += ["--port", str(port), *extra]
    started = time.perf_counter()
    server = subprocess.Popen(
        command,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        cwd=tempfile.gettempdir(),
    )
    while True:
        if server.poll() is not None:
            raise RuntimeError(server.communicate()[1].decode()[-2000:])
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            connection.request("GET", "/health")
            if connection.getresponse().status == 200:
                break
        except OSError:
            time.sleep(0.2)
    return server, port, time.perf_counter() - started


def load(port: int, clients: int, requests: list[bytes]) -> dict:
    """Send ``requests`` from ``clients`` threads; latency percentiles, throughput, errors."""
    headers = {"Content-Type": "application/json"}

    def ok(status: int, body: bytes) -> bool:
        return status == 200 and len(json.loads(body)["data"][0]["embedding"]) == 384

    calls = [("POST", "/v1/embeddings", body, headers) for body in requests]
    return closed_loop(port, clients, calls, ok, timeout=120)


def measure(levels: list[int], requests: dict[str, int], warmup: int) -> dict:
    images = photos()
    results: dict = {}
    for mode, extra in MODES.items():
        server, port, startup = start_server(extra)
        try:
            results[mode] = {"server_args": extra, "startup_s": startup}
            for workload, count in requests.items():
                load(port, 4, bodies(workload, warmup, 99, images))
                results[mode][workload] = {
                    str(clients): load(port, clients, bodies(workload, count, clients, images))
                    for clients in levels
                }
        finally:
            server.terminate()
            server.wait(timeout=60)
    return results


def encode_cost_by_batch(sizes: list[int], repeats: int) -> dict:
    """In this process, with no server: ms per item of ``encode`` on ``n`` copies of one short
    text and of one 224-px photo, median of ``repeats``: what one shared call can save, and
    what the tower's forward size (``batch_size``) does to images."""
    import statistics

    import mmembed
    from mmembed.serve import ServeCfg

    model = mmembed.load(MODEL)
    photo = base64.b64decode(photos()[0].split(",", 1)[1])
    cfg = ServeCfg()
    cases = {
        f"text, batch_size={cfg.text_batch_size}": ("cat rocket moon", cfg.text_batch_size),
        "image, batch_size=32": (mmembed.Image(photo), 32),
        f"image, batch_size={cfg.pixel_batch_size}": (mmembed.Image(photo), cfg.pixel_batch_size),
    }
    out: dict = {}
    for name, (item, batch_size) in cases.items():
        out[name] = {}
        for size in sizes:
            options = {"batch_size": batch_size, "show_progress_bar": False}
            model.encode([item] * size, **options)  # warm-up
            times = []
            for _ in range(repeats):
                start = time.perf_counter()
                model.encode([item] * size, **options)
                times.append((time.perf_counter() - start) * 1000 / size)
            out[name][str(size)] = statistics.median(times)
    return out


def speedups(results: dict, levels: list[int]) -> dict:
    """Throughput ratio of each batching mode to ``unbatched``, per workload and level."""
    return {
        mode: {
            workload: {
                str(clients): results[mode][workload][str(clients)]["requests_per_s"]
                / results["unbatched"][workload][str(clients)]["requests_per_s"]
                for clients in levels
            }
            for workload in GOALS
        }
        for mode in MODES
        if mode != "unbatched"
    }


def print_table(payload: dict) -> None:
    print(
        f"load average before {payload['load_average_before']}, after "
        f"{payload['load_average_after']} on {payload['cpus']} cores ({payload['machine']})\n"
    )
    print(
        "| items | clients | server | requests | errors | p50 ms | p99 ms | requests/s | speed-up |"
    )
    print("|---|---:|---|---:|---:|---:|---:|---:|---:|")
    for workload in GOALS:
        for clients in payload["levels"]:
            for mode in MODES:
                row = payload["results"][mode][workload][str(clients)]
                ratio = payload["speedups"].get(mode, {}).get(workload, {}).get(str(clients))
                print(
                    f"| {workload} | {clients} | {mode} "
                    f"| {row['requests']} | {row['errors']} | {row['p50_ms']:.1f} "
                    f"| {row['p99_ms']:.1f} | {row['requests_per_s']:.1f} "
                    f"| {f'{ratio:.2f}x' if ratio else ''} |"
                )
    print("\nencode() alone, ms per item by items per call:")
    for workload, costs in payload["encode_ms_per_item_by_batch"].items():
        print(f"  {workload}: " + ", ".join(f"{n}: {ms:.1f}" for n, ms in costs.items()))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--text-requests", type=int, default=960, help="text requests per level")
    parser.add_argument("--image-requests", type=int, default=384, help="image requests per level")
    parser.add_argument("--smoke", action="store_true", help="8 requests per level, levels 1 and 4")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks/results/serve_embed.json")
    args = parser.parse_args(argv)
    levels = [1, 4] if args.smoke else [1, 8, 32]
    requests = (
        {"text": 8, "image": 8}
        if args.smoke
        else {"text": args.text_requests, "image": args.image_requests}
    )
    before = os.getloadavg()
    results = measure(levels, requests, warmup=4 if args.smoke else 64)
    cost = encode_cost_by_batch([1, 2] if args.smoke else [1, 8, 32], 1 if args.smoke else 5)
    after = os.getloadavg()
    cpus = os.cpu_count() or 1
    payload = {
        "command": " ".join(["python", "-m", "benchmarks.serve_embed", *(argv or sys.argv[1:])]),
        "model": MODEL,
        "cpus": cpus,
        "load_average_before": before,
        "load_average_after": after,
        "machine": "busy (load above the core count)"
        if max(before[0], after[0]) > cpus
        else "quiet",
        "levels": levels,
        "results": results,
        "speedups": speedups(results, levels),
        "encode_ms_per_item_by_batch": cost,
        "goals": {f"{w} at 32 clients": f">= {g}x" for w, g in GOALS.items()},
    }
    print_table(payload)
    write_json(args.out, payload)
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
