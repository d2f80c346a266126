"""The MMEB harness against VLM2Vec's own rules and an independent metric library.

VLM2Vec references (TIGER-AI-Lab/VLM2Vec; ``v1`` branch = 28fdbdd, ``main`` = 6e1e1d4):
V1 ``eval.py`` lines 157-168 and ``evaluation/eval_utils.py`` lines 6-17 (argmax == 0);
V2 ``eval.py`` lines 323-343 (ranked candidate names, label = first candidate's name),
``src/utils/eval_utils/metrics.py`` lines 73-83 (hit@k by name) and
``experiments/report_score_v2.py`` lines 88-92 and 186-203 (per-modality means).
"""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import pytrec_eval
from mmeb_official import write_duplicate_fixture
from test_eval_support import E1, E2, E3, LookupEmbedder, RandomEmbedder

from mmembed import cli
from mmembed.eval import MMEBOptions, evaluate_mmeb
from mmembed.eval.data import DataError, MediaRoots, load_examples, to_input
from mmembed.eval.mmeb import item_locations
from mmembed.inputs import Document, Image, Video

DUPLICATE_SETS = ["ImageNet-1K", "OK-VQA", "MSCOCO_t2i", "MSCOCO"]


@pytest.fixture(scope="module")
def duplicates(tmp_path_factory):
    return write_duplicate_fixture(tmp_path_factory.mktemp("dup"), duplicate=True)


def _unit(embedder, item, roots) -> np.ndarray:
    vector = embedder.vector(to_input(item, roots, "removed")).astype(np.float64)
    return vector / np.linalg.norm(vector)


def vlm2vec_scores(data_dir, dataset, embedder) -> tuple[float, float]:
    """hit@1 the way VLM2Vec computes it, from the same vectors: V1's ``argmax == 0`` and V2's
    "is the top-ranked candidate's name the label"."""
    roots = MediaRoots(data_dir / "eval_images", data_dir / "videos")
    rows = load_examples([data_dir / f"{dataset}.jsonl"], dataset=dataset).examples
    v1 = v2 = 0
    for row in rows:
        query = _unit(embedder, row.query, roots)
        candidates = np.stack([_unit(embedder, c, roots) for c in row.candidates])
        scores = candidates @ query
        v1 += int(np.argmax(scores) == 0)
        names = row.candidates  # V2 names a candidate by its text and path
        order = np.argsort(-scores, kind="stable")
        v2 += int(names[order[0]] == names[0])
    return v1 / len(rows), v2 / len(rows)


def test_official_rule_is_vlm2vec_argmax_with_duplicated_positives(duplicates):
    embedder = RandomEmbedder(seed=3)
    official = evaluate_mmeb(embedder, duplicates, DUPLICATE_SETS)
    pessimistic = evaluate_mmeb(
        embedder, duplicates, DUPLICATE_SETS, options=MMEBOptions(ties="pessimistic")
    )
    for name in DUPLICATE_SETS:
        v1, v2 = vlm2vec_scores(duplicates, name, embedder)
        result = official.datasets[name]
        assert result.score == pytest.approx(v1) == pytest.approx(v2), name
        assert result.duplicated_positives == 3 and result.tied_queries == 0
        # A repeated positive ties with itself: when ties lose, exactly the repeated queries
        # whose positive beats every other candidate turn from hits into misses.
        lost = pessimistic.datasets[name]
        turned = sum(1 for i in (0, 2, 4) if _wins(duplicates, name, i))
        queries = len((duplicates / f"{name}.jsonl").read_text().splitlines())
        assert result.score - lost.score == pytest.approx(turned / queries), name
        assert lost.tied_queries == turned
    drop = sum(official.datasets[n].score - pessimistic.datasets[n].score for n in DUPLICATE_SETS)
    assert drop > 0  # the fixture exercises the rule


