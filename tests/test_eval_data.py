"""MMEB data reading and the dataset registry."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image as PILImage

from mmembed.eval.data import (
    MediaRoots,
    RowItem,
    find_dataset_files,
    load_examples,
    parse_row,
    segment_middles,
    to_input,
)
from mmembed.eval.datasets import (
    Benchmark,
    MetaTask,
    Split,
    get_dataset,
    list_datasets,
    resolve_datasets,
)
from mmembed.inputs import Document, Image, Text, Video

ROOTS = MediaRoots(Path("/data/images"), Path("/data/videos"))


def test_registry_has_the_36_mmeb_datasets():
    specs = list_datasets()
    assert len(specs) == 36
    tasks = Counter(spec.meta_task for spec in specs)
    assert tasks == {
        MetaTask.CLASSIFICATION: 10,
        MetaTask.VQA: 10,
        MetaTask.RETRIEVAL: 12,
        MetaTask.GROUNDING: 4,
    }
    splits = Counter(spec.split for spec in specs)
    assert splits == {Split.IND: 20, Split.OOD: 16}
    assert get_dataset("MSCOCO").meta_task is MetaTask.GROUNDING
    assert get_dataset("MSCOCO_t2i").split is Split.IND
    assert get_dataset("RefCOCO-Matching").split is Split.OOD
    sizes = {s.name: s.num_candidates for s in specs if s.meta_task is MetaTask.CLASSIFICATION}
    assert sizes["HatefulMemes"] == 2 and sizes["ObjectNet"] == 313 and sizes["ImageNet-R"] == 200
    assert {s.num_candidates for s in specs if s.meta_task is not MetaTask.CLASSIFICATION} == {1000}
    assert all(spec.metric == "hit@1" for spec in specs)


def test_registry_groups_and_unknown_names():
    assert len(resolve_datasets(None)) == 36
    # 36 MMEB + 18 video + 24 visual-document sets of V2's leaderboard + V2's 3 English-only
    # ViDoRe-V2 sets (``visdoc.yaml``; reported in their own table)
    assert len(resolve_datasets(["all"])) == 81
    visdoc = resolve_datasets(["mmeb-v2-visdoc"])
    assert len(visdoc) == 24 and visdoc[0].metric == "ndcg@5"
    assert len(list_datasets(Benchmark.MMEB_V2_VIDEO)) == 18
    # names keep registry order and do not repeat
    assert [s.name for s in resolve_datasets(["MSCOCO", "ImageNet-1K", "MSCOCO"])] == [
        "ImageNet-1K",
        "MSCOCO",
    ]
    with pytest.raises(KeyError, match="ImageNet-1K"):
        get_dataset("ImageNet-2K")


def test_parse_row_defaults_and_errors():
    row = {
        "qry_text": "q",
        "qry_img_path": "",
        "tgt_text": ["", ""],
        "tgt_img_path": ["a.jpg", "b.jpg"],
    }
    example = parse_row(row)
    assert example.query == RowItem("q")
    assert example.candidates == (RowItem("", "a.jpg"), RowItem("", "b.jpg"))
    assert example.relevance == (1.0, 0.0)
    graded = parse_row({**row, "tgt_relevance": [0, 2]})
    assert graded.relevance == (0.0, 2.0)
    with pytest.raises(ValueError, match="tgt_img_path: 2 entries but there are 3 candidates"):
        parse_row({**row, "tgt_text": ["x", "y", "z"]})
    # strict: one text is not shared by every candidate, a string is not a list
    with pytest.raises(ValueError, match="tgt_text: 1 entries but there are 2 candidates"):
        parse_row({**row, "tgt_text": ["<|image_1|> Represent the image."]})
    with pytest.raises(ValueError, match="tgt_text: a string where a list"):
        parse_row({**row, "tgt_text": ""})
    with pytest.raises(ValueError, match="no candidates"):
        parse_row({"qry_text": "q", "tgt_text": [], "tgt_img_path": []})


def test_image_placeholder_becomes_an_interleaved_document():
    """VLM towers ("in_place"): the text byte for byte, the image where the placeholder was."""
    image = Image("/data/images/VOC2007/x.jpg")
    official = "<|image_1|>\nRepresent the given image for classification\n"
    lead = to_input(RowItem(official, "VOC2007/x.jpg"), ROOTS)
    assert lead == Document([image, "\nRepresent the given image for classification\n"])
    middle = to_input(RowItem("Question: <|image_1|> what is shown?", "VOC2007/x.jpg"), ROOTS)
    assert middle == Document(["Question: ", image, " what is shown?"])
    no_token = to_input(RowItem("a caption", "VOC2007/x.jpg"), ROOTS)
    assert no_token == Document([image, "a caption"])
    assert to_input(RowItem("<|image_1|>\n", "VOC2007/x.jpg"), ROOTS) == Document([image, "\n"])
    assert to_input(RowItem("<|image_1|>", "VOC2007/x.jpg"), ROOTS) == image
    assert to_input(RowItem("a cat\non a mat\n"), ROOTS) == Text("a cat\non a mat\n")


def test_placeholder_is_removed_for_towers_without_media_tokens():
    image = Image("/data/images/VOC2007/x.jpg")
    official = "<|image_1|>\nRepresent the given image for classification\n"
    removed = to_input(RowItem(official, "VOC2007/x.jpg"), ROOTS, "removed")
    assert removed == Document([image, "\nRepresent the given image for classification\n"])
    assert to_input(RowItem("<|image_1|>\n", "VOC2007/x.jpg"), ROOTS, "removed") == image
    assert to_input(RowItem("<image> describe", "VOC2007/x.jpg"), ROOTS, "removed") == Document(
        [image, " describe"]
    )
    assert to_input(RowItem("<|image_1|> stray"), ROOTS, "removed") == Text(" stray")


def _write_parquet(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), path)


def test_find_and_load_files(tmp_path):
    rows = [
        {"qry_text": f"q{i}", "qry_img_path": "", "tgt_text": ["a", "b"], "tgt_img_path": ["", ""]}
        for i in range(5)
    ]
    _write_parquet(tmp_path / "GQA" / "test-00000-of-00002.parquet", rows[:3])
    _write_parquet(tmp_path / "GQA" / "test-00001-of-00002.parquet", rows[3:])
    (tmp_path / "VizWiz.jsonl").write_text(
        "".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8"
    )
    gqa = find_dataset_files(tmp_path, "GQA")
    assert [p.name for p in gqa] == ["test-00000-of-00002.parquet", "test-00001-of-00002.parquet"]
    assert [e.query.text for e in load_examples(gqa).examples] == ["q0", "q1", "q2", "q3", "q4"]
    assert [e.row for e in load_examples(gqa).examples] == [0, 1, 2, 3, 4]  # across files
    assert len(load_examples(gqa, max_queries=4).examples) == 4
    vizwiz = find_dataset_files(tmp_path, "VizWiz")
    assert vizwiz == [tmp_path / "VizWiz.jsonl"] and len(load_examples(vizwiz).examples) == 5
    assert find_dataset_files(tmp_path, "TextVQA") == []
    bad = {"qry_text": 3, "qry_img_path": "", "tgt_text": ["a"], "tgt_img_path": [""]}
    (tmp_path / "bad.jsonl").write_text(json.dumps(bad) + "\n")
    with pytest.raises(ValueError, match="GQA: .*bad.jsonl: row 0: field 'qry_text'"):
        load_examples([tmp_path / "bad.jsonl"], dataset="GQA")


def test_frame_folder_reads_only_the_sampled_frames(tmp_path):
    folder = tmp_path / "videos" / "clip1"
    folder.mkdir(parents=True)
    for index in range(20):
        PILImage.fromarray(np.full((8, 8, 3), index * 10, np.uint8)).save(
            folder / f"{index:04d}.png"
        )
    roots = MediaRoots(tmp_path / "images", tmp_path / "videos", num_frames=4)
    item = RowItem("<|video_pad|> Recognize the action.", video="clip1")
    video = to_input(item, roots, "removed")  # a tower that cannot read text with a video
    assert isinstance(video, Video) and video.num_frames == 4
    assert (
        [np.asarray(f)[0, 0, 0] // 10 for f in video.source]
        == segment_middles(20, 4)
        == [2, 7, 12, 17]
    )
    assert to_input(RowItem("", video="clip.mp4"), roots) == Video(
        str(tmp_path / "videos" / "clip.mp4"), 4
    )
