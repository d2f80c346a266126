"""``python -m benchmarks.pages`` runs every page route end to end on the unseen-font pages and
reports recall and pages/s per route (no speed is asserted: speed lives in ``benchmarks/``)."""

from __future__ import annotations

import json
import shutil

from debian import HELD_OUT_FONTS, needs

from benchmarks import pages


@needs("fortunes", *HELD_OUT_FONTS)  # the unseen-font set: held-out fortunes in those fonts
def test_pages_benchmark_reports_each_route(tmp_path, one_torch_thread, monkeypatch):
    # main() limits Tesseract's OpenMP threads through the environment; undone after the test,
    # so later tests' subprocesses (torch) do not inherit the limit.
    monkeypatch.setenv("OMP_THREAD_LIMIT", "1")
    out = tmp_path / "pages.json"
    routes = ["reader", "pixel"] + (["ocr"] if shutil.which("tesseract") else [])
    argv = ["--sentences", "12", "--sizes", "20", "--warmup", "1", "--out", str(out)]
    assert pages.main([*argv, "--routes", *routes]) == 0
    report = json.loads(out.read_text())
    assert [row["route"] for row in report["rows"]] == routes
    assert report["pages"]["sentences"] == 12 and len(report["pages"]["families"]["unseen"]) == 4
    for row in report["rows"]:
        assert row["pages"] == 12 and row["pages_per_s"] > 0
        assert 0 <= row["recall_at_1"] <= row["recall_at_5"] <= 1
    by_route = {row["route"]: row for row in report["rows"]}
    assert by_route["reader"]["recall_at_1"] >= 0.9  # it reads fonts it never saw
    assert by_route["pixel"]["cer"] is None and 0 <= by_route["reader"]["cer"] < 0.1


@needs("coreutils", *HELD_OUT_FONTS)  # translated messages drawn in the held-out fonts
def test_pages_benchmark_reads_the_accented_and_two_column_sets(
    tmp_path, one_torch_thread, monkeypatch
):
    monkeypatch.setenv("OMP_THREAD_LIMIT", "1")  # main() sets it for Tesseract; undone after
    out = tmp_path / "pages.json"
    argv = ["--sentences", "8", "--sizes", "20", "--warmup", "1", "--out", str(out)]
    assert pages.main([*argv, "--routes", "reader", "--sets", "accented", "two_column"]) == 0
    rows = json.loads(out.read_text())["rows"]
    assert [(row["set"], row["pages"]) for row in rows] == [("accented", 8), ("two_column", 8)]
    assert all(0 <= row["cer"] <= 1 and row["recall_at_1"] <= row["recall_at_5"] for row in rows)


def test_docs_benchmark_runs_the_text_route_and_times_minilm_alone(
    tmp_path, one_torch_thread, monkeypatch
):
    from benchmarks import docs

    monkeypatch.setenv("OMP_THREAD_LIMIT", "1")  # main() sets it for Tesseract; undone after

    out = tmp_path / "docs.json"
    assert docs.main(["--routes", "text", "--limit", "6", "--out", str(out)]) == 0
    (row,) = json.loads(out.read_text())["rows"]
    assert (row["route"], row["pages"], row["indexed"], row["routes_recorded"]) == (
        "text",
        6,
        6,
        ["text"],
    )
    assert 0 <= row["recall_at_1"] <= 1 and row["cpu_s"] > 0 and "load_before" in row
    assert docs.main(["--encoder-only", "--limit", "6", "--out", str(out)]) == 0
    rows = json.loads(out.read_text())["rows"]
    assert [row["encoder"] for row in rows] == [
        "mmembed-mini encode(Document)",
        "sentence-transformers encode(pieces)",
    ]
    assert rows[0]["pieces"] == rows[1]["pieces"] >= 6 and rows[0]["tokens"] == rows[1]["tokens"]
