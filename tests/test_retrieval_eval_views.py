"""scripts/retrieval_eval.py on a captions table and with --views (image->image Recall@K)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
import retrieval_eval  # noqa: E402

from mmembed.train.demo_data import write_heldout_photos  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_views_are_seeded_and_differ(tmp_path):
    table = write_heldout_photos(tmp_path / "photos")
    dataset = retrieval_eval.load_caption_table(table)
    assert len(dataset.items) == len(dataset.captions) == 8
    assert all(path.is_file() for path in dataset.items)
    first = retrieval_eval.image_views(dataset.items[0], 3, seed=5)
    again = retrieval_eval.image_views(dataset.items[0], 3, seed=5)
    assert [v.tobytes() for v in first] == [v.tobytes() for v in again]
    assert len({v.tobytes() for v in first}) == 3


def test_image_to_image_recall_through_a_saved_model(tmp_path, mini, monkeypatch):
    table = write_heldout_photos(tmp_path / "photos")
    monkeypatch.setattr("mmembed.load", lambda name: mini)
    out = tmp_path / "result.json"
    argv = ["captions", "--annotations", str(table), "--views", "4", "--out", str(out)]
    assert retrieval_eval.main(argv) == 0
    recall = json.loads(out.read_text())["recall"]
    assert {"t2i_R@1", "i2t_R@1", "i2i_R@1", "i2i_R@10"} <= set(recall)
    # 8 photos: chance R@1 is 12.5%; mmembed-mini's ConSE features survive crops and jitter
    assert recall["i2i_R@1"] >= 50.0 and recall["i2i_R@10"] == 100.0
