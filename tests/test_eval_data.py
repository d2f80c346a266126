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
    Item,
    MediaRoots,
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
    assert len(resolve_datasets(["all"])) == 78
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
    row = {"qry_text": "q", "qry_img_path": "", "tgt_text": "", "tgt_img_path": ["a.jpg", "b.jpg"]}
    example = parse_row(row)
    assert example.query == Item("q")
    assert example.candidates == (Item("", "a.jpg"), Item("", "b.jpg"))
    assert example.relevance == (1.0, 0.0)
    shared = parse_row({**row, "tgt_text": ["<|image_1|> Represent the image."]})
    assert {c.text for c in shared.candidates} == {"<|image_1|> Represent the image."}
    graded = parse_row({**row, "tgt_relevance": [0, 2]})
    assert graded.relevance == (0.0, 2.0)
    with pytest.raises(ValueError, match="tgt_img_path has 2 entries"):
        parse_row({**row, "tgt_text": ["x", "y", "z"]})
    with pytest.raises(ValueError, match="no candidates"):
        parse_row({"qry_text": "q", "tgt_text": [], "tgt_img_path": []})


def test_image_placeholder_becomes_an_interleaved_document():
    image = Image("/data/images/VOC2007/x.jpg")
    lead = to_input(
        Item("<|image_1|>\nRepresent the given image for classification", "VOC2007/x.jpg"), ROOTS
    )
    assert lead == Document([image, "Represent the given image for classification"])
    middle = to_input(Item("Question: <|image_1|> what is shown?", "VOC2007/x.jpg"), ROOTS)
    assert middle == Document(["Question:", image, "what is shown?"])
    no_token = to_input(Item("a caption", "VOC2007/x.jpg"), ROOTS)
    assert no_token == Document([image, "a caption"])
    assert to_input(Item("<|image_1|>\n", "VOC2007/x.jpg"), ROOTS) == image
    assert to_input(Item("<image> describe", "VOC2007/x.jpg"), ROOTS) == Document(
        [image, "describe"]
    )
    assert to_input(Item("a cat\non a mat"), ROOTS) == Text("a cat\non a mat")  # kept as given
    assert to_input(Item("<|image_1|> stray"), ROOTS) == Text("stray")


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
    assert [e.query.text for e in load_examples(gqa)] == ["q0", "q1", "q2", "q3", "q4"]
    assert len(load_examples(gqa, max_queries=4)) == 4
    vizwiz = find_dataset_files(tmp_path, "VizWiz")
    assert vizwiz == [tmp_path / "VizWiz.jsonl"] and len(load_examples(vizwiz)) == 5
    assert find_dataset_files(tmp_path, "TextVQA") == []
    (tmp_path / "bad.jsonl").write_text(json.dumps({"qry_text": 3, "tgt_text": ["a"]}) + "\n")
    with pytest.raises(ValueError, match="bad.jsonl: row 0"):
        load_examples([tmp_path / "bad.jsonl"])


def test_frame_folder_reads_only_the_sampled_frames(tmp_path):
    folder = tmp_path / "videos" / "clip1"
    folder.mkdir(parents=True)
    for index in range(20):
        PILImage.fromarray(np.full((8, 8, 3), index * 10, np.uint8)).save(
            folder / f"{index:04d}.png"
        )
    roots = MediaRoots(tmp_path / "images", tmp_path / "videos", num_frames=4)
    video = to_input(Item("<|video_pad|> Recognize the action.", video="clip1"), roots)
    assert isinstance(video, Video) and video.num_frames == 4
    assert (
        [np.asarray(f)[0, 0, 0] // 10 for f in video.source]
        == segment_middles(20, 4)
        == [2, 7, 12, 17]
    )
    assert to_input(Item("", video="clip.mp4"), roots) == Video(
        str(tmp_path / "videos" / "clip.mp4"), 4
    )
