"""Vector search structures: choose, build, tune, save and load them.

Below ``EXACT_LIMIT`` vectors search is exact (``IndexFlatIP``). Above it an IVF index is
built and its ``nprobe`` raised until recall@10 against exact search, measured on a sample
of the indexed vectors, reaches ``TARGET_RECALL``; the measured recall is stored with the
index and reported. HNSW and binary codes are available on request.
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Protocol

import faiss
import numpy as np

from .binary import DEFAULT_RESCORE_FACTOR, BinarySearcher, build_binary_index

logger = logging.getLogger(__name__)

EXACT_LIMIT = 100_000  # below this many vectors, search is exact
TARGET_RECALL = 0.95  # recall@10 that nprobe / efSearch are tuned to reach
RECALL_SAMPLE = 200  # indexed vectors used as queries to measure recall
KINDS = ("auto", "flat", "ivf", "hnsw", "binary")


class Searcher(Protocol):
    """What the index needs from a vector structure."""

    ntotal: int

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]: ...


@dataclass
class VectorSpec:
    """How the vectors of one generation are searched (stored in its ``info.json``).

    Attributes:
        kind: "flat" (exact), "ivf", "hnsw" or "binary" (sign codes + float rescoring).
        nlist: IVF cells.
        nprobe: IVF cells visited per query.
        hnsw_m: HNSW neighbours per node.
        ef_search: HNSW candidate list size at search time.
        rescore_factor: binary candidates per wanted result.
        recall_at_10: recall@10 against exact search measured at build (1.0 when exact).
    """

    kind: str = "flat"
    nlist: int = 0
    nprobe: int = 0
    hnsw_m: int = 0
    ef_search: int = 0
    rescore_factor: int = 0
    recall_at_10: float = 1.0

    def to_dict(self) -> dict:
        return asdict(self)


class FaissSearcher:
    """A float FAISS index searched by inner product."""

    def __init__(self, index: faiss.Index):
        self.index = index

    @property
    def ntotal(self) -> int:
        return int(self.index.ntotal)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """``(scores, positions)`` of the top ``k``, both ``(Q, k)``; missing are -inf / -1."""
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        if self.ntotal == 0 or k == 0:
            return (
                np.full((len(queries), k), -np.inf, dtype=np.float32),
                np.full((len(queries), k), -1, dtype=np.int64),
            )
        scores, positions = self.index.search(queries, k)
        scores[positions < 0] = -np.inf
        return scores, positions


def choose_kind(count: int, requested: str = "auto") -> str:
    """The structure to build for ``count`` vectors ("auto": exact below ``EXACT_LIMIT``)."""
    if requested not in KINDS:
        raise ValueError(f"unknown index type {requested!r}; choose from {', '.join(KINDS)}")
    if requested != "auto":
        return requested
    return "flat" if count < EXACT_LIMIT else "ivf"


def build(vectors: np.ndarray, kind: str = "auto", seed: int = 0) -> tuple[Searcher, VectorSpec]:
    """Build and tune the search structure for unit ``vectors`` ``(N, D)``."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    count, dim = vectors.shape
    kind = choose_kind(count, kind)
    if kind == "flat":
        return flat_searcher(vectors), VectorSpec("flat")
    if kind == "binary":
        searcher = BinarySearcher(build_binary_index(vectors), vectors, DEFAULT_RESCORE_FACTOR)
        spec = VectorSpec("binary", rescore_factor=DEFAULT_RESCORE_FACTOR)
        spec.recall_at_10 = measure_recall(searcher, vectors, seed=seed)
        return searcher, spec
    if kind == "ivf":
        return _build_ivf(vectors, seed)
    return _build_hnsw(vectors, seed)


def flat_searcher(vectors: np.ndarray) -> FaissSearcher:
    """Exact inner-product search over ``vectors``."""
    index = faiss.IndexFlatIP(vectors.shape[1])
    if len(vectors):
        index.add(np.ascontiguousarray(vectors, dtype=np.float32))
    return FaissSearcher(index)


