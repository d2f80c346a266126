"""The folder index (FAISS + SQLite) against the embedded vector engine (Milvus Lite); prints
a table and writes JSON (never asserted in tests).

    python benchmarks/store.py                           # 10^6 vectors local, 10^5 engine
    python benchmarks/store.py --count 1000000 --engine-count 1000000
    python benchmarks/store.py --quick                   # seconds: a smoke test
    python benchmarks/store.py --count 0 --engine-count 0 --qdrant-count 100000 --out X.json

For each store: 384-d unit vectors with metadata (path, modality): ``--data uniform``
(synthetic, uniform random: the hardest case for ANN) or ``--data wordnet`` (real text
embeddings: mmembed-mini's vectors of WordNet's definitions, searched with its query vectors of
WordNet's example sentences, as a text index holds them), ingest rate (vectors/s until searchable: FAISS builds and tunes
its structure, the engine takes upserts in batches of 1000, flushes and builds its index on a
background thread, which is waited for; each ``--engine-index`` type in a fresh collection),
single-query search latency p50/p99 and recall@10 against exact search (100 queries), then
the latency of ``GET /api/search?q=...`` through ``mmembed serve``'s app (text embedded by
mmembed-mini through torch on both sides, one client). Each row records the load
(``benchmarks/load.py``): on a shared machine the figures are slower than on an idle one.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.http_load import closed_loop, free_port  # noqa: E402
from benchmarks.load import LoadMonitor  # noqa: E402
from benchmarks.output import write_json  # noqa: E402
from benchmarks.retrieval import unit_vectors  # noqa: E402
from mmembed.retrieval import store, vectors  # noqa: E402

logger = logging.getLogger("benchmark")
K = 10
MODALITIES = ("image", "text", "video", "table")


def rows_of(count: int) -> list[dict[str, Any]]:
    """Item rows for the folder index (the same metadata the engine gets)."""
    return [
        {
            "pos": i,
            "id": f"/data/item-{i:07d}.jpg",
            "path": f"/data/item-{i:07d}.jpg",
            "modality": MODALITIES[i % 4],
            "content_hash": f"{i:064x}",
            "metadata": {"page": i % 7},
            "snippet": f"item-{i:07d}.jpg",
        }
        for i in range(count)
    ]


def wordnet_vectors(count: int, queries: int, model: Any) -> tuple[np.ndarray, np.ndarray]:
    """The first ``count`` distinct WordNet definitions ("word: definition") embedded as
    documents, and ``queries`` example sentences (a fixed shuffle) embedded as queries."""
    import random

    from mmembed.pages.corpora import read_wordnet, read_wordnet_examples

    texts = list(dict.fromkeys(f"{gloss.word}: {gloss.text}" for gloss in read_wordnet()))
    if count > len(texts):
        raise SystemExit(f"--data wordnet has {len(texts):,} definitions, fewer than {count:,}")
    examples = list(dict.fromkeys(gloss.text for gloss in read_wordnet_examples()))
    random.Random(0).shuffle(examples)
    start = time.perf_counter()
    data = model.encode_document(texts[:count], batch_size=256)
    logger.info("wordnet: %d definitions embedded in %.0f s", count, time.perf_counter() - start)
    return np.ascontiguousarray(data), np.ascontiguousarray(model.encode_query(examples[:queries]))


def percentiles(times: list[float]) -> dict[str, float]:
    return {
        "p50_ms": round(1000 * float(np.percentile(times, 50)), 3),
        "p99_ms": round(1000 * float(np.percentile(times, 99)), 3),
    }


def recall(found: list[list[int]], truth: np.ndarray) -> float:
    return float(
        np.mean([len(set(f) & set(t.tolist())) / K for f, t in zip(found, truth, strict=True)])
    )


def bench_local(
    data: np.ndarray, queries: np.ndarray, truth: np.ndarray, folder: Path, model: Any
) -> dict:
    """Build a folder index generation from ``data`` and search it like ``Index`` does."""
    import faiss

    start = time.perf_counter()
    searcher, spec = vectors.build(data, "auto")
    info = {
        "model": model.name,
        "instruction": model.document_instruction,
        "matryoshka_dim": None,
        "dim": data.shape[1],
        "count": len(data),
        "index_type": "auto",
        "vectors": spec.to_dict(),
    }
    folder.mkdir(parents=True)
    store.write_generation(
        folder, info, data, rows_of(len(data)), [], lambda out: vectors.save(searcher, spec, out)
    )
    ingest_s = time.perf_counter() - start
    faiss.omp_set_num_threads(1)  # one thread per query, as a server runs them
    times, found = [], []
    for query in queries:
        begin = time.perf_counter()
        found.append(searcher.search(query[None], K)[1][0].tolist())
        times.append(time.perf_counter() - begin)
    faiss.omp_set_num_threads(os.cpu_count() or 1)
    return {
        "store": f"folder: FAISS {spec.kind} + SQLite",
        "settings": {k: v for k, v in spec.to_dict().items() if v and k != "recall_at_10"},
        "count": len(data),
        "ingest_per_s": round(len(data) / ingest_s),
        **percentiles(times),
        "recall_at_10": round(recall(found, truth), 4),
    }


def bench_engine(
    data: np.ndarray,
    queries: np.ndarray,
    truth: np.ndarray,
    uri: str,
    model: Any,
    index: str = "HNSW",
) -> dict:
    """Upsert ``data`` into a Milvus Lite collection and search it; ``index`` is an index type
    and optional parameters, e.g. ``IVF_FLAT:nlist=1:nprobe=1`` (an exact scan in FAISS).

    Ingest ends when the collection is searchable through its index: after the flush, the
    engine builds the index on a background thread (``MilvusCollection.wait_indexed``); a
    search before that scans by brute force, which is measured too (``before_index``).
    """
    from mmembed.retrieval.remote.ledger import position_of
    from mmembed.retrieval.remote.milvus import CollectionOptions, MilvusCollection
    from mmembed.retrieval.remote.uri import parse

    target = parse(uri)
    collection = MilvusCollection(target, timeout=600)
    kind, *pairs = index.split(":")
    params = {key: int(value) for key, value in (pair.split("=") for pair in pairs)}
    options = CollectionOptions.make(kind, params)
    info = {
        "model": model.name,
        "instruction": model.document_instruction,
        "dim": data.shape[1],
        "matryoshka_dim": None,
        "uid": "benchmark",
        "index_type": options.index_type,
        "build_params": options.build_params,
        "search_params": options.search_params,
    }
    collection.create(data.shape[1], info, options)
    start = time.perf_counter()
    for begin in range(0, len(data), 1000):
        rows = rows_of(min(len(data), begin + 1000))[begin:]
        collection.upsert(
            [
                {
                    "id": row["id"],
                    "vector": data[row["pos"]],
                    "position": position_of(row["id"]),
                    "path": row["path"],
                    "modality": row["modality"],
                    "content_hash": row["content_hash"],
                    "source": "/data",
                    "snippet": row["snippet"],
                    "metadata": row["metadata"],
                }
                for row in rows
            ]
        )
        if begin % 100_000 == 0:
            logger.info("engine: %d upserted", begin)
    collection.flush()
    flushed_s = time.perf_counter() - start
    before_index = _search_engine(collection, queries[: max(1, len(queries) // 5)], options)[0]
    collection.wait_indexed()
    ingest_s = time.perf_counter() - start
    with _engine_split() as split:
        times, found = _search_engine(collection, queries, options)
    collection.close()
    return {
        "store": "engine: Milvus Lite (milvus-lite " + _version("milvus-lite") + ")",
        "settings": {**options.build_params, **options.search_params, "index": options.index_type},
        "count": len(data),
        "ingest_per_s": round(len(data) / ingest_s),
        "upsert_and_flush_per_s": round(len(data) / flushed_s),
        "before_index": percentiles(before_index),
        **percentiles(times),
        "recall_at_10": round(recall(found, truth), 4),
        "split_p50_ms": {name: percentiles(spent)["p50_ms"] for name, spent in split.items()},
    }


@contextlib.contextmanager
def _engine_split() -> Iterator[dict[str, list[float]]]:
    """Where an embedded search's time goes: Milvus Lite's search executor (all of its work
    in the engine) and, within it, the vector indexes' own searches (FAISS); the rest of the
    executor is its walk over every primary key (dedup of upserted versions, tombstones) and
    the results' rows. Times Milvus Lite's functions from outside (benchmark only)."""
    import milvus_lite.engine.collection as engine
    from milvus_lite.index.protocol import VectorIndex

    split: dict[str, list[float]] = {"executor": [], "vector_index": []}
    executor = engine.execute_search_with_index
    classes = [VectorIndex, *_subclasses(VectorIndex)]
    originals = {cls: cls.__dict__["search"] for cls in classes if "search" in cls.__dict__}
    spent = [0.0]

    def timed_executor(*args: Any, **kwargs: Any) -> Any:
        spent[0] = 0.0
        begin = time.perf_counter()
        try:
            return executor(*args, **kwargs)
        finally:
            split["executor"].append(time.perf_counter() - begin)
            split["vector_index"].append(spent[0])

    def timed(search: Any) -> Any:
        def run(self: Any, *args: Any, **kwargs: Any) -> Any:
            begin = time.perf_counter()
            try:
                return search(self, *args, **kwargs)
            finally:
                spent[0] += time.perf_counter() - begin

        return run

    engine.execute_search_with_index = timed_executor
    for cls, search in originals.items():
        cls.search = timed(search)
    try:
        yield split
    finally:
        engine.execute_search_with_index = executor
        for cls, search in originals.items():
            cls.search = search


def _subclasses(cls: type) -> list[type]:
    return [sub for direct in cls.__subclasses__() for sub in (direct, *_subclasses(direct))]


def _search_engine(
    collection: Any, queries: np.ndarray, options: Any
) -> tuple[list[float], list[list[int]]]:
    """Single-query latencies and the item numbers found, through ``MilvusCollection.search``."""
    times, found = [], []
    for query in queries:
        begin = time.perf_counter()
        hits = collection.search(query[None], K, options.search_params)[0]
        times.append(time.perf_counter() - begin)
        found.append([int(hit["id"][len("/data/item-") :][:7]) for hit in hits])
    return times, found


def bench_qdrant_local(
    data: np.ndarray, queries: np.ndarray, truth: np.ndarray, folder: Path
) -> dict:
    """Qdrant's local mode (qdrant-client, in process): why it is not a backend."""
    from qdrant_client import QdrantClient, models

    client = QdrantClient(path=str(folder))
    client.create_collection(
        "bench",
        vectors_config=models.VectorParams(size=data.shape[1], distance=models.Distance.DOT),
    )
    start = time.perf_counter()
    for begin in range(0, len(data), 1000):
        points = [
            models.PointStruct(
                id=i, vector=data[i].tolist(), payload={"modality": MODALITIES[i % 4]}
            )
            for i in range(begin, min(len(data), begin + 1000))
        ]
        client.upsert("bench", points, wait=True)
    ingest_s = time.perf_counter() - start
    times, found = [], []
    for query in queries:
        begin = time.perf_counter()
        hits = client.query_points("bench", query=query.tolist(), limit=K).points
        times.append(time.perf_counter() - begin)
        found.append([int(hit.id) for hit in hits])
    client.close()
    return {
        "store": "engine: Qdrant local mode (qdrant-client " + _version("qdrant-client") + ")",
        "settings": {},
        "count": len(data),
        "ingest_per_s": round(len(data) / ingest_s),
        **percentiles(times),
        "recall_at_10": round(recall(found, truth), 4),
        "serve": {},
    }


