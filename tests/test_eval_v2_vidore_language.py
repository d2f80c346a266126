"""ViDoRe's language filter, as MMEB-V2 applies it: ``EVAL_DATASET_HF_PATH`` gives three ViDoRe-V2
sets the language ``"english"`` (TIGER-AI-Lab/VLM2Vec ``main`` = 6e1e1d4,
``src/constant/dataset_hf_path.py`` lines 59-64) and ``vidore_dataset.py`` (lines 80-89) keeps
the queries whose ``language`` equals it, before anything else; qrels and corpus stay whole, so
the English queries are still ranked against every page. The ``_multilingual`` sets read the
same hub files without the filter (and are the ones in V2's leaderboard).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage

from mmembed.eval import Benchmark, MMEBOptions, evaluate_mmeb, get_dataset, resolve_datasets
from mmembed.eval.data import DataError
from mmembed.eval.v2_data import read_v2
from mmembed.inputs import Document, Image

QUERIES = [
    {"query-id": 0, "query": "What share of energy is renewable?", "language": "english"},
    {"query-id": 1, "query": "Quelle part de l'énergie est renouvelable ?", "language": "french"},
    {"query-id": 2, "query": "How much water was used in 2023?", "language": "english"},
    {"query-id": 3, "query": "Wie viel Wasser wurde 2023 verbraucht?", "language": "german"},
]
QRELS = [
    {"query-id": 0, "corpus-id": 11, "score": 1},
    {"query-id": 1, "corpus-id": 11, "score": 1},
    {"query-id": 2, "corpus-id": 12, "score": 2},
    {"query-id": 3, "corpus-id": 12, "score": 2},
]


def _beir(folder, queries=QUERIES):
    for part, rows in (
        ("queries", queries),
        ("qrels", QRELS),
        ("corpus", [{"corpus-id": i} for i in (10, 11, 12, 13)]),
    ):
        (folder / part).mkdir(parents=True)
        (folder / part / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_english_sets_keep_english_queries_and_the_whole_corpus(tmp_path):
    for name in ("ViDoRe_esg_reports_v2", "ViDoRe_esg_reports_v2_multilingual"):
        _beir(tmp_path / name)
    english = read_v2(tmp_path / "ViDoRe_esg_reports_v2", "ViDoRe_esg_reports_v2")
    every = read_v2(
        tmp_path / "ViDoRe_esg_reports_v2_multilingual", "ViDoRe_esg_reports_v2_multilingual"
    )
    prefix = "Find a document image that matches the given query: "
    assert [e.query.text for e in english.examples] == [
        prefix + "What share of energy is renewable?",
        prefix + "How much water was used in 2023?",
    ]
    assert [[c.name for c in e.candidates] for e in english.examples] == [["11"], ["12"]]
    assert [e.relevance for e in english.examples] == [(1.0,), (2.0,)]
    assert [c.name for c in english.corpus] == ["10", "11", "12", "13"]
    assert [e.query.text.removeprefix(prefix) for e in every.examples] == [
        q["query"] for q in QUERIES
    ]
    assert [c.name for c in every.corpus] == ["10", "11", "12", "13"]


def test_the_filter_needs_a_language_string(tmp_path):
    _beir(tmp_path / "a", [{k: v for k, v in q.items() if k != "language"} for q in QUERIES])
    with pytest.raises(DataError, match="row 0: missing required column 'language'"):
        read_v2(tmp_path / "a", "ViDoRe_biomedical_lectures_v2")
    # without the filter the column is not read
    assert len(read_v2(tmp_path / "a", "ViDoRe_biomedical_lectures_v2_multilingual").examples) == 4
    _beir(tmp_path / "b", [{**QUERIES[0], "language": None}] + QUERIES[1:])
    with pytest.raises(DataError, match=r"queries/test.jsonl: row 0: field 'language': .*null"):
        read_v2(tmp_path / "b", "ViDoRe_economics_reports_v2")
    skipped = read_v2(tmp_path / "b", "ViDoRe_economics_reports_v2", skip_bad_rows=True)
    assert len(skipped.examples) == 1 and len(skipped.skipped) == 1


def test_english_sets_are_registered_beside_the_leaderboard(tmp_path):
    """They run by name and through ``all``; ``mmeb-v2-visdoc`` stays V2's 24 leaderboard sets,
    and the English sets get their own table, ranked against the corpus."""
    for name in ("ViDoRe_biomedical_lectures_v2", "ViDoRe_economics_reports_v2"):
        spec = get_dataset(name)
        assert spec.benchmark is Benchmark.MMEB_V2_VISDOC_ENGLISH and spec.corpus_ranked
        assert spec.metric == "ndcg@5"
    assert len(resolve_datasets(["mmeb-v2-visdoc"])) == 24
    assert "ViDoRe_esg_reports_v2" in {s.name for s in resolve_datasets(["all"])}
    _beir(tmp_path / "data" / "ViDoRe_esg_reports_v2")

    class Pages:
        """A query lands on page 12, every page on its own axis."""

        name, dim = "pages", 4

        def encode(self, items, **_):
            rows = []
            for item in items:
                parts = item.segments if isinstance(item, Document) else [item]
                pages = [int(Path(p.source).stem) - 10 for p in parts if isinstance(p, Image)]
                rows.append(np.eye(4, dtype=np.float32)[pages[0] if pages else 2])
            return np.asarray(rows)

    images = tmp_path / "images" / "ViDoRe_esg_reports_v2"
    images.mkdir(parents=True)
    for page in (10, 11, 12, 13):
        PILImage.new("RGB", (8, 8), (page, 0, 0)).save(images / f"{page}.png")
    options = MMEBOptions(image_dir=tmp_path / "images", placeholders="removed")
    report = evaluate_mmeb(Pages(), tmp_path / "data", ["ViDoRe_esg_reports_v2"], None, options)
    result = report.datasets["ViDoRe_esg_reports_v2"]
    assert result.ranking == "corpus" and result.num_queries == 2
    assert result.unique_candidates == 4  # the whole corpus, English filter or not
    assert result.metrics["hit@1"] == 0.5  # query 2's page 12 first, query 0's page 11 not
    assert "English-only ViDoRe-V2" in report.to_markdown()
