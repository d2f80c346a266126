"""Recipe ``tiny_clip``: contrastive image-caption training of an open_clip embedder.

With ``init: tiny`` (the default) the model is a small random open_clip model that runs end to
end on a CPU in seconds, which makes it the smoke test of the whole training path (data,
GradCache, checkpoints, logging, ``final/``); with ``init: ViT-B-32.laion2b_s34b_b79k`` (or any
open_clip model) the same recipe fine-tunes a real CLIP.
"""

from __future__ import annotations

from .base import register_task
from .clip_base import ClipOptions, ClipTask

TinyClipOptions = ClipOptions


@register_task("tiny_clip")
class TinyClipTask(ClipTask):
    """Photos through the image tower, their captions through the text tower."""