def _wins(data_dir, dataset, index) -> bool:
    """Whether query ``index``'s positive outscores every other (different) candidate."""
    embedder = RandomEmbedder(seed=3)
    roots = MediaRoots(data_dir / "eval_images", data_dir / "videos")
    row = load_examples([data_dir / f"{dataset}.jsonl"]).examples[index]
    query = _unit(embedder, row.query, roots)
    scores = [float(_unit(embedder, c, roots) @ query) for c in row.candidates]
    return all(
        scores[0] > s for c, s in zip(row.candidates, scores, strict=True) if c != row.candidates[0]
    )


def test_ranking_metrics_equal_trec_eval(tmp_path):
    """nDCG@k, recall@k, MRR@10 and hit@1 of the harness against pytrec_eval on the same
    vectors; random continuous scores, so no tie rule is involved and trec_eval ranks alone."""
    rng = np.random.default_rng(0)
    pool = [f"page {i}" for i in range(40)]
    table = {f"T:{text}": rng.standard_normal(16) for text in pool}
    rows, qrels = [], {}
    for q in range(25):
        query = f"question {q}"
        table[f"T:{query}"] = rng.standard_normal(16)
        chosen = list(rng.choice(len(pool), size=12, replace=False))
        grades = [int(g) for g in rng.choice([0, 0, 0, 1, 2], size=12)]
        grades[0] = max(grades[0], 1)
        rows.append(
            {
                "qry_text": query,
                "qry_img_path": "",
                "tgt_text": [pool[i] for i in chosen],
                "tgt_img_path": [""] * 12,
                "tgt_relevance": grades,
            }
        )
        qrels[query] = {pool[i]: g for i, g in zip(chosen, grades, strict=True)}
    (tmp_path / "ViDoRe_arxivqa.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    embedder = LookupEmbedder(table)
    result = evaluate_mmeb(embedder, tmp_path, ["ViDoRe_arxivqa"]).datasets["ViDoRe_arxivqa"]

    def unit(key):
        vector = np.asarray(table[key], np.float32)
        return vector / np.linalg.norm(vector)

    # V2 ranks visual documents against the whole corpus: every page any row lists
    corpus = list(dict.fromkeys(text for row in rows for text in row["tgt_text"]))
    run, top10 = {}, {}
    for row in rows:
        query = unit("T:" + row["qry_text"])
        scores = {text: float(unit("T:" + text) @ query) for text in corpus}
        run[row["qry_text"]] = scores
        best = sorted(scores, key=scores.get, reverse=True)[:10]
        top10[row["qry_text"]] = {text: scores[text] for text in best}
    measures = {"ndcg_cut.5", "ndcg_cut.10", "recall.1", "recall.5", "recall.10", "success.1"}
    trec = pytrec_eval.RelevanceEvaluator(qrels, measures).evaluate(run)
    reciprocal = pytrec_eval.RelevanceEvaluator(qrels, {"recip_rank"}).evaluate(top10)

    def mean(per_query, key):
        return float(np.mean([values[key] for values in per_query.values()]))

    expected = {
        "ndcg@5": mean(trec, "ndcg_cut_5"),
        "ndcg@10": mean(trec, "ndcg_cut_10"),
        "recall@1": mean(trec, "recall_1"),
        "recall@5": mean(trec, "recall_5"),
        "recall@10": mean(trec, "recall_10"),
        "mrr@10": mean(reciprocal, "recip_rank"),
        "hit@1": mean(trec, "success_1"),
    }
    for name, value in expected.items():
        assert result.metrics[name] == pytest.approx(value, abs=1e-12), name
    assert 0.05 < result.metrics["ndcg@5"] < 0.95  # neither trivial nor hopeless


def test_v2_aggregates_per_modality_and_prints_no_overall(tmp_path):
    """VLM2Vec-V2's report_score_v2.py prints one mean of datasets per modality, no overall."""

    def write(name, query, texts, relevance=None):
        row = {"qry_text": query, "qry_img_path": "", "tgt_text": texts}
        row["tgt_img_path"] = [""] * len(texts)
        if relevance:
            row["tgt_relevance"] = relevance
        (tmp_path / f"{name}.jsonl").write_text(json.dumps(row) + "\n")

    table = {"T:q": E1, "T:a": E1, "T:b": E2, "T:c": 0.6 * E1 + 0.8 * E3}
    write("OK-VQA", "q", ["b", "a"])  # image part: miss -> 0
    write("Video-MME", "q", ["a", "b"])  # video: hit -> 1
    write("ViDoRe_arxivqa", "q", ["c", "a", "b"], [1, 0, 0])  # visdoc: c ranks 2nd
    report = evaluate_mmeb(LookupEmbedder(table), tmp_path, ["all"])
    ndcg = 1 / np.log2(3)
    v2 = report.summary["mmeb-v2"]
    assert v2["Image"]["score"] == 0.0 and v2["Image"]["of"] == 36
    assert v2["Video"]["score"] == 1.0 and v2["Video"]["of"] == 18
    assert v2["VisDoc"]["score"] == pytest.approx(ndcg) and v2["VisDoc"]["metric"] == "ndcg@5"
    assert "Overall" not in v2 and all(c["aggregate"] == "mean of datasets" for c in v2.values())
    assert "## MMEB-V2 by modality (image and video hit@1" in report.to_markdown()


def _parquet(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), path)


