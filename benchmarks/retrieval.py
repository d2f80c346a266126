"""Retrieval speed, recall and memory; prints a table and writes JSON (never asserted in tests).

    python benchmarks/retrieval.py                     # the full run (about 4 minutes, 2 cores)
    python benchmarks/retrieval.py --quick             # seconds: small sizes, a smoke test

Vector search, for each size and dimension (random unit vectors, 100 random unit queries):
exact search, IVF, binary codes (sign bits, Hamming search, float rescoring) and, with
``--hnsw``, HNSW (1e5 vectors, first dimension only: about a minute to build on 2 cores),
each built once by
``mmembed.retrieval.vectors.build`` and measured at several search-time settings (nprobe,
efSearch, candidates rescored): recall@10 of the queries against exact search, median
single-query latency (one faiss thread) and memory per vector in RAM. Uniform random
vectors are the hardest case (every neighbour is nearly as far as any other); a
"clustered" set (points around 1000 centres, queries near indexed points, as with real
embeddings) is measured too.

Index build: the assets repeated (each copy with different bytes, so nothing is
deduplicated) indexed with mmembed-mini, decoding in 1 and in 2 worker threads.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from mmembed.retrieval import binary, vectors

logger = logging.getLogger("benchmark")

REPO = Path(__file__).resolve().parents[1]
K = 10


def unit_vectors(count: int, dim: int, rng: np.random.Generator) -> np.ndarray:
    """Uniform random unit vectors, built in chunks to bound temporary memory."""
    out = np.empty((count, dim), dtype=np.float32)
    for start in range(0, count, 100_000):
        chunk = rng.standard_normal((min(100_000, count - start), dim), dtype=np.float32)
        out[start : start + len(chunk)] = chunk / np.linalg.norm(chunk, axis=1, keepdims=True)
    return out


def clustered_vectors(
    count: int, dim: int, rng: np.random.Generator, queries: int
) -> tuple[np.ndarray, np.ndarray]:
    """Points around 1000 random centres, and queries near random points."""
    centres = unit_vectors(1000, dim, rng)
    data = np.empty((count, dim), dtype=np.float32)
    for start in range(0, count, 100_000):
        size = min(100_000, count - start)
        chunk = centres[rng.integers(1000, size=size)]
        chunk = chunk + rng.standard_normal((size, dim), dtype=np.float32) * (0.6 / np.sqrt(dim))
        data[start : start + size] = chunk / np.linalg.norm(chunk, axis=1, keepdims=True)
    near = data[rng.integers(count, size=queries)]
    near = near + rng.standard_normal(near.shape, dtype=np.float32) * (0.3 / np.sqrt(dim))
    return data, near / np.linalg.norm(near, axis=1, keepdims=True)


def recall_at_k(found: np.ndarray, truth: np.ndarray) -> float:
    """Mean fraction of the exact top-k found."""
    return float(np.mean([len(set(a) & set(b)) / K for a, b in zip(found, truth, strict=True)]))


def latency_ms(searcher: vectors.Searcher, queries: np.ndarray) -> tuple[float, np.ndarray]:
    """Median single-query latency in ms (one faiss thread), and the results of all queries.

    One thread per query is how a server runs concurrent queries; it also keeps OpenMP
    barriers out of the figure, which cost milliseconds on a loaded 2-core machine.
    """
    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        searcher.search(queries[:1], K)  # warm up
        times, found = [], []
        for query in queries:
            start = time.perf_counter()
            found.append(searcher.search(query[None], K)[1][0])
            times.append(time.perf_counter() - start)
    finally:
        faiss.omp_set_num_threads(threads)
    return 1000 * float(np.median(times)), np.array(found)


KNOBS = {  # search-time settings swept per structure: (VectorSpec field, values)
    "flat": ("kind", ["flat"]),
    "ivf": ("nprobe", [16, 64, 256]),
    "hnsw": ("ef_search", [64, 256]),
    "binary": ("rescore_factor", [10, 40, 160, 640]),
}


def bench_structures(
    data: np.ndarray, queries: np.ndarray, kinds: list[str], dataset: str
) -> list[dict[str, Any]]:
    """Build each structure once, then measure recall and latency at each knob setting."""
    count, dim = data.shape
    start = time.perf_counter()
    truth = vectors.exact_search(data, queries, K)[1]
    logger.info(
        "%s %dx%d: exact top-%d in %.1fs", dataset, count, dim, K, time.perf_counter() - start
    )
    rows = []
    for kind in kinds:
        start = time.perf_counter()
        searcher, spec = vectors.build(data, kind, tune=False)
        build_s = time.perf_counter() - start
        memory = {
            "flat": 4 * dim,
            "ivf": 4 * dim + 8,
            "hnsw": 4 * dim + 8 * spec.hnsw_m,
            "binary": binary.sign_codes(data[:1]).nbytes,
        }[kind]
        knob, values = KNOBS[kind]
        for value in values:
            if kind == "ivf" and value > spec.nlist:
                continue
            setattr(spec, knob, value)
            vectors.apply_spec(searcher, spec)
            latency, found = latency_ms(searcher, queries)
            settings = {
                "flat": "exact",
                "ivf": f"nlist={spec.nlist} nprobe={value}",
                "hnsw": f"M={spec.hnsw_m} efSearch={value}",
                "binary": f"{value * K} candidates rescored",
            }[kind]
            rows.append(
                {
                    "dataset": dataset,
                    "n": count,
                    "dim": dim,
                    "structure": kind,
                    "settings": settings,
                    "build_s": round(build_s, 2),
                    "latency_ms": round(latency, 3),
                    "recall_at_10": round(recall_at_k(found, truth), 4),
                    "memory_bytes_per_vector": memory,
                }
            )
            logger.info("%s", rows[-1])
        del searcher
    return rows


def bench_build(repeats: int, workers: list[int], batch_size: int) -> list[dict[str, Any]]:
    """Index-build throughput of mmembed-mini on the assets repeated ``repeats`` times."""
    import torch

    import mmembed
    from mmembed.retrieval import Index

    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    embedder = mmembed.load("mmembed-mini")
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder) / "assets"
        items = make_copies(REPO / "assets", root, repeats)
        for count in workers:
            start = time.perf_counter()
            index = Index.build(
                [root],
                embedder,
                Path(folder) / f"index-{count}",
                num_workers=count,
                batch_size=batch_size,
                show_progress=False,
            )
            elapsed = time.perf_counter() - start
            rows.append(
                {
                    "items": len(index),
                    "files": items,
                    "decode_workers": count,
                    "seconds": round(elapsed, 2),
                    "items_per_s": round(len(index) / elapsed, 2),
                    "skipped": len(index.skipped()),
                }
            )
            logger.info("%s", rows[-1])
    return rows


def make_copies(source: Path, target: Path, repeats: int) -> int:
    """Copy the asset files ``repeats`` times, each copy with distinct bytes, same content."""
    count = 0
    for copy in range(repeats):
        for path in sorted(source.rglob("*")):
            if not path.is_file() or path.name == "manifest.json":
                continue
            destination = target / f"copy{copy:03d}" / path.relative_to(source)
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, destination)
            with open(destination, "ab") as handle:  # trailing bytes: ignored by the decoders
                handle.write(b"\n" * copy if path.suffix in (".csv", ".json") else b"\0" * copy)
            count += 1
    return count


def format_tables(results: dict[str, Any]) -> str:
    lines = [
        "dataset    n        dim  structure  settings                  build s  latency ms  "
        "recall@10  bytes/vector"
    ]
    for row in results["search"]:
        lines.append(
            f"{row['dataset']:10s} {row['n']:<8d} {row['dim']:<4d} {row['structure']:10s} "
            f"{row['settings']:25s} {row['build_s']:<8.1f} {row['latency_ms']:<11.3f} "
            f"{row['recall_at_10']:<10.3f} {row['memory_bytes_per_vector']}"
        )
    if results["build"]:
        lines += [
            "",
            "index build (mmembed-mini, assets repeated)",
            "items  decode workers  seconds  items/s",
        ]
        for row in results["build"]:
            lines.append(
                f"{row['items']:<6d} {row['decode_workers']:<15d} {row['seconds']:<8.1f} {row['items_per_s']:.1f}"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--dims", type=int, nargs="+", default=[384, 512])
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=10, help="asset copies for the build test")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke test")
    parser.add_argument(
        "--hnsw", action="store_true", help="also HNSW at 1e5 (its build adds about a minute)"
    )
    parser.add_argument("--skip-build", action="store_true", help="vector search only")
    parser.add_argument("--out", type=Path, default=REPO / "out/benchmarks/retrieval.json")
    args = parser.parse_args(argv)
    if args.quick:
        args.sizes, args.dims, args.queries, args.repeats, args.workers = [3000], [64], 20, 1, [2]
        args.hnsw = True
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    rng = np.random.default_rng(0)
    started = time.perf_counter()
    search = []
    for count in args.sizes:
        for dim in args.dims:
            data, queries = unit_vectors(count, dim, rng), unit_vectors(args.queries, dim, rng)
            hnsw = ["hnsw"] if args.hnsw and count <= 100_000 and dim == args.dims[0] else []
            search += bench_structures(data, queries, ["flat", "ivf", *hnsw, "binary"], "random")
            del data
        data, queries = clustered_vectors(count, args.dims[0], rng, args.queries)
        ivf = ["ivf"] if count <= 100_000 else []
        search += bench_structures(data, queries, [*ivf, "binary"], "clustered")
        del data
    build = [] if args.skip_build else bench_build(args.repeats, args.workers, args.batch_size)
    results = {
        "search": search,
        "build": build,
        "seconds": round(time.perf_counter() - started, 1),
        "cpus": os.cpu_count(),
        "faiss_threads": faiss.omp_get_max_threads(),
    }
    print(format_tables(results))
    print(f"total {results['seconds']} s")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    temporary = args.out.with_name(f".{args.out.name}.tmp")
    temporary.write_text(json.dumps(results, indent=2))
    os.replace(temporary, args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
