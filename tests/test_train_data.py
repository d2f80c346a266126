"""Readers skip and count bad rows; collate skips unreadable images; batch order is resumable."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch
from PIL import Image

from mmembed.train.config import DataConfig
from mmembed.train.data import (
    KeyedDataset,
    ResumableBatchSampler,
    SampleKey,
    open_dataset,
)


def _image(path, color=(200, 30, 30)):
    Image.new("RGB", (40, 30), color).save(path)
    return path.name


def test_mmeb_parquet_with_negatives_and_bad_rows(tmp_path):
    _image(tmp_path / "q.png")
    _image(tmp_path / "p.png")
    rows = [
        {
            "qry": "<|image_1|> what is shown?",
            "qry_image_path": "q.png",
            "pos_text": "a red box",
            "pos_image_path": "",
            "neg_text": ["a blue box", "a cat"],
            "neg_image_path": ["", "p.png"],
        },
        {
            "qry": "find the image",
            "qry_image_path": None,
            "pos_text": "",
            "pos_image_path": "p.png",
            "neg_text": ["x"],
            "neg_image_path": [""],
        },
        {
            "qry": "",
            "qry_image_path": "",
            "pos_text": "orphan",
            "pos_image_path": "",
            "neg_text": ["x"],
            "neg_image_path": [""],
        },
        {
            "qry": "no negative",
            "qry_image_path": "",
            "pos_text": "y",
            "pos_image_path": "",
            "neg_text": [],
            "neg_image_path": [],
        },
    ]
    pd.DataFrame(rows).to_parquet(tmp_path / "train.parquet")
    config = DataConfig(format="mmeb", path=str(tmp_path / "train.parquet"), num_negatives=1)
    dataset = open_dataset(config)
    assert len(dataset) == 2
    assert dataset.skipped == {"empty query": 1, "fewer than 1 hard negatives": 1}
    first = dataset[0]
    assert first.query.image == str(tmp_path / "q.png") and first.query.text.startswith(
        "<|image_1|>"
    )
    assert first.positive.image is None and first.negatives[0].text == "a blue box"
    assert dataset[1].positive.image == str(tmp_path / "p.png")

    no_negatives = open_dataset(DataConfig(format="mmeb", path=str(tmp_path / "train.parquet")))
    assert len(no_negatives) == 3 and no_negatives[2].negatives == ()


def test_image_captions_from_csv_and_from_folder(tmp_path):
    names = [_image(tmp_path / f"{i}.png") for i in range(3)]
    pd.DataFrame({"file": names, "text": ["one", "", "three"]}).to_csv(tmp_path / "pairs.csv")
    config = DataConfig(
        path=str(tmp_path / "pairs.csv"), image_column="file", caption_column="text"
    )
    dataset = open_dataset(config)
    assert [r.positive.text for r in dataset] == ["one", "three"]
    assert dataset.skipped == {"empty positive": 1}

    (tmp_path / "0.txt").write_text("zero\n")
    (tmp_path / "2.txt").write_text("two")
    folder = open_dataset(DataConfig(path=str(tmp_path)))
    assert [(r.query.image.split("/")[-1], r.positive.text) for r in folder] == [
        ("0.png", "zero"),
        ("2.png", "two"),
    ]
    assert folder.skipped == {"empty positive": 1}


def test_text_pairs_from_jsonl_and_tsv(tmp_path):
    rows = [{"q": "a", "d": "b", "n": "c"}, {"q": "e", "d": "f", "n": None}]
    (tmp_path / "pairs.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    config = DataConfig(
        format="text_pairs",
        path=str(tmp_path / "pairs.jsonl"),
        query_column="q",
        positive_column="d",
        negative_column="n",
        num_negatives=1,
    )
    dataset = open_dataset(config)
    assert len(dataset) == 1 and dataset[0].negatives[0].text == "c"

    (tmp_path / "pairs.tsv").write_text("query\tpositive\nhello\tworld\n")
    tsv = open_dataset(DataConfig(format="text_pairs", path=str(tmp_path / "pairs.tsv")))
    assert tsv[0].query.text == "hello" and tsv[0].positive.text == "world"


def test_configuration_errors_are_loud(tmp_path):
    with pytest.raises(FileNotFoundError):
        open_dataset(DataConfig(format="text_pairs", path=str(tmp_path / "missing.csv")))
    (tmp_path / "t.csv").write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="missing column"):
        open_dataset(DataConfig(format="text_pairs", path=str(tmp_path / "t.csv")))
    with pytest.raises(ValueError, match="unknown data format"):
        open_dataset(DataConfig(format="webdataset", path=str(tmp_path / "t.csv")))


def test_unreadable_images_are_skipped_and_counted(tmp_path, caplog):
    from mmembed.train.config import TrainConfig
    from mmembed.train.tasks import build_task

    good = [_image(tmp_path / f"{i}.png") for i in range(3)]
    (tmp_path / "broken.png").write_bytes(b"not an image")
    pd.DataFrame({"image": [*good, "broken.png", "gone.png"], "caption": list("abcde")}).to_csv(
        tmp_path / "pairs.csv", index=False
    )
    config = TrainConfig(task="tiny_clip", output_dir=str(tmp_path / "out"))
    config.data = DataConfig(path=str(tmp_path / "pairs.csv"))
    task = build_task(config)
    dataset = KeyedDataset(task.build_dataset())
    batch = task.collate([dataset[SampleKey(i, seed=i)] for i in range(5)])
    assert batch.size == 3 and batch.skipped == 2
    assert batch.inputs["query"].shape == (3, 3, 32, 32) and batch.inputs["positive"].shape == (
        3,
        16,
    )
    assert "broken.png" in caplog.text and "gone.png" in caplog.text
    empty = task.collate([dataset[SampleKey(3, seed=0)]])
    assert empty.size == 0 and empty.skipped == 1 and empty.inputs == {}


def test_processes_split_each_global_batch_in_rank_order():
    one = list(ResumableBatchSampler(50, 8, seed=3, epoch=2))
    ranks = [
        list(ResumableBatchSampler(50, 8, seed=3, epoch=2, rank=r, world_size=2)) for r in (0, 1)
    ]
    assert len(one) == 6  # incomplete last batch dropped
    for batch, left, right in zip(one, *ranks, strict=True):
        assert batch == left + right
    assert len({k.index for b in one for k in b}) == 48
    assert one != list(ResumableBatchSampler(50, 8, seed=3, epoch=3))  # new order each epoch


def test_sampler_resumes_mid_epoch_with_the_same_batches_and_seeds():
    full = list(ResumableBatchSampler(40, 4, seed=0, epoch=1))
    resumed = ResumableBatchSampler(40, 4, seed=0, epoch=1, start_batch=7)
    assert len(resumed) == 3 and list(resumed) == full[7:]
    with pytest.raises(ValueError):
        ResumableBatchSampler(40, 6, seed=0, epoch=0, world_size=4)
    with pytest.raises(ValueError):
        ResumableBatchSampler(3, 4, seed=0, epoch=0)


def test_augmentations_do_not_depend_on_workers(tmp_path):
    from mmembed.train.config import TrainConfig
    from mmembed.train.tasks import build_task

    names = [_image(tmp_path / f"{i}.png", (i * 40, 100, 50)) for i in range(4)]
    pd.DataFrame({"image": names, "caption": list("abcd")}).to_csv(tmp_path / "p.csv", index=False)
    config = TrainConfig(task="tiny_clip", output_dir=str(tmp_path / "out"))
    config.data = DataConfig(path=str(tmp_path / "p.csv"))
    task = build_task(config)
    dataset = KeyedDataset(task.build_dataset())

    def batches(workers: int) -> list[torch.Tensor]:
        sampler = ResumableBatchSampler(4, 2, seed=0, epoch=0)
        loader = torch.utils.data.DataLoader(
            dataset, batch_sampler=sampler, collate_fn=task.collate, num_workers=workers
        )
        return [b.inputs["query"] for b in loader]

    torch.manual_seed(0)
    in_process = batches(0)
    torch.manual_seed(1)  # neither the global RNG nor the worker count may matter
    assert all(torch.equal(a, b) for a, b in zip(in_process, batches(2), strict=True))