def _build_ivf(vectors: np.ndarray, seed: int) -> tuple[Searcher, VectorSpec]:
    count, dim = vectors.shape
    nlist = max(1, min(int(math.sqrt(count)), count // 39))
    quantizer = faiss.IndexFlatIP(dim)
    index = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
    index.cp.niter = 10
    rng = np.random.default_rng(seed)
    sample = vectors[np.sort(rng.choice(count, size=min(count, 40 * nlist), replace=False))]
    index.train(sample)
    index.add(vectors)
    searcher = FaissSearcher(index)
    spec = VectorSpec("ivf", nlist=nlist)
    for nprobe in _doubling(1, nlist):
        index.nprobe = nprobe
        spec.nprobe, spec.recall_at_10 = nprobe, measure_recall(searcher, vectors, seed=seed)
        if spec.recall_at_10 >= TARGET_RECALL:
            break
    logger.info("IVF%d: nprobe=%d gives recall@10=%.3f", nlist, spec.nprobe, spec.recall_at_10)
    return searcher, spec


def _build_hnsw(vectors: np.ndarray, seed: int) -> tuple[Searcher, VectorSpec]:
    dim = vectors.shape[1]
    index = faiss.IndexHNSWFlat(dim, 32, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = 64
    index.add(vectors)
    searcher = FaissSearcher(index)
    spec = VectorSpec("hnsw", hnsw_m=32)
    for ef_search in _doubling(16, 1024):
        index.hnsw.efSearch = ef_search
        spec.ef_search, spec.recall_at_10 = ef_search, measure_recall(searcher, vectors, seed=seed)
        if spec.recall_at_10 >= TARGET_RECALL:
            break
    logger.info("HNSW: efSearch=%d gives recall@10=%.3f", spec.ef_search, spec.recall_at_10)
    return searcher, spec


def _doubling(start: int, stop: int) -> list[int]:
    values = [start]
    while values[-1] < stop:
        values.append(min(stop, values[-1] * 2))
    return values


def measure_recall(
    searcher: Searcher, vectors: np.ndarray, k: int = 10, sample: int = RECALL_SAMPLE, seed: int = 0
) -> float:
    """Recall@k of ``searcher`` against exact search, querying with indexed vectors.

    Each sampled vector is a query and is left out of both result lists, so the figure
    measures how well its neighbours are found, not the trivial match with itself.
    """
    count = len(vectors)
    if count <= 1:
        return 1.0
    k = min(k, count - 1)
    rng = np.random.default_rng(seed)
    picks = rng.choice(count, size=min(sample, count), replace=False)
    queries = np.ascontiguousarray(vectors[picks], dtype=np.float32)
    exact = exact_search(vectors, queries, k + 1)[1]
    approximate = searcher.search(queries, k + 1)[1]
    found = 0
    for pick, truth, got in zip(picks, exact, approximate, strict=True):
        truth = [position for position in truth if position != pick][:k]
        got = {position for position in got if position != pick}
        found += len(got.intersection(truth))
    return found / (k * len(picks))


def exact_search(
    vectors: np.ndarray, queries: np.ndarray, k: int, block: int = 262_144
) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-``k`` inner product, scanning ``vectors`` in blocks (works on memory maps)."""
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    best_scores = np.full((len(queries), k), -np.inf, dtype=np.float32)
    best_positions = np.full((len(queries), k), -1, dtype=np.int64)
    for start in range(0, len(vectors), block):
        chunk = np.ascontiguousarray(vectors[start : start + block], dtype=np.float32)
        scores, positions = faiss.knn(
            queries, chunk, min(k, len(chunk)), faiss.METRIC_INNER_PRODUCT
        )
        scores = np.concatenate([best_scores, scores], axis=1)
        positions = np.concatenate([best_positions, positions + start], axis=1)
        order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        best_scores = np.take_along_axis(scores, order, axis=1)
        best_positions = np.take_along_axis(positions, order, axis=1)
    return best_scores, best_positions


def save(searcher: Searcher, spec: VectorSpec, folder: Path) -> None:
    """Write the structure next to ``vectors.npy`` (flat indexes are rebuilt from it)."""
    if spec.kind == "binary":
        faiss.write_index_binary(searcher.codes, str(folder / "codes.faiss"))
    elif spec.kind in ("ivf", "hnsw"):
        faiss.write_index(searcher.index, str(folder / "vectors.faiss"))


def load(spec: VectorSpec, folder: Path, vectors: np.ndarray) -> Searcher:
    """Load the structure of a generation; ``vectors`` is its (memory-mapped) float matrix."""
    if spec.kind == "flat":
        return flat_searcher(np.asarray(vectors))
    if spec.kind == "binary":
        codes = faiss.read_index_binary(str(folder / "codes.faiss"))
        return BinarySearcher(codes, vectors, spec.rescore_factor)
    index = faiss.read_index(str(folder / "vectors.faiss"))
    if spec.kind == "ivf":
        index.nprobe = spec.nprobe
    else:
        index.hnsw.efSearch = spec.ef_search
    return FaissSearcher(index)
