"""Vector search structures: choose, build, tune, save and load them.

Below ``EXACT_LIMIT`` vectors search is exact (``IndexFlatIP``). Above it an IVF index is
built and its ``nprobe`` raised until recall@10 against exact search, measured on a sample
of the indexed vectors, reaches ``TARGET_RECALL``; the measured recall is stored with the
index and reported. HNSW (``efSearch``) and binary codes (candidates rescored per result)
are available on request and tuned the same way.
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

from .binary import DEFAULT_RESCORE_FACTOR, MAX_RESCORE_FACTOR, BinarySearcher, build_binary_index

if TYPE_CHECKING:
    import faiss

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


class MappedFlatSearcher:
    """Exact inner-product search straight over a (memory-mapped) ``(N, D)`` matrix.

    Scores are computed block by block with one matrix product, so no copy of the vectors is
    made and faiss is not imported; results equal ``IndexFlatIP``'s (ties broken by position).
    """

    def __init__(self, vectors: np.ndarray, block: int = 65_536):
        self.vectors = vectors
        self.block = block

    @property
    def ntotal(self) -> int:
        return len(self.vectors)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """``(scores, positions)`` of the top ``k``, both ``(Q, k)``; missing are -inf / -1."""
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        best_scores = np.full((len(queries), k), -np.inf, dtype=np.float32)
        best_positions = np.full((len(queries), k), -1, dtype=np.int64)
        if k == 0:
            return best_scores, best_positions
        for start in range(0, self.ntotal, self.block):
            chunk = np.asarray(self.vectors[start : start + self.block], dtype=np.float32)
            scores = queries @ chunk.T  # (Q, B)
            keep = min(k, scores.shape[1])
            top = np.argpartition(-scores, keep - 1, axis=1)[:, :keep]
            scores = np.concatenate([best_scores, np.take_along_axis(scores, top, axis=1)], 1)
            positions = np.concatenate([best_positions, top + start], axis=1)
            order = np.lexsort((positions, -scores), axis=1)[:, :k]
            best_scores = np.take_along_axis(scores, order, axis=1)
            best_positions = np.take_along_axis(positions, order, axis=1)
        best_positions[~np.isfinite(best_scores)] = -1
        return best_scores, best_positions


def choose_kind(count: int, requested: str = "auto") -> str:
    """The structure to build for ``count`` vectors ("auto": exact below ``EXACT_LIMIT``)."""
    if requested not in KINDS:
        raise ValueError(f"unknown index type {requested!r}; choose from {', '.join(KINDS)}")
    if requested != "auto":
        return requested
    return "flat" if count < EXACT_LIMIT else "ivf"


def build(
    vectors: np.ndarray, kind: str = "auto", seed: int = 0, tune: bool = True
) -> tuple[Searcher, VectorSpec]:
    """Build the search structure for unit ``vectors`` ``(N, D)``.

    With ``tune`` (the default) the search-time knob is raised until the target recall;
    without, it keeps its smallest value and ``recall_at_10`` is not measured (NaN).
    """
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    count, dim = vectors.shape
    kind = choose_kind(count, kind)
    if kind == "flat":
        return flat_searcher(vectors), VectorSpec("flat")
    if kind == "binary":
        return _build_binary(vectors, seed, tune)
    if kind == "ivf":
        return _build_ivf(vectors, seed, tune)
    return _build_hnsw(vectors, seed, tune)


def flat_searcher(vectors: np.ndarray) -> FaissSearcher:
    """Exact inner-product search over ``vectors``."""
    import faiss

    index = faiss.IndexFlatIP(vectors.shape[1])
    if len(vectors):
        index.add(np.ascontiguousarray(vectors, dtype=np.float32))
    return FaissSearcher(index)


def _build_ivf(vectors: np.ndarray, seed: int, tune: bool) -> tuple[Searcher, VectorSpec]:
    import faiss

    count, dim = vectors.shape
    nlist = max(1, min(int(math.sqrt(count)), count // 39))
    quantizer = faiss.IndexFlatIP(dim)
    index = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
    index.cp.niter = 10
    rng = np.random.default_rng(seed)
    sample = vectors[np.sort(rng.choice(count, size=min(count, 40 * nlist), replace=False))]
    index.train(sample)
    index.add(vectors)
    searcher, spec = FaissSearcher(index), VectorSpec("ivf", nlist=nlist)
    _tune(searcher, vectors, spec, "nprobe", _doubling(1, nlist), seed, tune)
    return searcher, spec


def _build_hnsw(vectors: np.ndarray, seed: int, tune: bool) -> tuple[Searcher, VectorSpec]:
    import faiss

    index = faiss.IndexHNSWFlat(vectors.shape[1], 32, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = 64
    index.add(vectors)
    searcher, spec = FaissSearcher(index), VectorSpec("hnsw", hnsw_m=32)
    _tune(searcher, vectors, spec, "ef_search", _doubling(64, 1024), seed, tune)
    return searcher, spec


def _build_binary(vectors: np.ndarray, seed: int, tune: bool) -> tuple[Searcher, VectorSpec]:
    searcher, spec = BinarySearcher(build_binary_index(vectors), vectors), VectorSpec("binary")
    values = _doubling(DEFAULT_RESCORE_FACTOR, MAX_RESCORE_FACTOR)
    _tune(searcher, vectors, spec, "rescore_factor", values, seed, tune)
    return searcher, spec


def _tune(
    searcher: Searcher,
    vectors: np.ndarray,
    spec: VectorSpec,
    knob: str,
    values: list[int],
    seed: int,
    tune: bool = True,
) -> None:
    """Raise a search-time knob until recall@10 reaches ``TARGET_RECALL`` (or values run out)."""
    if not tune:
        setattr(spec, knob, values[0])
        apply_spec(searcher, spec)
        spec.recall_at_10 = math.nan
        return
    probe = RecallProbe(vectors, seed=seed)
    for value in values:
        setattr(spec, knob, value)
        apply_spec(searcher, spec)
        spec.recall_at_10 = probe(searcher)
        if spec.recall_at_10 >= TARGET_RECALL:
            break
    logger.info("%s: %s=%d gives recall@10=%.3f", spec.kind, knob, value, spec.recall_at_10)


def apply_spec(searcher: Searcher, spec: VectorSpec) -> None:
    """Set the search-time knob of ``spec`` (nprobe, efSearch, rescore factor) on ``searcher``."""
    if spec.kind == "ivf":
        searcher.index.nprobe = spec.nprobe
    elif spec.kind == "hnsw":
        searcher.index.hnsw.efSearch = spec.ef_search
    elif spec.kind == "binary":
        searcher.rescore_factor = spec.rescore_factor


def _doubling(start: int, stop: int) -> list[int]:
    values = [start]
    while values[-1] < stop:
        values.append(min(stop, values[-1] * 2))
    return values


class RecallProbe:
    """Recall@k against exact search, querying with a sample of the indexed vectors.

    Each sampled vector is a query and is left out of both result lists, so the figure
    measures how well its neighbours are found, not the trivial match with itself. The
    exact answers are computed once, so tuning loops only pay for the searcher.
    """

    def __init__(
        self, vectors: np.ndarray, k: int = 10, sample: int = RECALL_SAMPLE, seed: int = 0
    ):
        count = len(vectors)
        self.k = min(k, count - 1)
        rng = np.random.default_rng(seed)
        self.picks = rng.choice(count, size=min(sample, count), replace=False)
        self.queries = np.ascontiguousarray(vectors[self.picks], dtype=np.float32)
        truth = exact_search(vectors, self.queries, self.k + 1)[1] if self.k > 0 else []
        self.truth = [
            [position for position in row if position != pick][: self.k]
            for pick, row in zip(self.picks, truth, strict=True)
        ]

    def __call__(self, searcher: Searcher) -> float:
        if self.k <= 0:
            return 1.0
        found = searcher.search(self.queries, self.k + 1)[1]
        hits = sum(
            len(set(row.tolist()).difference([pick]).intersection(truth))
            for pick, row, truth in zip(self.picks, found, self.truth, strict=True)
        )
        return hits / (self.k * len(self.picks))


def measure_recall(
    searcher: Searcher, vectors: np.ndarray, k: int = 10, sample: int = RECALL_SAMPLE, seed: int = 0
) -> float:
    """Recall@k of ``searcher`` against exact search (see ``RecallProbe``)."""
    return RecallProbe(vectors, k, sample, seed)(searcher)


def exact_search(
    vectors: np.ndarray, queries: np.ndarray, k: int, block: int = 262_144
) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-``k`` inner product, scanning ``vectors`` in blocks (works on memory maps)."""
    import faiss

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
    import faiss

    if spec.kind == "binary":
        faiss.write_index_binary(searcher.codes, str(folder / "codes.faiss"))
    elif spec.kind in ("ivf", "hnsw"):
        faiss.write_index(searcher.index, str(folder / "vectors.faiss"))


def load(spec: VectorSpec, folder: Path, vectors: np.ndarray) -> Searcher:
    """Load the structure of a generation; ``vectors`` is its (memory-mapped) float matrix.

    A flat index searches the memory map itself: opening it reads nothing, and the page cache
    is shared between processes serving the same index.
    """
    if spec.kind == "flat":
        return MappedFlatSearcher(vectors)
    import faiss

    if spec.kind == "binary":
        codes = faiss.read_index_binary(str(folder / "codes.faiss"))
        return BinarySearcher(codes, vectors, spec.rescore_factor)
    searcher = FaissSearcher(faiss.read_index(str(folder / "vectors.faiss")))
    apply_spec(searcher, spec)
    return searcher
