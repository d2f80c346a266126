"""The video_curriculum recipe from its config: a still clip equals its image at step 0, the
frame count grows on schedule (position table stretched), the loss falls, resume is exact."""

from __future__ import annotations

import dataclasses
import logging
import shutil
from pathlib import Path

import pytest
import torch
from PIL import Image
from torch import nn

import mmembed
from mmembed.encoders.temporal import TemporalAttentionPool
from mmembed.processors.video import decode_video
from mmembed.train import PairRecord, PairSide, Sample, TrainConfig, Trainer, load_config
from mmembed.train.demo_data import write_demo_photos
from mmembed.train.logs import read_metrics

CONFIG = Path(__file__).parents[1] / "configs" / "video_curriculum.yaml"


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _config(root: Path, data: Path, **overrides) -> TrainConfig:
    config = load_config(CONFIG)
    config.data.path = str(data)
    config.progress_bar, config.tensorboard = False, False
    return dataclasses.replace(config, output_dir=str(root), **overrides)


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> tuple[Path, Path, list[str], Trainer]:
    """The shipped config end to end: (output dir, data dir, curriculum log lines, trainer)."""
    root = tmp_path_factory.mktemp("video")
    handler = _Collect()
    logger = logging.getLogger("mmembed.train.tasks.video_curriculum")
    logger.addHandler(handler)
    level = logger.level
    logger.setLevel(logging.INFO)
    trainer = Trainer(_config(root / "run", root / "data"))
    try:
        trainer.fit()
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    return root / "run", root / "data", handler.lines, trainer


class _Collect(logging.Handler):
    def __init__(self):
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def _still_samples(tmp_path: Path) -> list[Sample]:
    """A real photo, and a clip of eight copies of it (a frame folder), with one crop seed."""
    photos = write_demo_photos(tmp_path / "photos").parent
    clip = tmp_path / "still_clip"
    clip.mkdir()
    for number in range(8):
        shutil.copy(photos / "coffee.png", clip / f"{number:03d}.png")
    records = [
        PairRecord(PairSide(image=str(p)), PairSide(text="coffee"))
        for p in (clip, photos / "coffee.png")
    ]
    return [Sample(index, record, seed=7) for index, record in enumerate(records)]


def test_a_still_clip_embeds_as_its_image_at_step_0(tmp_path):
    trainer = Trainer(_config(tmp_path / "run", tmp_path / "data"))
    task, towers = trainer.task, trainer.module.towers
    batch = task.collate(_still_samples(tmp_path))
    assert batch.inputs["query"]["length"].tolist() == [8, 1]  # a clip and an image share a batch
    with torch.no_grad():
        image = nn.functional.normalize(
            towers["video"].image(batch.inputs["query"]["frames"][1, :1])
        )
        for step, frames in ((0, 1), (20, 4), (40, 8)):
            task.on_step(step, towers)
            assert towers["video"].temporal.positions.shape[0] == frames
            video = nn.functional.normalize(towers["video"](batch.inputs["query"]))
            assert (video[0] - image[0]).abs().max() <= 1e-6  # the still clip
            assert (video[1] - image[0]).abs().max() <= 1e-6  # an image skips the temporal block


def test_the_curriculum_grows_frames_and_the_loss_falls(run):
    out, _, lines, _ = run
    assert (
        "step 20: videos now use 4 frames" in lines and "step 40: videos now use 8 frames" in lines
    )
    temporal = mmembed.load(out / "final").temporal  # the trained block and its frame count
    assert isinstance(temporal, TemporalAttentionPool) and temporal.positions.shape == (8, 64)
    assert temporal.attention.out_proj.weight.abs().max() > 0  # trained up
    records = read_metrics(out / "metrics.jsonl")
    assert [r["step"] for r in records] == list(range(1, 61))
    first = sum(r["loss"] for r in records[:5]) / 5
    last = sum(r["loss"] for r in records[-5:]) / 5
    assert last < 0.5 * first, (first, last)


def test_resume_across_a_stage_boundary_is_exact(run, tmp_path):
    out, data, _, _ = run
    copy = tmp_path / "resumed"
    shutil.copytree(out, copy)
    (copy / "checkpoints" / "step_00000060.pt").unlink()  # resume from step 40 (4 frames)
    summary = Trainer(_config(copy, data, steps=41)).fit(resume=True)
    assert summary.steps == 41
    original = read_metrics(out / "metrics.jsonl")
    resumed = read_metrics(copy / "metrics.jsonl")
    assert [r["step"] for r in resumed] == list(range(1, 42))
    assert resumed[40]["loss"] == pytest.approx(original[40]["loss"], abs=1e-6)
    assert mmembed.load(copy / "final").temporal.positions.shape == (8, 64)


def test_the_saved_model_embeds_videos_images_and_text_as_training_did(run):
    out, data, _, trainer = run
    model = mmembed.load(out / "final")
    task, towers = trainer.task, trainer.module.towers.eval()
    clip = sorted(data.rglob("*.mp4"))[0]
    photo = sorted(data.rglob("*.png"))[0]
    frames = decode_video(str(clip), 8)  # what the embedder decodes: 8 segment middles
    pixels = torch.stack([task.preprocess(frame) for frame in frames])  # (8, 3, H, W)
    photo_pixels = task.preprocess(Image.open(photo).convert("RGB"))
    padded = torch.zeros_like(pixels)
    padded[0] = photo_pixels
    inputs = {
        "frames": torch.stack([pixels, padded]),
        "length": torch.tensor([8, 1]),
        "is_video": torch.tensor([True, False]),
    }
    with torch.no_grad():
        videos = nn.functional.normalize(towers["video"](inputs))  # (2, D)
        text = nn.functional.normalize(towers["text"](task._tokens(PairSide(text="a clip"))[None]))
    assert towers["video"].num_frames == 8
    encoded = model.encode(
        [mmembed.Video(str(clip), num_frames=8), str(photo), "a clip"], convert_to="torch"
    )
    assert (encoded - torch.cat([videos, text])).abs().max() <= 1e-5


def test_bad_schedules_are_refused(tmp_path):
    from mmembed.train.tasks import build_task

    for schedule, message in (
        ([[5, 1]], "start at 0"),
        ([[0, 1], [10, 0]], ">= 1"),
        ([[0]], "pairs"),
    ):
        config = TrainConfig(
            task="video_curriculum", output_dir="o", task_options={"frames_schedule": schedule}
        )
        with pytest.raises(ValueError, match=message):
            build_task(config)
