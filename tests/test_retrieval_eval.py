"""scripts/retrieval_eval.py on small Karpathy and MSR-VTT files built from the assets.

A fake embedder gives every caption a designed score against every item, so the expected
recalls are counted by hand below; a last test runs mmembed-mini end to end.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest

import mmembed

REPO = Path(__file__).resolve().parents[1]
ASSETS = REPO / "assets"
spec = importlib.util.spec_from_file_location("retrieval_eval", REPO / "scripts/retrieval_eval.py")
retrieval_eval = importlib.util.module_from_spec(spec)
sys.modules["retrieval_eval"] = retrieval_eval  # dataclasses look their module up
spec.loader.exec_module(retrieval_eval)

IMAGES = [
    "images/cat.jpg",
    "images/coffee.jpg",
    "images/rocket.jpg",
    "images/camera.jpg",
    "images/palace.jpg",
    "images/flower.jpg",
    "images/officer.jpg",
    "documents/astronaut.jpg",
]
# Caption -> (its image, scores x 1000/3 against images 0..7). Columns have no ties.
IMAGE_CAPTIONS = {
    "c0": (0, [90, 10, 11, 12, 13, 14, 15, 16]),  # own 90 is the best: rank 1
    "c1": (1, [20, 91, 21, 22, 23, 24, 25, 26]),  # rank 1
    "c2": (2, [30, 31, 80, 92, 32, 33, 34, 35]),  # 92 beats 80: rank 2
    "c3": (3, [85, 86, 87, 40, 88, 89, 20, 21]),  # five higher: rank 6
    "c4": (4, [70, 71, 72, 73, 5, 74, 75, 76]),  # lowest: rank 8
    "c5": (5, [1, 2, 3, 4, 6, 95, 7, 8]),  # rank 1
    "c6": (6, [81, 82, 83, 84, 9, 17, 50, 18]),  # four higher: rank 5
    "c7": (7, [19, 27, 28, 29, 36, 37, 93, 79]),  # rank 2
    "c8": (0, [60, 94, 96, 38, 39, 43, 44, 45]),  # second caption of image 0: rank 3
}
# text->image ranks 1,1,2,6,8,1,5,2,3 of 9 captions: R@1 3/9, R@5 7/9, R@10 9/9.
# image->text, best rank of an own caption in each image's column:
#   img0 [90,20,30,85,70,1,81,19,60] c0=90 is the top: 1    img1: 94 > c1=91: 2
#   img2: 87, 83, 96 > c2=80: 4     img3: 92, 73, 84 > c3=40: 4     img4: c4=5 is last of 9: 9
#   img5: c5=95: 1     img6: 75, 93 > c6=50: 3     img7: c7=79 is the top: 1
# -> R@1 3/8, R@5 7/8, R@10 8/8.
EXPECTED_IMAGES = {
    "t2i_R@1": 300 / 9,
    "t2i_R@5": 700 / 9,
    "t2i_R@10": 100.0,
    "i2t_R@1": 37.5,
    "i2t_R@5": 87.5,
    "i2t_R@10": 100.0,
}

VIDEO_CAPTIONS = {
    "v0 caption": (0, [90, 10, 11, 12, 13, 14, 15]),  # rank 1
    "v1 caption": (1, [80, 30, 81, 82, 83, 84, 85]),  # six higher: rank 7
    "v2 caption": (2, [20, 21, 70, 22, 23, 24, 25]),  # rank 1
    "v3 caption": (3, [60, 61, 62, 50, 63, 26, 27]),  # four higher: rank 5
    "v4 caption": (4, [31, 32, 33, 34, 40, 95, 35]),  # rank 2
}
# videos 5 and 6 have no caption (distractors): R@1 2/5, R@5 4/5, R@10 5/5.
EXPECTED_VIDEOS = {"t2v_R@1": 40.0, "t2v_R@5": 80.0, "t2v_R@10": 100.0}


class DesignedEmbedder:
    """Item i -> e_i; a caption -> its designed scores plus a slack coordinate for unit norm,
    so cosine(caption, item i) is exactly the designed score."""

    name = "designed"
    query_instruction = document_instruction = None

    def __init__(self, captions: dict, item_names: list[str]):
        self.captions = captions
        self.items = {Path(name).stem: number for number, name in enumerate(item_names)}
        self.dim = len(item_names) + 1

    def encode(self, values, on_error="raise", **kwargs):
        return np.stack([self._vector(value) for value in values])

    def _vector(self, value) -> np.ndarray:
        vector = np.zeros(self.dim)
        if isinstance(value, str):
            vector[:-1] = np.array(self.captions[value][1]) * 0.003
            vector[-1] = np.sqrt(1 - np.sum(vector**2))
        else:
            vector[self.items[Path(value.source).stem]] = 1.0
        return vector


def karpathy_file(tmp_path: Path) -> Path:
    images = []
    for number, path in enumerate(IMAGES):
        sentences = [
            {"raw": f" {text} ", "tokens": [text]}
            for text, (owner, _) in IMAGE_CAPTIONS.items()
            if owner == number
        ]
        folder, name = path.split("/")
        images.append(
            {
                "filepath": folder,
                "filename": name,
                "imgid": number,
                "split": "test",
                "sentences": sentences,
            }
        )
    images.append(
        {
            "filepath": "images",
            "filename": "flower.jpg",
            "split": "train",
            "sentences": [{"raw": "ignored, train split"}],
        }
    )
    path = tmp_path / "dataset_assets.json"
    path.write_text(json.dumps({"dataset": "assets", "images": images}))
    return path


def msrvtt_file(tmp_path: Path) -> Path:
    videos = tmp_path / "videos"
    videos.mkdir()
    for number in range(7):
        os.symlink(ASSETS / "videos/motorcycle_zoom.mp4", videos / f"video{number}.mp4")
    data = {
        "videos": [{"video_id": f"video{n}", "split": "test"} for n in range(7)]
        + [{"video_id": "video9", "split": "train"}],
        "sentences": [
            {"video_id": f"video{owner}", "caption": text, "sen_id": n}
            for n, (text, (owner, _)) in enumerate(VIDEO_CAPTIONS.items())
        ]
        + [{"video_id": "video9", "caption": "train only", "sen_id": 99}],
    }
    path = tmp_path / "msrvtt_data.json"
    path.write_text(json.dumps(data))
    return path


def test_karpathy_recalls_match_hand_counts(tmp_path):
    dataset = retrieval_eval.load_karpathy(karpathy_file(tmp_path), ASSETS)
    assert len(dataset.captions) == 9 and len(dataset.items) == 8
    assert dataset.captions[0] == "c0" and dataset.items[7] == ASSETS / "documents/astronaut.jpg"
    result = retrieval_eval.evaluate(DesignedEmbedder(IMAGE_CAPTIONS, IMAGES), dataset)
    assert result["recall"] == pytest.approx(EXPECTED_IMAGES)
    assert "text->image  33.3    77.8    100.0" in retrieval_eval.format_table(result)


def test_msrvtt_recalls_match_hand_counts(tmp_path):
    annotations = msrvtt_file(tmp_path)
    dataset = retrieval_eval.load_msrvtt(annotations, tmp_path / "videos")
    assert len(dataset.items) == 7 and len(dataset.captions) == 5
    names = [f"video{n}" for n in range(7)]
    result = retrieval_eval.evaluate(DesignedEmbedder(VIDEO_CAPTIONS, names), dataset)
    assert {key: value for key, value in result["recall"].items() if key.startswith("t2v")} == (
        pytest.approx(EXPECTED_VIDEOS)
    )
    csv = tmp_path / "MSRVTT_JSFUSION_test.csv"
    csv.write_text(
        "key,vid_key,video_id,sentence\n"
        + "".join(
            f"ret{n},msr{n},video{owner},{text}\n"
            for n, (text, (owner, _)) in enumerate(VIDEO_CAPTIONS.items())
        )
    )
    from_csv = retrieval_eval.load_msrvtt(csv, tmp_path / "videos")
    assert from_csv.captions == dataset.captions
    assert [path.name for path in from_csv.items] == [f"video{n}.mp4" for n in range(5)]


def test_script_end_to_end_with_mmembed_mini(tmp_path, mini, monkeypatch, capsys):
    manifest = json.loads((ASSETS / "manifest.json").read_text())
    images = [entry for entry in manifest if entry["modality"] == "image"]
    annotations = tmp_path / "dataset_mini.json"
    annotations.write_text(
        json.dumps(
            {
                "images": [
                    {
                        "filepath": "images",
                        "filename": Path(entry["path"]).name,
                        "split": "test",
                        "sentences": [{"raw": entry["caption"]}],
                    }
                    for entry in images
                ]
            }
        )
    )
    monkeypatch.setattr(mmembed, "load", lambda name: mini)
    out = tmp_path / "result.json"
    assert (
        retrieval_eval.main(
            [
                "karpathy",
                "--annotations",
                str(annotations),
                "--images",
                str(ASSETS),
                "--out",
                str(out),
            ]
        )
        == 0
    )
    result = json.loads(out.read_text())
    assert result["items"] == len(images) and result["failed_items"] == 0
    # The script's recall is mmembed-mini's own on these photos (astronaut and galaxies included,
    # which ConSE cannot name: tests/test_assets_retrieval.py holds the recall thresholds).
    captions = [entry["caption"] for entry in images]
    photos = [mmembed.Image(str(ASSETS / entry["path"])) for entry in images]
    scores = mini.similarity(mini.encode(captions), mini.encode(photos))
    expected = 100.0 * float((scores.argmax(axis=1) == np.arange(len(images))).mean())
    assert result["recall"]["t2i_R@1"] == pytest.approx(expected, abs=1e-6)
    assert result["recall"]["i2t_R@10"] == 100.0  # 9 photos: every one is in the top 10
    assert "text->image" in capsys.readouterr().out
