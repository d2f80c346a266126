"""mmembed-mini through the MMEB harness, checked against scores computed outside it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import skimage.data
from PIL import Image as PILImage
from test_eval_support import EXPECTED, build_fixture

from mmembed.eval import Benchmark, MMEBOptions, evaluate_mmeb, get_dataset
from mmembed.eval.data import (
    MMEB_COLUMNS,
    V2_COLUMNS,
    MediaRoots,
    find_dataset_files,
    load_examples,
    to_input,
)


def _write_mp4(path: Path, photo: np.ndarray, frames: int = 16) -> None:
    """A short zoom-and-pan clip over a real photo, encoded with PyAV."""
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=8)
        stream.width, stream.height, stream.pix_fmt = 320, 240, "yuv420p"
        for index in range(frames):
            crop = photo[index * 5 : index * 5 + 300, index * 8 : index * 8 + 400]
            pixels = np.asarray(PILImage.fromarray(crop).resize((320, 240)))
            container.mux(stream.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")))
        container.mux(stream.encode())


def _add_video_dataset(data_dir: Path) -> None:
    """MSR-VTT-style text-to-video retrieval: one video file, one folder of frames."""
    videos = data_dir / "videos"
    videos.mkdir()
    _write_mp4(videos / "rocket.mp4", skimage.data.rocket())
    cat = skimage.data.chelsea()
    (videos / "cat_frames").mkdir()
    for index in range(12):
        frame = PILImage.fromarray(cat[:, index * 4 : index * 4 + 400])
        frame.save(videos / "cat_frames" / f"{index:03d}.jpg")
    caption = "Find a video that matches the caption: "
    rows = [
        {"qry_text": caption + "a rocket launch", "tgt_video_path": ["rocket.mp4", "cat_frames"]},
        {"qry_text": caption + "a tabby cat", "tgt_video_path": ["cat_frames", "rocket.mp4"]},
    ]
    (data_dir / "MSR-VTT.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))


def _reference_hit_at_1(model, data_dir: Path, name: str) -> tuple[float, int]:
    """hit@1 with each query and its candidates embedded on their own (no cache, no chunks)."""
    roots = MediaRoots(data_dir / "images", data_dir / "videos")
    hits, near_ties = 0, 0
    columns = MMEB_COLUMNS if get_dataset(name).benchmark is Benchmark.MMEB else V2_COLUMNS
    examples = load_examples(find_dataset_files(data_dir, name), columns=columns).examples
    for example in examples:
        items = (example.query, *example.candidates)
        inputs = [to_input(item, roots, "removed") for item in items]  # mini has no media tokens
        vectors = np.asarray(model.encode(inputs, show_progress_bar=False), dtype=np.float64)
        scores = vectors[1:] @ vectors[0]
        margin = scores[0] - scores[1:].max()
        near_ties += abs(margin) < 1e-5
        hits += margin > 0
    return hits / len(examples), near_ties


def test_mmembed_mini_on_the_fixture(mini, tmp_path):
    data_dir = build_fixture(tmp_path / "data").data_dir
    _add_video_dataset(data_dir)
    out = tmp_path / "report"
    names = [*EXPECTED, "MSR-VTT"]
    report = evaluate_mmeb(mini, data_dir, names, out, MMEBOptions(batch_size=16))
    assert set(report.datasets) == set(names) and report.missing == []
    for name in names:
        result = report.datasets[name]
        expected, near_ties = _reference_hit_at_1(mini, data_dir, name)
        if not near_ties:
            assert result.score == pytest.approx(expected), name
        assert (
            result.model == "mmembed-mini" and result.metric == "hit@1" and result.failed_items == 0
        )
    assert not any("chance level" in warning for warning in report.warnings)
    data = json.loads((out / "report.json").read_text())
    assert data["model"] == "mmembed-mini" and "mmeb-v2-video" in data["summary"]
    text = (out / "report.md").read_text()
    assert "| mmembed-mini |" in text and "MMEB-V2 video" in text
