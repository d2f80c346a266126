"""Vector structures: exact, IVF, HNSW and binary codes, on small random data."""

from __future__ import annotations

import numpy as np
import pytest

from mmembed.retrieval import binary, vectors


def unit(rows: int, dim: int, seed: int = 0) -> np.ndarray:
    data = np.random.default_rng(seed).standard_normal((rows, dim)).astype(np.float32)
    return data / np.linalg.norm(data, axis=1, keepdims=True)


def clustered(rows: int, dim: int, clusters: int = 50, seed: int = 0) -> np.ndarray:
    """Unit vectors around random centres: neighbours exist, as with real embeddings."""
    rng = np.random.default_rng(seed)
    centres = unit(clusters, dim, seed + 1)
    data = centres[rng.integers(clusters, size=rows)] + 0.08 * rng.standard_normal((rows, dim))
    return (data / np.linalg.norm(data, axis=1, keepdims=True)).astype(np.float32)


def test_choose_kind_is_exact_below_the_limit():
    assert vectors.choose_kind(vectors.EXACT_LIMIT - 1) == "flat"
    assert vectors.choose_kind(vectors.EXACT_LIMIT) == "ivf"
    assert vectors.choose_kind(10, "hnsw") == "hnsw"
    with pytest.raises(ValueError, match="unknown index type"):
        vectors.choose_kind(10, "lsh")


def test_flat_search_equals_numpy_and_blocked_exact_search():
    data, queries = unit(3000, 32), unit(5, 32, seed=1)
    searcher, spec = vectors.build(data, "flat")
    scores, positions = searcher.search(queries, 10)
    expected = np.argsort(-(queries @ data.T), axis=1)[:, :10]
    np.testing.assert_array_equal(positions, expected)
    blocked_scores, blocked = vectors.exact_search(data, queries, 10, block=700)
    np.testing.assert_array_equal(blocked, expected)
    np.testing.assert_allclose(blocked_scores, scores, atol=1e-5)
    assert spec.recall_at_10 == 1.0


@pytest.mark.parametrize("kind", ["ivf", "hnsw"])
def test_approximate_structures_are_tuned_to_the_target_recall(kind, tmp_path):
    data = clustered(4000, 32)
    searcher, spec = vectors.build(data, kind)
    assert spec.kind == kind and spec.recall_at_10 >= vectors.TARGET_RECALL
    vectors.save(searcher, spec, tmp_path)
    loaded = vectors.load(spec, tmp_path, data)
    assert vectors.measure_recall(loaded, data) == pytest.approx(spec.recall_at_10)


def test_binary_codes_take_32x_less_memory_and_rescoring_recovers_recall():
    data = clustered(5000, 256)
    codes = binary.sign_codes(data)
    assert codes.shape == (5000, 32) and codes.nbytes * 32 == data.nbytes
    searcher = binary.BinarySearcher(binary.build_binary_index(data), data, rescore_factor=10)
    assert vectors.measure_recall(searcher, data) >= 0.95
    queries = data[:3]
    scores, positions = searcher.search(queries, 5)
    np.testing.assert_array_equal(positions[:, 0], [0, 1, 2])  # each vector finds itself
    np.testing.assert_allclose(
        scores, np.take_along_axis(queries @ data.T, positions, 1), atol=1e-5
    )


def test_searchers_pad_when_asking_for_more_than_indexed():
    data = unit(3, 8)
    for searcher in (
        vectors.flat_searcher(data),
        binary.BinarySearcher(binary.build_binary_index(data), data),
    ):
        scores, positions = searcher.search(data[:1], 5)
        assert sorted(positions[0, :3]) == [0, 1, 2] and list(positions[0, 3:]) == [-1, -1]
        assert np.isneginf(scores[0, 3:]).all()
