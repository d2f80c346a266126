"""Every MMEB task family scored by the harness equals the official computation, written
independently in ``mmeb_official`` from VLM2Vec's code, on the same vectors: V1's argmax per row,
V2's argsort per row ("local") or against the corpus ("global"), V2's names and nDCG.

Two embedders: one with only three distinct vectors (nearly every score ties, so the tie rule
decides), one with continuous random vectors. VLM2Vec-V2 calls ``np.argsort(-scores)`` without
``kind``; numpy 2 on AVX-512 machines sorts ties there in no fixed order, so the official
computation here uses the stable order that V2's rule means.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from mmeb_official import (
    FAMILIES,
    HashEmbedder,
    official_v1_hit_at_1,
    official_v1_predictions,
    official_v2_predictions,
    official_v2_scores,
    write_family_fixture,
)

from mmembed.eval import MMEBOptions, evaluate_mmeb, get_dataset
from mmembed.eval.data import MediaRoots, RowItem, to_input
from mmembed.eval.predictions import compare_predictions


@pytest.fixture(scope="module")
def families(tmp_path_factory):
    root = tmp_path_factory.mktemp("families")
    return root, write_family_fixture(root)


@pytest.mark.parametrize("levels", [3, None], ids=["ties", "continuous"])
def test_every_family_equals_the_official_computation(families, levels):
    root, data = families
    embedder = HashEmbedder(levels)
    options = MMEBOptions(image_dir=root / "images")
    report = evaluate_mmeb(embedder, root, list(FAMILIES), options=options)
    roots = MediaRoots(root / "images", root / "videos")

    def vector(text: str, image: str) -> np.ndarray:
        return embedder.vector(to_input(RowItem(text, image), roots, "removed"))

    tied = 0
    for dataset, (rows, extra) in data.items():
        spec = get_dataset(dataset)
        result = report.datasets[dataset]
        if dataset in ("ImageNet-1K", "OK-VQA", "MSCOCO_t2i", "MSCOCO"):
            expected = {"hit@1": official_v1_hit_at_1(rows, vector)}
        else:
            eval_type = "global" if spec.corpus_ranked else "local"
            pairs = [(e["tgt_text"], e["tgt_img_path"]) for e in extra]
            expected = official_v2_scores(rows, vector, eval_type, pairs)
            assert result.ranking == ("corpus" if spec.corpus_ranked else "per row")
        for name in spec.metrics:
            assert result.metrics[name] == pytest.approx(expected[name], abs=1e-12), (
                dataset,
                name,
            )
        tied += result.tied_queries
    assert (tied > 0) == (levels is not None)  # the tie fixture really exercises ties


def test_global_sets_rank_against_the_corpus(families):
    """V2's global sets rank every query against every candidate of the dataset."""
    root, _ = families
    report = evaluate_mmeb(HashEmbedder(None), root, ["MSR-VTT", "ViDoRe_arxivqa"])
    for result in report.datasets.values():
        assert result.candidates_per_query_min == result.unique_candidates  # the corpus


def test_prediction_files_are_the_official_ones_and_compare_finds_a_change(families, tmp_path):
    root, data = families
    embedder = HashEmbedder(3)
    out = tmp_path / "out"
    evaluate_mmeb(embedder, root, list(FAMILIES), out, MMEBOptions(image_dir=root / "images"))
    roots = MediaRoots(root / "images", root / "videos")

    def vector(text: str, image: str) -> np.ndarray:
        return embedder.vector(to_input(RowItem(text, image), roots, "removed"))

    official = tmp_path / "official"
    official.mkdir()
    for dataset, (rows, extra) in data.items():
        spec = get_dataset(dataset)
        if spec.benchmark.value == "mmeb":
            text = "".join(official_v1_predictions(rows, vector))
            assert (out / f"{dataset}_pred.txt").read_text() == text, dataset
        else:
            eval_type = "global" if spec.corpus_ranked else "local"
            pairs = [(e["tgt_text"], e["tgt_img_path"]) for e in extra]
            expected = official_v2_predictions(rows, vector, eval_type, pairs)
            text = "".join(json.dumps(p) + "\n" for p in expected)
            assert (out / f"{dataset}_pred.jsonl").read_text() == text, dataset
        suffix = "txt" if spec.benchmark.value == "mmeb" else "jsonl"
        (official / f"{dataset}_pred.{suffix}").write_text(text)
    comparisons = compare_predictions(out, official, list(FAMILIES))
    assert all(c.agree == c.queries == 8 for c in comparisons)
    # one changed official line is found and shown
    lines = (official / "OK-VQA_pred.txt").read_text().splitlines(keepends=True)
    lines[3] = "('something else', '')\n"
    (official / "OK-VQA_pred.txt").write_text("".join(lines))
    (changed,) = compare_predictions(out, official, ["OK-VQA"])
    assert (changed.agree, changed.queries) == (7, 8)
    assert changed.describe()[1].startswith("  query 3: mmembed ")
    assert "official \"('something else', '')\"" in changed.describe()[1]