def bench_serve(target: str, model: Any, requests: int) -> dict:
    """Latency of ``GET /api/search`` through mmembed serve's app, one client."""
    import uvicorn

    from mmembed.serve.config import ServeCfg
    from mmembed.serve.server import build_app, uvicorn_config

    app = build_app(ServeCfg(), target, embedder=model, use_onnx=False)
    port = free_port()
    server = uvicorn.Server(uvicorn_config(app, "127.0.0.1", port))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    words = ["a cat on a sofa", "a rocket launch", "a cup of coffee", "city at night"]
    paths = [f"/api/search?q={words[i % 4].replace(' ', '+')}&k=10" for i in range(requests)]
    closed_loop(port, 1, [("GET", paths[0], None, {})], lambda status, body: status == 200)
    result = closed_loop(
        port, 1, [("GET", path, None, {}) for path in paths], lambda s, body: s == 200
    )
    server.should_exit = True
    thread.join()
    return result


def _version(name: str) -> str:
    from importlib.metadata import version

    return version(name)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=1_000_000, help="vectors in the folder index")
    parser.add_argument("--engine-count", type=int, default=100_000, help="vectors in the engine")
    parser.add_argument(
        "--qdrant-count", type=int, default=0, help="also measure Qdrant's local mode (0: no)"
    )
    parser.add_argument(
        "--engine-index",
        default="HNSW,IVF_FLAT:nlist=1:nprobe=1,FLAT",
        help="engine indexes to measure, comma-separated, TYPE[:KEY=VALUE...] (each a fresh "
        "collection)",
    )
    parser.add_argument(
        "--data",
        choices=("uniform", "wordnet"),
        default="uniform",
        help="uniform random unit vectors, or mmembed-mini's embeddings of WordNet (real text)",
    )
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--serve-requests", type=int, default=50)
    parser.add_argument("--quick", action="store_true", help="5000 vectors, 20 queries")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "store.json")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    if args.quick:
        args.count, args.engine_count, args.queries, args.serve_requests = 5000, 5000, 20, 10
    import mmembed
    from mmembed.retrieval.vectors import exact_search

    model = mmembed.load("mmembed-mini")
    rng = np.random.default_rng(0)
    load_before = os.getloadavg()
    work = Path(tempfile.mkdtemp(prefix="mmembed-store-bench-"))
    results: list[dict] = []
    texts: tuple[np.ndarray, np.ndarray] | None = None
    try:
        runs = [(args.count, "local", "")]
        runs += [(args.engine_count, "engine", kind) for kind in args.engine_index.split(",")]
        runs += [(args.qdrant_count, "qdrant", "")]
        for count, kind, index_type in runs:
            if not count:
                continue
            if args.data == "wordnet":
                if texts is None:  # embedded once, for the largest store
                    most = max(args.count, args.engine_count, args.qdrant_count)
                    texts = wordnet_vectors(most, args.queries, model)
                data, queries = texts[0][:count], texts[1]
            else:
                data = unit_vectors(count, 384, rng)
                queries = unit_vectors(args.queries, 384, rng)
            truth = exact_search(data, queries, K)[1]
            logger.info("%s: %d vectors", kind, count)
            with LoadMonitor() as monitor:
                if kind == "qdrant":
                    row = bench_qdrant_local(data, queries, truth, work / "qdrant")
                else:
                    if kind == "local":
                        target: str = str(work / "local")
                        row = bench_local(data, queries, truth, Path(target), model)
                    else:
                        name = index_type.split(":")[0].lower()
                        target = f"milvus-lite://{work}/{name}.db?collection=bench_{name}"
                        row = bench_engine(data, queries, truth, target, model, index_type)
                    del data
                    logger.info("%s", row)
                    row["serve"] = bench_serve(target, model, args.serve_requests)
            row["load"] = monitor.summary()
            results.append(row)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    payload = {
        "data": args.data,
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "cpus": os.cpu_count(),
        "results": results,
    }
    print(format_table(payload))
    write_json(args.out, payload)
    return 0


def format_table(payload: dict) -> str:
    lines = [
        "| store | vectors | ingest /s | search p50 ms | p99 ms | recall@10 | serve p50 ms "
        "| p99 ms | load before / after, others per core |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in payload["results"]:
        serve, load = row["serve"], row["load"]
        lines.append(
            f"| {row['store']} {json.dumps(row['settings'])} | {row['count']:,} | "
            f"{row['ingest_per_s']:,} | {row['p50_ms']} | {row['p99_ms']} | {row['recall_at_10']} | "
            f"{serve.get('p50_ms', '-')} | {serve.get('p99_ms', '-')} | {load['load_before']:.1f} / "
            f"{load['load_after']:.1f}, {load['others_per_core']}{' (busy)' if load['busy'] else ''} |"
        )
    lines.append(
        f"data: {payload.get('data', 'uniform')}; "
        f"load average before {payload['load_average_before']}, after {payload['load_average_after']}"
        f" on {payload['cpus']} CPUs"
    )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
