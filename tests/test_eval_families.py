"""Every MMEB task family scored by the harness equals the official computation, written
independently in ``mmeb_official`` from VLM2Vec's code, on the same vectors: V1's argmax per row,
V2's argsort per row ("local") or against the corpus ("global"), V2's names and nDCG.

Two embedders: one with only three distinct vectors (nearly every score ties, so the tie rule
decides), one with continuous random vectors. VLM2Vec-V2 calls ``np.argsort(-scores)`` without
``kind``; numpy 2 on AVX-512 machines sorts ties there in no fixed order, so the official
computation here uses the stable order that V2's rule means.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from mmeb_official import (
    official_v1_hit_at_1,
    official_v1_predictions,
    official_v2_predictions,
    official_v2_scores,
)

from mmembed.eval import MMEBOptions, evaluate_mmeb, get_dataset
from mmembed.eval.data import Item, MediaRoots, to_input
from mmembed.eval.predictions import compare_predictions
from mmembed.inputs import Document, Image, Text

# dataset -> family (V1 meta-task or V2 task family)
FAMILIES = {
    "ImageNet-1K": "V1 classification",
    "OK-VQA": "V1 VQA",
    "MSCOCO_t2i": "V1 retrieval",
    "MSCOCO": "V1 grounding",
    "SmthSmthV2": "V2 video classification (local)",
    "HMDB51": "V2 video classification (global)",
    "Video-MME": "V2 video QA (local)",
    "MSR-VTT": "V2 video retrieval (global)",
    "QVHighlight": "V2 moment retrieval (local)",
    "ViDoRe_arxivqa": "V2 ViDoRe (global)",
    "VisRAG_ArxivQA": "V2 VisRAG (global)",
}


class HashEmbedder:
    """A fixed vector per input: one of ``levels`` basis vectors (ties everywhere), or a
    continuous random one when ``levels`` is None."""

    def __init__(self, levels: int | None, dim: int = 8):
        self.levels, self.dim, self.name = levels, dim, f"hash-{levels}"

    def key(self, item) -> str:
        if isinstance(item, Text):
            return item.text
        if isinstance(item, Image):
            return f"I:{Path(str(item.source)).name}"
        assert isinstance(item, Document)
        return "|".join(self.key(s) if isinstance(s, Image) else str(s) for s in item.segments)

    def vector(self, item) -> np.ndarray:
        digest = hashlib.sha256(self.key(item).encode()).digest()
        seed = int.from_bytes(digest[:8], "little")
        if self.levels is not None:
            basis = np.random.default_rng(7).standard_normal((self.levels, self.dim))
            vector = basis[seed % self.levels]
        else:
            vector = np.random.default_rng(seed).standard_normal(self.dim)
        return (vector / np.linalg.norm(vector)).astype(np.float32)

    def encode(self, items, instruction=None, batch_size=32, normalize=True, **_):
        return np.stack([self.vector(item) for item in items])


def _rows(dataset: str, rng: np.random.Generator) -> tuple[list[dict], list[dict]]:
    """Official-format rows for one dataset, and extra corpus entries."""
    spec = get_dataset(dataset)
    labels = [f"{dataset} label {i}" for i in range(7)]
    rows: list[dict] = []
    for q in range(8):
        query = f"{dataset} query {q}"
        if spec.corpus_ranked:
            positives = 1 + (q % 3 == 0 and dataset.startswith(("ViDoRe", "VisRAG")))
            chosen = [str(x) for x in rng.choice(labels, size=positives, replace=False)]
            rows.append(_row(query, chosen, dataset))
            continue
        chosen = [str(x) for x in rng.choice(labels, size=5, replace=False)]
        if q % 4 == 1:
            chosen[-1] = chosen[0]  # a repeated positive, as in the release
        rows.append(_row(query, chosen, dataset))
    extra = [{"tgt_text": label, "tgt_img_path": ""} for label in labels]
    return rows, extra if dataset == "HMDB51" else []


def _row(query: str, texts: list[str], dataset: str) -> dict:
    images = dataset == "MSCOCO_t2i"  # image candidates: V1 keys (text, path), V2 names paths
    return {
        "qry_text": query,
        "qry_img_path": "",
        "tgt_text": ["<|image_1|> Represent the given image."] * len(texts) if images else texts,
        "tgt_img_path": [f"{dataset}/{t.split()[-1]}.jpg" for t in texts]
        if images
        else [""] * len(texts),
        "tgt_relevance": [1] * len(texts)
        if get_dataset(dataset).corpus_ranked
        else [1] + [0] * (len(texts) - 1),
    }


@pytest.fixture(scope="module")
def families(tmp_path_factory):
    root = tmp_path_factory.mktemp("families")
    rng = np.random.default_rng(0)
    data = {}
    for dataset in FAMILIES:
        rows, extra = _rows(dataset, rng)
        data[dataset] = (rows, extra)
        (root / dataset).mkdir()
        lines = "".join(json.dumps(r) + "\n" for r in rows)
        (root / dataset / "test-00000-of-00001.jsonl").write_text(lines)
        if extra:
            (root / dataset / "corpus.jsonl").write_text(
                "".join(json.dumps(e) + "\n" for e in extra)
            )
    return root, data


@pytest.mark.parametrize("levels", [3, None], ids=["ties", "continuous"])
def test_every_family_equals_the_official_computation(families, levels):
    root, data = families
    embedder = HashEmbedder(levels)
    options = MMEBOptions(image_dir=root / "images")
    report = evaluate_mmeb(embedder, root, list(FAMILIES), options=options)
    roots = MediaRoots(root / "images", root / "videos")

    def vector(text: str, image: str) -> np.ndarray:
        return embedder.vector(to_input(Item(text, image), roots, "removed"))

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
        return embedder.vector(to_input(Item(text, image), roots, "removed"))

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
