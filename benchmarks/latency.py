"""Cold-start and server latency of search; prints a table and writes JSON (never asserted).

    python benchmarks/latency.py                  # about 5 minutes on 2 cores
    python benchmarks/latency.py --quick          # 2 repeats, 200 server requests per level
    python benchmarks/latency.py --checkout DIR --no-server   # the same CLI runs, another tree

Measures, on the README's ``assets/`` index built with mmembed-mini (the first build computes
the ConSE class-embedding cache and the ONNX query export, as a new user's first index does):

- cold ``mmembed search``, process start to printed results, median of ``--repeats`` (at most
  3 for the two slow torch measures): a text
  query (ONNX Runtime, no torch), the same text query on a copy of the index without its ONNX
  export (the torch fallback), and an image query;
- the no-op ``mmembed index`` re-run; ``mmembed.load("mmembed-mini")`` in a fresh process;
- ``mmembed serve`` on a 10^4-item index of random unit vectors (metadata rows are synthetic,
  the query tower is mini's): text-query latency p50 / p99 at 1, 4 and 16 concurrent
  keep-alive clients, ``--requests`` requests per level, errors counted;
- peak resident memory of each command (``wait4``'s ru_maxrss) and of the server.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
from pathlib import Path

import numpy as np

if __package__ in (None, ""):  # run as a script: python benchmarks/latency.py
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.http_load import closed_loop, free_port  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
ASSETS = REPO / "assets"
TEXT_QUERY = "a tabby cat with green eyes"
IMAGE_QUERY = ASSETS / "images" / "coffee.jpg"
EMPTY = tempfile.mkdtemp(prefix="mmembed-latency-cwd-")
WORDS = "cat dog rocket coffee flower camera palace planet moon street car boat tree".split()


def run_cold(command: list[str], env: dict) -> tuple[float, float, str]:
    """Wall seconds from spawn to exit, the process's peak RSS in MB, its stdout.

    Commands run in an empty folder: ``python -c`` / ``-m`` put the working directory first
    on ``sys.path``, which would shadow the ``--checkout`` being timed.
    """
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        process = subprocess.Popen(command, env=env, stdout=out, stderr=err, cwd=EMPTY)
        _, status, usage = os.wait4(process.pid, 0)
        seconds = time.perf_counter() - start
        process.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        if process.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed: {err.read().decode()[-2000:]}")
        return seconds, usage.ru_maxrss / 1024, out.read().decode()


def median_cold(command: list[str], env: dict, repeats: int) -> dict:
    """Median wall time and the highest peak RSS over ``repeats`` fresh processes."""
    runs = [run_cold(command, env) for _ in range(repeats)]
    times = [seconds for seconds, _, _ in runs]
    return {
        "median_s": statistics.median(times),
        "min_s": min(times),
        "max_s": max(times),
        "runs_s": times,
        "peak_rss_mb": max(rss for _, rss, _ in runs),
        "output_head": runs[-1][2].splitlines()[:1],
    }


def cli(env: dict) -> list[str]:
    return [sys.executable, "-m", "mmembed.cli"]


def measure_cli(checkout: Path, work: Path, repeats: int) -> dict:
    env = {**os.environ, "PYTHONPATH": str(checkout), "OMP_NUM_THREADS": "1"}
    mmembed = cli(env)
    if not (checkout / "mmembed" / "cli" / "__main__.py").exists():  # older trees
        mmembed = [
            sys.executable,
            "-c",
            "import sys; from mmembed.cli import main; sys.exit(main())",
        ]
    index = work / "assets-index"
    results: dict = {}
    first, _, out = run_cold([*mmembed, "index", str(ASSETS), "--out", str(index)], env)
    results["first_index_s"] = first
    results["first_index_output"] = out.splitlines()[:1]
    results["noop_index"] = median_cold(
        [*mmembed, "index", str(ASSETS), "--out", str(index)], env, repeats
    )
    results["search_text"] = median_cold([*mmembed, "search", str(index), TEXT_QUERY], env, repeats)
    results["search_image"] = median_cold(
        [*mmembed, "search", str(index), "--image", str(IMAGE_QUERY)], env, repeats
    )
    results["onnx_queries"] = (index / "query_encoder.json").exists()
    if results["onnx_queries"]:
        torch_index = work / "assets-index-no-onnx"
        shutil.copytree(index, torch_index)
        (torch_index / "query_encoder.json").unlink()
        results["search_text_torch"] = median_cold(
            [*mmembed, "search", str(torch_index), TEXT_QUERY], env, min(repeats, 3)
        )
    load = "import mmembed; mmembed.load('mmembed-mini')"
    results["load_mini"] = median_cold([sys.executable, "-c", load], env, min(repeats, 3))
    return results


def synthetic_index(source: Path, folder: Path, count: int, dim: int = 384) -> None:
    """``count`` random unit vectors with synthetic rows, pointing at ``source``'s ONNX export."""
    sys.path.insert(0, str(REPO))
    from mmembed.retrieval import store

    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((count, dim), dtype=np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    info = json.loads((store.Generation.current(source).folder / "info.json").read_text())
    info.update(count=count, fingerprint="synthetic", skipped=0)
    rows = (
        {
            "pos": pos,
            "id": f"synthetic/{pos:06d}.jpg",
            "path": f"synthetic/{pos:06d}.jpg",
            "modality": "image",
            "content_hash": f"{pos:064x}",
            "size": 0,
            "mtime_ns": 0,
            "source": "synthetic",
            "metadata": {"caption": f"synthetic item {pos}"},
            "snippet": "",
            "thumbnail": None,
        }
        for pos in range(count)
    )
    folder.mkdir(parents=True)
    with store.write_lock(folder):
        store.write_generation(folder, info, vectors, rows, [], lambda _: None)
    shutil.copy(source / "query_encoder.json", folder / "query_encoder.json")


def measure_server(index: Path, requests: int, levels: list[int]) -> dict:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    port = free_port()
    command = [*cli(env), "serve", str(index), "--port", str(port)]
    started = time.perf_counter()
    server = subprocess.Popen(
        command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=EMPTY
    )
    try:
        while True:
            if server.poll() is not None:
                raise RuntimeError(server.communicate()[1].decode()[-2000:])
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.2)
        results: dict = {"startup_s": time.perf_counter() - started, "levels": {}}
        for clients in levels:
            _load(port, clients, min(requests, 100))  # warm-up
            results["levels"][str(clients)] = _load(port, clients, requests)
        results["peak_rss_mb"] = _peak_rss_mb(server.pid)
    finally:
        server.terminate()
        server.wait(timeout=60)
    return results


