"""The MMEB harness on a small fixture of real photos, against hand-computed hit@1."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from test_eval_support import (
    E1,
    E2,
    EXPECTED,
    EXPECTED_PESSIMISTIC,
    EXPECTED_TIES,
    EXPECTED_TIES_PESSIMISTIC,
    LookupEmbedder,
    RandomEmbedder,
    build_fixture,
)

from mmembed import cli
from mmembed.errors import InputError
from mmembed.eval import MMEBOptions, evaluate_mmeb
from mmembed.eval import mmeb as harness
from mmembed.eval.metrics import chance_level

FIXTURE_SETS = list(EXPECTED)


@pytest.fixture(scope="module")
def fixture(tmp_path_factory):
    return build_fixture(tmp_path_factory.mktemp("mmeb") / "data")


@pytest.fixture(scope="module")
def report_dir(fixture, tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    evaluate_mmeb(LookupEmbedder(fixture.table), fixture.data_dir, out_dir=out)
    return out


def test_scores_match_the_hand_computed_values(fixture):
    report = evaluate_mmeb(LookupEmbedder(fixture.table), fixture.data_dir)
    assert set(report.datasets) == set(EXPECTED)
    for name, expected in EXPECTED.items():
        result = report.datasets[name]
        assert result.score == pytest.approx(expected), name
        assert result.metric == "hit@1" and result.metrics == {"hit@1": result.score}
        assert result.tied_queries == EXPECTED_TIES.get(name, 0), name
    # the one tied query changes a reported number: the report says so, with the range
    assert report.warnings == [
        "ImageNet-1K: ties decide hit@1 for 1 of 4 queries: 75.0 under the official rule, "
        "50.0 if ties are misses, 75.0 if they are hits."
    ]
    assert len(report.missing) == 30  # the rest of the registry: reported, not fatal


def test_each_unique_item_is_embedded_once(fixture):
    embedder = LookupEmbedder(fixture.table)
    report = evaluate_mmeb(embedder, fixture.data_dir, ["ImageNet-1K", "MSCOCO"])
    assert len(embedder.seen) == len(set(embedder.seen))
    imagenet = report.datasets["ImageNet-1K"]
    assert (imagenet.unique_candidates, imagenet.num_candidates) == (4, 16)  # the label set
    assert imagenet.unique_queries == 4 and imagenet.candidates_per_query_max == 4
    grounding = report.datasets["MSCOCO"]
    assert (grounding.unique_candidates, grounding.num_candidates) == (5, 6)


def test_report_json(report_dir):
    data = json.loads((report_dir / "report.json").read_text())
    assert list(data["datasets"]) == [
        "ImageNet-1K",
        "Place365",
        "OK-VQA",
        "MSCOCO_t2i",
        "MSCOCO_i2t",
        "MSCOCO",
    ]
    for name, entry in data["datasets"].items():
        assert entry["score"] == pytest.approx(EXPECTED[name]) and 0.0 <= entry["score"] <= 1.0
        assert entry["metric"] == "hit@1"
        for key in [
            "num_queries",
            "num_candidates",
            "unique_candidates",
            "model",
            "mmembed_version",
            "data_revision",
            "wall_time_s",
        ]:
            assert key in entry, key
        assert entry["model"] == "lookup" and entry["data_revision"] == "unknown"
        assert (report_dir / "datasets" / f"{name}.json").is_file()
    summary = data["summary"]["mmeb"]
    assert summary["Classification"] == {
        "score": pytest.approx((3 / 4 + 2 / 3) / 2),
        "chance": pytest.approx((1 / 4 + 1 / 3) / 2),
        "metric": "hit@1",
        "aggregate": "mean of datasets",
        "datasets": 2,
        "of": 10,
    }
    assert summary["Retrieval"]["score"] == pytest.approx((2 / 3 + 1) / 2)
    assert summary["IND"]["score"] == pytest.approx((3 / 4 + 2 / 3 + 2 / 3 + 1 + 1) / 5)
    assert summary["OOD"]["score"] == pytest.approx(2 / 3)
    assert summary["Overall"]["score"] == pytest.approx((3 / 4 + 2 / 3 + 2 / 3 + 1 + 2 / 3 + 1) / 6)
    assert (summary["Overall"]["datasets"], summary["Overall"]["of"]) == (6, 36)
    assert (data["unique_candidates"], data["total_candidates"]) == (22, 51)
    assert data["tie_rule"].startswith("official") and "N24News" in data["missing"]
    imagenet = data["datasets"]["ImageNet-1K"]
    assert (imagenet["tie_rule"], imagenet["tied_queries"]) == ("official", 1)
    assert data["datasets"]["MSCOCO"]["duplicated_positives"] == 1


def test_report_markdown(report_dir):
    text = (report_dir / "report.md").read_text()
    header = "|  | Classification (2/10) | VQA (1/10) | Retrieval (2/12) | Grounding (1/4) | IND (5/20) | OOD (1/16) | Overall (6/36) |"
    assert "## MMEB (hit@1, %; each column the mean of its datasets)" in text
    assert header in text
    assert "| lookup | 70.8 | 66.7 | 83.3 | 100.0 | 81.7 | 66.7 | 79.2 |" in text
    assert "| chance | 29.2 | 44.4 | 41.7 | 50.0 | 40.6 | 33.3 | 39.4 |" in text
    row = "| Classification | ImageNet-1K | IND | hit@1 | 75.0 | 25.0 | 4 | own candidates | 4 / 16 | 1 |"
    assert row in text
    assert "22 unique of 51 candidate slots" in text
    assert text.count("Warning") == 1 and "ties decide hit@1 for 1 of 4" in text


def test_random_embeddings_trigger_the_sanity_warning(fixture, tmp_path):
    report = evaluate_mmeb(RandomEmbedder(), fixture.data_dir, out_dir=tmp_path)
    assert any("chance level" in w for w in report.warnings)
    assert "**Warning:** hit@1 is at chance level" in (tmp_path / "report.md").read_text()
    assert json.loads((tmp_path / "report.json").read_text())["warnings"] == report.warnings


def test_tie_rules_on_the_fixture(fixture):
    """Official (default) against pessimistic ties, on the same vectors."""
    pessimistic = MMEBOptions(ties="pessimistic")
    report = evaluate_mmeb(LookupEmbedder(fixture.table), fixture.data_dir, options=pessimistic)
    for name, expected in EXPECTED_PESSIMISTIC.items():
        result = report.datasets[name]
        assert result.score == pytest.approx(expected), name
        assert result.tied_queries == EXPECTED_TIES_PESSIMISTIC.get(name, 0), name
        assert result.tie_rule == "pessimistic"
    assert report.tie_rule.startswith("pessimistic")


def test_constant_embeddings_are_all_ties(fixture):
    """A model that cannot tell candidates apart: 0 when ties are misses, 100 under the official
    rule (the positive wins every tie), with a warning either way."""
    table = dict.fromkeys(fixture.table, E1)
    options = MMEBOptions(ties="pessimistic")
    report = evaluate_mmeb(LookupEmbedder(table), fixture.data_dir, FIXTURE_SETS, options=options)
    assert all(result.score == 0.0 for result in report.datasets.values())  # every query is a tie
    assert report.warnings
    report = evaluate_mmeb(LookupEmbedder(table), fixture.data_dir, FIXTURE_SETS)
    assert all(result.score == 1.0 for result in report.datasets.values())
    tie_warnings = [w for w in report.warnings if "ties decide hit@1" in w]
    assert len(tie_warnings) == len(FIXTURE_SETS)
    assert all("100.0 under the official rule, 0.0 if ties are misses" in w for w in tie_warnings)


def test_bad_items_raise_or_are_counted(fixture, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(fixture.data_dir, data)
    (data / "images" / "MSCOCO_t2i" / "rocket.jpg").unlink()
    with pytest.raises(InputError, match="MSCOCO_t2i.*rocket.jpg"):
        evaluate_mmeb(LookupEmbedder(fixture.table), data, ["MSCOCO_t2i"])
    options = MMEBOptions(on_error="skip")
    report = evaluate_mmeb(LookupEmbedder(fixture.table), data, ["MSCOCO_t2i"], options=options)
    result = report.datasets["MSCOCO_t2i"]
    assert result.failed_items == 1
    # the rocket query now loses its correct candidate; the cat query is unaffected
    assert result.score == pytest.approx(1 / 3)
    assert any("could not be embedded" in w for w in report.warnings)


def test_results_of_another_model_are_not_mixed(fixture, tmp_path):
    evaluate_mmeb(
        LookupEmbedder(fixture.table, name="a"), fixture.data_dir, ["MSCOCO_i2t"], tmp_path
    )
    with pytest.raises(ValueError, match="another output folder"):
        evaluate_mmeb(
            LookupEmbedder(fixture.table, name="b"), fixture.data_dir, ["MSCOCO_i2t"], tmp_path
        )
    options = MMEBOptions(overwrite=True)
    report = evaluate_mmeb(
        LookupEmbedder(fixture.table, name="b"), fixture.data_dir, ["MSCOCO_i2t"], tmp_path, options
    )
    assert report.datasets["MSCOCO_i2t"].model == "b"


def test_graded_relevance_for_visual_document_tasks(tmp_path):
    row = {
        "qry_text": "Which page shows revenue?",
        "qry_img_path": "",
        "tgt_text": ["A", "B", "C"],
        "tgt_img_path": ["", "", ""],
        "tgt_relevance": [1, 0, 1],
    }
    (tmp_path / "ViDoRe_arxivqa.jsonl").write_text(json.dumps(row) + "\n")
    table = {"T:Which page shows revenue?": E1, "T:A": E1, "T:B": 0.8 * E1 + 0.6 * E2, "T:C": E2}
    report = evaluate_mmeb(LookupEmbedder(table), tmp_path, ["mmeb-v2-visdoc"])
    result = report.datasets["ViDoRe_arxivqa"]
    # ranking A (1.0), B (0.8), C (0.0) -> relevance [1, 0, 1]
    ndcg = (1 + 1 / np.log2(4)) / (1 + 1 / np.log2(3))
    assert (result.metric, result.score) == ("ndcg@5", pytest.approx(ndcg))
    assert result.metrics["recall@1"] == 0.5 and result.metrics["recall@5"] == 1.0
    assert result.metrics["hit@1"] == 1.0 and result.metrics["mrr@10"] == 1.0
    assert result.ranking == "corpus"  # V2 ranks visual documents against the corpus
    assert result.chance == pytest.approx(chance_level("ndcg@5", [1, 0, 1]))
    assert result.chance_by_metric["hit@1"] == pytest.approx(2 / 3)
    assert "MMEB-V2 visual documents (ndcg@5, %; each column the mean" in report.to_markdown()


def _cli(argv, monkeypatch):
    """Run ``mmembed ...`` through the real entry point, with ``eval`` listed."""
    if "eval" not in cli.SUBCOMMANDS:
        monkeypatch.setattr(cli, "SUBCOMMANDS", [*cli.SUBCOMMANDS, "eval"])
    return cli.main(argv)


def test_cli(fixture, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(
        harness, "_load_model", lambda name, options: LookupEmbedder(fixture.table, name=name)
    )
    out = tmp_path / "report"
    argv = [
        "eval",
        "mmeb",
        "--model",
        "mmembed-mini",
        "--data",
        str(fixture.data_dir),
        "--out",
        str(out),
    ]
    assert _cli(argv + ["--datasets", "MSCOCO_i2t", "OK-VQA"], monkeypatch) == 0
    printed = capsys.readouterr().out
    assert "| mmembed-mini | – | 66.7 | 100.0 | – |" in printed
    assert json.loads((out / "report.json").read_text())["datasets"]["OK-VQA"][
        "score"
    ] == pytest.approx(2 / 3)
    # --compare: our own prediction files against a copy with one changed line
    official = tmp_path / "official"
    official.mkdir()
    lines = (out / "OK-VQA_pred.txt").read_text().splitlines(keepends=True)
    (official / "OK-VQA_pred.txt").write_text("".join(lines[:-1] + ["('tea', '')\n"]))
    shutil.copy(out / "MSCOCO_i2t_pred.txt", official)
    compare = ["--datasets", "MSCOCO_i2t", "OK-VQA", "--compare", str(official)]
    assert _cli(argv + compare, monkeypatch) == 0
    printed = capsys.readouterr().out
    assert "MSCOCO_i2t: 2/2 top predictions agree" in printed
    assert "OK-VQA: 2/3 top predictions agree" in printed and "official \"('tea', '')\"" in printed
    assert _cli(argv + ["--datasets", "NoSuchSet"], monkeypatch) == 2
    assert "unknown MMEB dataset 'NoSuchSet'" in capsys.readouterr().err
    assert (
        _cli(argv[:-2] + ["--out", str(tmp_path / "empty"), "--data", str(tmp_path)], monkeypatch)
        == 1
    )


def test_cli_missing_folder_says_so_and_writes_nothing(tmp_path, monkeypatch, capsys):
    def never(name, options):
        raise AssertionError("the model must not load")

    monkeypatch.setattr(harness, "_load_model", never)
    out = tmp_path / "report"
    argv = [
        "eval",
        "mmeb",
        "--model",
        "mmembed-mini",
        "--data",
        str(tmp_path / "nope"),
        "--out",
        str(out),
    ]
    assert _cli(argv, monkeypatch) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"mmembed eval mmeb: {tmp_path / 'nope'}: no such data folder (see --download)"]
    assert not out.exists()
    # an unknown dataset is refused before the model loads, too
    assert (
        _cli(argv[:-4] + ["--data", str(tmp_path), "--datasets", "ImageNet-2K"], monkeypatch) == 2
    )
    assert "unknown MMEB dataset 'ImageNet-2K'" in capsys.readouterr().err


def test_report_files_are_readable_by_all(report_dir):
    for path in [
        report_dir / "report.json",
        report_dir / "report.md",
        report_dir / "OK-VQA_pred.txt",
    ]:
        assert path.stat().st_mode & 0o777 == 0o644, path
