"""--download plumbing with the hub calls replaced: no network is used."""

from __future__ import annotations

import json
import zipfile

import huggingface_hub
import pyarrow as pa
import pyarrow.parquet as pq
import skimage.data
from PIL import Image as PILImage
from test_eval_support import LookupEmbedder

from mmembed.eval import MMEB_EVAL_REPO, download_mmeb, evaluate_mmeb

COMMIT = "0123456789abcdef0123456789abcdef01234567"


class _Info:
    sha = COMMIT


class _FakeApi:
    def __init__(self, **kwargs):
        assert kwargs["library_name"] == "mmembed"

    def dataset_info(self, repo_id, revision):
        assert repo_id == MMEB_EVAL_REPO
        return _Info()


def test_download_lays_out_data_and_records_the_revision(tmp_path, monkeypatch):
    archive = tmp_path / "images.zip"
    photo = tmp_path / "cat.jpg"
    PILImage.fromarray(skimage.data.chelsea()).save(photo)
    with zipfile.ZipFile(archive, "w") as bundle:
        bundle.write(photo, "eval_images/VOC2007/cat.jpg")  # one top folder, as in the release
    calls = {}

    def snapshot_download(repo_id, *, revision, local_dir, allow_patterns, **kwargs):
        calls["snapshot"] = (revision, allow_patterns)
        row = {
            "qry_text": "<|image_1|> Represent",
            "qry_img_path": "VOC2007/cat.jpg",
            "tgt_text": ["cat", "dog"],
            "tgt_img_path": ["", ""],
        }
        (local_dir / "VOC2007").mkdir()
        pq.write_table(
            pa.Table.from_pylist([row]), local_dir / "VOC2007" / "test-00000-of-00001.parquet"
        )
        return str(local_dir)

    def hf_hub_download(repo_id, filename, *, revision, **kwargs):
        calls["archive"] = (filename, revision)
        return str(archive)

    monkeypatch.setattr(huggingface_hub, "HfApi", _FakeApi)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", hf_hub_download)
    data = tmp_path / "data"
    assert download_mmeb(data, ["VOC2007", "MSR-VTT"]) == COMMIT
    assert calls == {"snapshot": (COMMIT, ["VOC2007/*.parquet"]), "archive": ("images.zip", COMMIT)}
    assert (data / "images" / "VOC2007" / "cat.jpg").is_file()
    assert json.loads((data / ".mmembed-data.json").read_text())["revision"] == COMMIT

    table = {"D:VOC2007/cat.jpg| Represent": [1.0, 0.0], "T:cat": [1.0, 0.0], "T:dog": [0.0, 1.0]}
    report = evaluate_mmeb(LookupEmbedder(table), data, ["VOC2007"])
    assert report.data_revision == COMMIT and report.datasets["VOC2007"].data_revision == COMMIT
    assert report.datasets["VOC2007"].score == 1.0