def _load(port: int, clients: int, requests: int) -> dict:
    """``requests`` text queries from ``clients`` threads, each on its own keep-alive connection."""
    rng = np.random.default_rng(clients)
    paths = [
        "/api/search?" + urllib.parse.urlencode({"q": " ".join(rng.choice(WORDS, size=3)), "k": 10})
        for _ in range(requests)
    ]

    def ok(status: int, body: bytes) -> bool:
        return status == 200 and len(json.loads(body)) == 10

    return closed_loop(port, clients, [("GET", path, None, {}) for path in paths], ok)


def _peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def print_table(results: dict) -> None:
    cold = results.get("cli", {})
    how = " (ONNX Runtime)" if cold.get("onnx_queries") else ""
    rows = [
        (f"cold `mmembed search`, text query{how}", cold.get("search_text"), "≤ 2.0 s"),
        ("cold `mmembed search`, text query (torch fallback)", cold.get("search_text_torch"), ""),
        (f"cold `mmembed search`, image query{how}", cold.get("search_image"), "≤ 3.0 s"),
        ("no-op `mmembed index` re-run", cold.get("noop_index"), "≤ 3 s"),
        ('`mmembed.load("mmembed-mini")`, fresh process', cold.get("load_mini"), ""),
    ]
    print("| measure | median s | min–max s | peak RSS MB | goal |")
    print("|---|---:|---:|---:|---|")
    for name, row, goal in rows:
        if row:
            print(
                f"| {name} | {row['median_s']:.2f} | {row['min_s']:.2f}–{row['max_s']:.2f} "
                f"| {row['peak_rss_mb']:.0f} | {goal} |"
            )
    if "first_index_s" in cold:
        print(f"\nfirst `mmembed index assets`: {cold['first_index_s']:.1f} s")
    server = results.get("server")
    if server:
        print(
            f"\nserver on {server['items']} items (startup {server['startup_s']:.1f} s, "
            f"peak RSS {server['peak_rss_mb']:.0f} MB)\n"
        )
        print("| clients | requests | errors | p50 ms | p99 ms | requests/s |")
        print("|---:|---:|---:|---:|---:|---:|")
        for clients, row in server["levels"].items():
            print(
                f"| {clients} | {row['requests']} | {row['errors']} | {row['p50_ms']:.1f} "
                f"| {row['p99_ms']:.1f} | {row['requests_per_s']:.0f} |"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="cold runs per measure")
    parser.add_argument("--requests", type=int, default=1000, help="server requests per level")
    parser.add_argument("--items", type=int, default=10_000, help="server index size")
    parser.add_argument("--checkout", type=Path, default=REPO, help="tree whose CLI is timed")
    parser.add_argument("--no-server", action="store_true", help="skip the server measures")
    parser.add_argument("--quick", action="store_true", help="2 repeats, 200 requests")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks/results/latency.json")
    args = parser.parse_args()
    if args.quick:
        args.repeats, args.requests = 2, 200
    work = Path(tempfile.mkdtemp(prefix="mmembed-latency-"))
    results: dict = {
        "command": " ".join(["python", "benchmarks/latency.py", *sys.argv[1:]]),
        "checkout": str(args.checkout),
        "cpus": os.cpu_count(),
        "load_average_before": os.getloadavg(),
        "repeats": args.repeats,
    }
    try:
        results["cli"] = measure_cli(args.checkout.resolve(), work, args.repeats)
        if not args.no_server:
            synthetic = work / "synthetic-index"
            synthetic_index(work / "assets-index", synthetic, args.items)
            results["server"] = {"items": args.items}
            results["server"].update(measure_server(synthetic, args.requests, [1, 4, 16]))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    results["load_average_after"] = os.getloadavg()
    print_table(results)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