ROW = {"qry_text": "q", "qry_img_path": "", "tgt_text": ["a", "b"], "tgt_img_path": ["", ""]}


@pytest.mark.parametrize("column", ["qry_text", "qry_img_path", "tgt_text", "tgt_img_path"])
def test_a_missing_column_names_dataset_file_and_column(tmp_path, column):
    rows = [{k: v for k, v in ROW.items() if k != column}]
    _parquet(tmp_path / "GQA" / "test-00000-of-00001.parquet", rows)
    with pytest.raises(DataError, match=rf"^GQA: .*test-00000-of-00001.parquet: .*'{column}'"):
        evaluate_mmeb(LookupEmbedder({"T:q": E1}), tmp_path, ["GQA"])
    (tmp_path / "VizWiz.jsonl").write_text(json.dumps(rows[0]) + "\n")
    with pytest.raises(DataError, match=rf"^VizWiz: .*VizWiz.jsonl: row 0: .*'{column}'"):
        evaluate_mmeb(LookupEmbedder({"T:q": E1}), tmp_path, ["VizWiz"])


def test_empty_dataset_is_reported_and_left_out_of_the_averages(tmp_path, caplog):
    _parquet(tmp_path / "GQA" / "test-00000-of-00001.parquet", [ROW])
    empty = pa.Table.from_pylist([ROW]).slice(0, 0)
    (tmp_path / "TextVQA").mkdir()
    pq.write_table(empty, tmp_path / "TextVQA" / "test-00000-of-00001.parquet")
    table = {"T:q": E1, "T:a": E1, "T:b": E2}
    report = evaluate_mmeb(LookupEmbedder(table), tmp_path, ["GQA", "TextVQA"], tmp_path / "out")
    assert report.empty == ["TextVQA"] and "TextVQA" not in report.datasets
    assert report.summary["mmeb"]["VQA"]["score"] == 1.0
    assert (report.summary["mmeb"]["VQA"]["datasets"], report.summary["mmeb"]["VQA"]["of"]) == (
        1,
        10,
    )
    assert any("TextVQA: the data holds no rows" in w for w in report.warnings)
    saved = json.loads((tmp_path / "out" / "report.json").read_text())
    assert saved["empty"] == ["TextVQA"]


