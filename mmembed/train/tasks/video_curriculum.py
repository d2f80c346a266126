"""Recipe ``video_curriculum``: video-text training from images up to 8-frame clips.

After Bain et al., "Frozen in Time: A Joint Video and Image Encoder for End-to-End
Retrieval" (ICCV 2021). Frames go through the init embedder's image tower, are unit-normalised
(as the embedder does at inference), and a :class:`TemporalAttentionPool`, which becomes the
embedder's temporal module, pools them. The pool's
output projection and position table start at zero, so at step 0 a still clip embeds exactly
as its image and training starts from the image model.

``frames_schedule`` lists ``[step, frames]`` pairs: from ``step`` on, videos use ``frames``
frames. Images share batches with clips but skip the temporal block, as ``Embedder.encode``
embeds an image, so images train the image tower the saved model uses for them.
When the frame count grows past the position table, the table is stretched by linear
interpolation (``resize_positions``) and the trainer moves the optimizer onto it.

Clips are decoded once per sample at the schedule's largest frame count (segment middles);
the tower samples the current stage's frames from those, so the data loader, which may run in
worker processes, never needs to know the step.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch import Tensor, nn

from ...embedder import Embedder
from ...encoders.temporal import TemporalAttentionPool
from ...errors import InputError
from ...modality import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS
from ...processors.image import load_image
from ...processors.video import decode_video, sample_frame_indices
from ..config import TrainConfig
from ..data import Sample
from ..options import VideoCurriculumOptions
from .base import register_task
from .clip_base import ClipTask

logger = logging.getLogger(__name__)


class VideoTower(nn.Module):
    """Frames -> image tower -> unit vectors -> temporal pool; images skip the pool.

    Input: ``{"frames": (B, T, 3, H, W), "length": (B,), "is_video": (B,)}``, where row ``b``
    holds ``length[b]`` real frames (1 for an image) and zero padding. ``num_frames`` frames
    are sampled from each video (segment middles); rows with equal counts are pooled together.
    An image row is its unit image embedding, exactly as the embedder embeds an image.
    """

    def __init__(self, image: nn.Module, temporal: TemporalAttentionPool, num_frames: int = 1):
        super().__init__()
        self.image = image
        self.temporal = temporal
        self.num_frames = num_frames  # set by the curriculum before each step

    def forward(self, inputs: dict[str, Tensor]) -> Tensor:
        frames, lengths = inputs["frames"], inputs["length"].tolist()
        videos = inputs["is_video"].tolist()
        picks = [sample_frame_indices(n, min(n, self.num_frames)) for n in lengths]
        flat = torch.cat([frames[row, index] for row, index in enumerate(picks)])  # (F, 3, H, W)
        embedded = nn.functional.normalize(self.image(flat), dim=-1)  # (F, D)
        per_row = embedded.split([len(index) for index in picks])
        out: list[Tensor | None] = [None] * len(picks)
        by_count: dict[int, list[int]] = {}
        for row, index in enumerate(picks):
            if videos[row]:
                by_count.setdefault(len(index), []).append(row)
            else:
                out[row] = per_row[row][0]
        for rows in by_count.values():
            pooled = self.temporal(torch.stack([per_row[row] for row in rows]))  # (b, D)
            for row, vector in zip(rows, pooled, strict=True):
                out[row] = vector
        return torch.stack(out)  # (B, D)

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.image.set_grad_checkpointing(enable)


@register_task("video_curriculum")
class VideoCurriculumTask(ClipTask):
    """Video tower (frames + temporal attention) embeds clips and images; text embeds captions."""

    Options = VideoCurriculumOptions
    sides = {"query": "video", "positive": "text", "negative": "text"}

    def __init__(self, options: VideoCurriculumOptions, config: TrainConfig):
        _check_schedule(options.frames_schedule)
        super().__init__(options, config)
        self.max_frames = max(frames for _, frames in options.frames_schedule)

    def frames_at(self, step: int) -> int:
        """Video frames the schedule gives ``step``."""
        return [frames for start, frames in self.options.frames_schedule if start <= step][-1]

    def build_model(self) -> Embedder:
        """The init embedder with a temporal attention block (kept if it has one already)."""
        embedder = super().build_model()
        if not isinstance(embedder.temporal, TemporalAttentionPool):
            heads, frames = self.options.temporal_heads, self.frames_at(0)
            embedder.temporal = TemporalAttentionPool(embedder.dim, heads, max_frames=frames)
        return embedder

    def build_towers(self) -> nn.ModuleDict:
        """The embedder's image tower and temporal block as one video tower, and its text tower."""
        towers = super().build_towers()
        return nn.ModuleDict(
            {"video": VideoTower(towers["image"], self.model.temporal), "text": towers["text"]}
        )

    def on_step(self, step: int, towers: nn.ModuleDict) -> None:
        """Set the stage's frame count; stretch the position table when it grows."""
        tower: VideoTower = towers["video"]
        frames = self.frames_at(step)
        if frames != tower.num_frames:
            logger.info("step %d: videos now use %d frames", step, frames)
            tower.num_frames = frames
        if frames > tower.temporal.positions.shape[0]:
            tower.temporal.resize_positions(frames)

    def prepare(self, sample: Sample) -> dict[str, Any]:
        record = sample.record
        if not record.query.image:
            raise InputError("video_curriculum needs a video or image per row")
        frames = self._frames(sample.seed, *self._load(record.query.image))
        prepared = {"query": frames, "positive": self._tokens(record.positive)}
        if record.negatives:
            prepared["negative"] = [self._tokens(item) for item in record.negatives]
        return prepared

    def stack(self, prepared: list[dict[str, Any]]) -> dict[str, Any]:
        """Stack as usual, but the video side into one ``frames`` / ``length`` dict."""
        if not prepared:
            return {}
        videos = [one.pop("query") for one in prepared]
        batch = super().stack(prepared)
        batch["query"] = {
            "frames": torch.stack([frames for frames, _, _ in videos]),  # (B, T, 3, H, W)
            "length": torch.tensor([length for _, length, _ in videos]),  # (B,)
            "is_video": torch.tensor([is_video for _, _, is_video in videos]),  # (B,)
        }
        return batch

    def _load(self, path: str) -> tuple[list[Image.Image], bool]:
        """A video's frames at the schedule's largest count, or an image as one frame."""
        source = Path(path)
        if source.is_dir():
            names = sorted(p for p in source.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
            return decode_video([load_image(str(p)) for p in names], self.max_frames), True
        if source.suffix.lower() in VIDEO_EXTENSIONS:
            return decode_video(str(source), self.max_frames), True
        return [load_image(path)], False

    def _frames(
        self, seed: int, frames: list[Image.Image], is_video: bool
    ) -> tuple[Tensor, int, bool]:
        """Transformed frames padded to ``max_frames``; one crop for the whole clip."""
        pixels = []
        for frame in frames:
            with torch.random.fork_rng(devices=[]):  # the same seed: the same crop on each frame
                torch.manual_seed(seed)
                pixels.append(self.transform(frame))  # (3, H, W)
        padded = torch.zeros(self.max_frames, *pixels[0].shape)
        padded[: len(pixels)] = torch.stack(pixels)
        return padded, len(pixels) if is_video else 1, is_video


def _check_schedule(schedule: list[list[int]]) -> None:
    """Steps start at 0 and increase; frame counts are positive."""
    if not schedule or any(len(pair) != 2 for pair in schedule):
        raise ValueError("task_options.frames_schedule must be a list of [step, frames] pairs")
    steps = [step for step, _ in schedule]
    if steps[0] != 0 or steps != sorted(set(steps)):
        raise ValueError(f"frames_schedule steps must start at 0 and increase, got {steps}")
    if any(frames < 1 for _, frames in schedule):
        raise ValueError(f"frames_schedule frame counts must be >= 1, got {schedule}")
