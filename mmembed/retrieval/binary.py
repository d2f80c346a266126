"""Binary codes: one sign bit per dimension, Hamming search, then float rescoring.

A 384-d float32 vector takes 1536 bytes; its code takes 48 (32x less). Search ranks all
codes by Hamming distance, keeps ``k * rescore_factor`` candidates and rescores them with
the float vectors, which stay on disk (memory-mapped) and are read only for candidates.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import faiss

DEFAULT_RESCORE_FACTOR = 10  # candidates per wanted result, raised at build until recall is met
HEAP_LIMIT = 256  # above this many candidates, faiss' counting Hamming search is faster
MAX_RESCORE_FACTOR = 640  # the most candidates per wanted result tuning will try


def sign_codes(vectors: np.ndarray) -> np.ndarray:
    """Pack the sign of each dimension into bits: ``(N, D)`` float -> ``(N, ceil(D/8))`` uint8."""
    return np.packbits(np.asarray(vectors) > 0, axis=1)


def build_binary_index(vectors: np.ndarray) -> faiss.IndexBinaryFlat:
    """A Hamming-distance index over the sign codes of ``vectors``."""
    import faiss

    codes = sign_codes(vectors)
    index = faiss.IndexBinaryFlat(codes.shape[1] * 8)
    if len(codes):
        index.add(codes)
    return index


class BinarySearcher:
    """Hamming search over codes, rescored with float vectors.

    Args:
        codes: the binary index (held in memory).
        vectors: the float vectors, usually a read-only memory map.
        rescore_factor: candidates kept per wanted result before rescoring.
    """

    def __init__(
        self,
        codes: faiss.IndexBinary,
        vectors: np.ndarray,
        rescore_factor: int = DEFAULT_RESCORE_FACTOR,
    ):
        self.codes = codes
        self.vectors = vectors
        self.rescore_factor = rescore_factor

    @property
    def ntotal(self) -> int:
        return int(self.codes.ntotal)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top ``k`` by float inner product among the Hamming candidates.

        Returns ``(scores, positions)``, both ``(Q, k)``; missing results are ``-1`` / ``-inf``.
        """
        import faiss

        queries = np.ascontiguousarray(queries, dtype=np.float32)
        scores = np.full((len(queries), k), -np.inf, dtype=np.float32)
        positions = np.full((len(queries), k), -1, dtype=np.int64)
        if self.ntotal == 0 or k == 0:
            return scores, positions
        wanted = min(self.ntotal, k * self.rescore_factor)
        # A heap suits few candidates; counting by distance is several times faster for many.
        self.codes.use_heap = wanted <= HEAP_LIMIT
        _, candidates = self.codes.search(sign_codes(queries), wanted)  # (Q, wanted)
        for row, (query, found) in enumerate(zip(queries, candidates, strict=True)):
            found = np.sort(found[found >= 0])  # sorted reads are kinder to the memory map
            candidates = np.ascontiguousarray(self.vectors[found], dtype=np.float32)  # (C, D)
            # faiss' single-query kernel: no BLAS threads to wake for one matrix-vector product
            best, top = faiss.knn(
                query[None], candidates, min(k, len(found)), faiss.METRIC_INNER_PRODUCT
            )
            scores[row, : top.shape[1]] = best[0]
            positions[row, : top.shape[1]] = found[top[0]]
        return scores, positions