def test_bad_rows_stop_with_one_line_or_are_counted(tmp_path, monkeypatch, capsys):
    data = tmp_path / "data"
    _parquet(data / "GQA" / "test-00000-of-00001.parquet", [ROW])  # a good dataset, done first
    bad = [ROW, {**ROW, "tgt_text": ["a", 3]}, {**ROW, "tgt_img_path": ["x.jpg"]}, ROW]
    (data / "TextVQA.jsonl").write_text("".join(json.dumps(r) + "\n" for r in bad))
    table = {"T:q": E1, "T:a": E1, "T:b": E2}
    from mmembed.eval import mmeb as harness

    monkeypatch.setattr(
        harness, "_load_model", lambda name, options: LookupEmbedder(table, name=name)
    )
    if "eval" not in cli.SUBCOMMANDS:
        monkeypatch.setattr(cli, "SUBCOMMANDS", [*cli.SUBCOMMANDS, "eval"])
    out = tmp_path / "out"
    argv = ["eval", "mmeb", "--model", "mmembed-mini", "--data", str(data), "--out", str(out)]
    assert cli.main(argv + ["--datasets", "GQA", "TextVQA"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "TextVQA" in err[0] and "row 1" in err[0]
    assert "field 'tgt_text'" in err[0] and "entry 1 is int" in err[0]
    assert list(json.loads((out / "report.json").read_text())["datasets"]) == ["GQA"]
    assert cli.main(argv + ["--datasets", "TextVQA", "--skip-bad-items"]) == 0
    result = json.loads((out / "report.json").read_text())["datasets"]["TextVQA"]
    assert result["skipped_rows"] == 2 and result["num_queries"] == 4
    assert result["score"] == 0.5  # two good rows hit, two bad rows count as misses
    warnings = json.loads((out / "report.json").read_text())["warnings"]
    assert any("2 malformed rows were skipped" in w and "lower bound" in w for w in warnings)


def test_errors_while_embedding_name_dataset_row_and_field(tmp_path):
    rows = [ROW, {**ROW, "tgt_img_path": ["", "missing.jpg"]}]
    (tmp_path / "GQA.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    examples = load_examples([tmp_path / "GQA.jsonl"]).examples
    where = item_locations(examples)
    assert where[examples[1].candidates[1]] == "row 1, tgt_img_path[1]"
    table = {"T:q": E1, "T:a": E1, "T:b": E2}
    with pytest.raises(Exception, match=r"^GQA: row 1, tgt_img_path\[1\], text 'b'"):
        evaluate_mmeb(LookupEmbedder(table), tmp_path, ["GQA"])


def test_official_image_layout_is_found(tmp_path):
    (tmp_path / "eval_images" / "GQA").mkdir(parents=True)
    (tmp_path / "eval_images" / "GQA" / "a.jpg").write_bytes(b"")
    row = {**ROW, "qry_img_path": "GQA/a.jpg", "qry_text": "<|image_1|>\nq\n"}
    (tmp_path / "GQA.jsonl").write_text(json.dumps(row) + "\n")
    seen = []

    class Recorder(LookupEmbedder):
        def vector(self, item):
            seen.append(item)
            return np.asarray(E1 if isinstance(item, Document) else E2, np.float32)

    evaluate_mmeb(Recorder({"-": E1}), tmp_path, ["GQA"])
    query = next(item for item in seen if isinstance(item, Document))
    assert query.segments[0] == Image(str(tmp_path / "eval_images" / "GQA" / "a.jpg"))


def test_video_items_keep_their_instruction(tmp_path):
    roots = MediaRoots(tmp_path, tmp_path / "videos")
    from mmembed.eval.data import RowItem

    item = RowItem("<|video_pad|>\nRecognize the category of the video content.\n", video="v.mp4")
    document = to_input(item, roots, "in_place")
    video = Video(str(tmp_path / "videos" / "v.mp4"), 8)
    assert document == Document([video, "\nRecognize the category of the video content.\n"])
    no_token = to_input(RowItem("Represent the given video.", video="v.mp4"), roots, "in_place")
    assert no_token == Document([video, "Represent the given video."])
