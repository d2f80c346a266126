"""The typed ``task_options`` of each built-in recipe, torch-free.

They live apart from the recipes (``train/tasks/``, which import torch) so that ``mmembed train``
checks a config's ``task_options`` in under a second, before any heavy import: a typo there is
one line naming the field. Each recipe's ``Options`` is the class named in ``TASK_OPTIONS``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .config import DataConfig


@dataclass(frozen=True)
class TinyClipCfg:
    """Shape of the tiny random open_clip model (``init: tiny``); seconds per step on a CPU."""

    embed_dim: int = 64  # size of the shared embedding space
    image_size: int = 32  # square input resolution in pixels
    patch_size: int = 8  # vision transformer patch size in pixels
    width: int = 64  # transformer width of both towers
    layers: int = 2  # transformer blocks per tower
    heads: int = 2  # attention heads per block
    context_length: int = 16  # text tokens per caption (longer captions are cut)


@dataclass
class ClipOptions:
    tiny: TinyClipCfg = field(default_factory=TinyClipCfg)  # the model's shape for init: tiny
    augment: bool = True  # random resized crop and horizontal flip of training images


@dataclass
class ClipRealignOptions(ClipOptions):
    stage: str = "image"  # "image": tune the image tower on image pairs; "text": realign text
    positive: str = "view"  # stage image: another augmented "view", or a same-"class" photo
    pseudo_captions: bool = False  # stage image: also align each photo with its caption
    pseudo_caption_weight: float = 1.0  # weight of that image-text term in the loss
    caption_template: str = "{}"  # caption column -> text, e.g. "a photo of a {}." for labels
    min_crop: float = 0.35  # smallest area fraction of a random crop in an augmented view
    eval_images: DataConfig | None = None  # photos: image->image R@1, views against originals
    eval_captions: DataConfig | None = None  # captioned photos: text->image R@1 and R@5
    eval_views: int = 4  # augmented query views per evaluation photo (image->image)


@dataclass
class InstructionTuningOptions:
    max_positions: int = 16  # document positions with their own gate bias in the head
    embed_batch_size: int = 32  # parts per tower forward while caching
    eval_data: DataConfig | None = None  # MMEB-train-format rows ranked before and after


@dataclass
class LoraOptions:
    r: int = 8  # rank of each adapter
    alpha: int = 16  # the update is scaled by alpha / r
    dropout: float = 0.0  # dropout on the adapter input
    # language-model linear layers to adapt (Qwen2-VL's vision blocks use other names)
    target_modules: list[str] = field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"]
    )


@dataclass
class VlmInstructionOptions:
    # When init is a transformers checkpoint folder, the VLM is read with these settings:
    backbone: str = "qwen2_vl"  # key of mmembed.encoders.vlm.BACKBONES
    processor_path: str | None = None  # processor files when they are not in model_path
    min_pixels: int | None = None  # the processor resizes images to at least this many pixels
    max_pixels: int | None = None  # ... and at most this many
    lora: LoraOptions = field(default_factory=LoraOptions)  # the adapters that train


@dataclass
class PixelTextOptions:
    positive: str = "teacher"  # "teacher" (distil), "perturbed" (unsupervised), "paired" (data)
    corpus: str | list[str] = "wordnet"  # a name of CORPORA, or a list of them pooled together
    corpus_path: str | None = None  # data folder of a single corpus (default: its Debian path)
    min_chars: int = 10  # shorter texts are dropped
    max_chars: int = 160  # longer texts are dropped (they would not fit one page band or two)
    max_texts: int | None = None  # seeded sample of the training texts; None keeps all
    held_out_permille: int = 10  # texts whose hash falls in this share are never trained on
    eval_texts: int = 1000  # held-out texts that ``evaluate`` searches (0: no evaluation)
    table_fraction: float = 0.1  # dictionary tables added, as a fraction of the training texts
    table_rows: list[int] = field(default_factory=lambda: [2, 6])  # rows per table: min, max
    typo_prob: float = 0.2  # chance a query page shows its text with typos
    shuffle_prob: float = 0.1  # chance a query page shows its words shuffled
    distill_weight: float = 1.0  # weight of 1 - cos(page, teacher) ("teacher" positives)
    perturb_weight: float = 0.0  # weight of page-vs-perturbed-page InfoNCE ("teacher" mode)
    perturb_temperature: float = 0.05  # fixed temperature of that term (SimCSE's)
    teacher_batch: int = 128  # texts per teacher forward pass
    tower: dict[str, Any] = field(default_factory=dict)  # PixelCfg overrides (architecture...)
    render: dict[str, Any] = field(default_factory=dict)  # RenderConfig overrides (font_size...)
    fonts: list[str] = field(default_factory=list)  # font file globs drawn from per page; empty:
    # every page in ``render``'s one font and layout (the recipe's original pages)
    held_out_fonts: list[str] = field(default_factory=list)  # globs training must never use
    style: dict[str, Any] = field(default_factory=dict)  # styles.StyleCfg overrides
    paragraph_fraction: float = 0.0  # extra texts made of 2-4 training texts run together
    html_fraction: float = 0.0  # extra pages laid out by headless Chromium (of training texts)
    html_families: list[str] = field(default_factory=list)  # CSS font families for those pages
    init_tower: str | None = None  # a saved tower (folder/stem, no suffix) to start from


@dataclass
class VideoCurriculumOptions(ClipOptions):
    # [step, frames] pairs, steps increasing from 0: from ``step`` on, videos use ``frames``.
    frames_schedule: list[list[int]] = field(default_factory=lambda: [[0, 1], [20, 4], [40, 8]])
    temporal_heads: int = 2  # attention heads of the temporal block (must divide embed_dim)


# built-in task name -> its Options class (train.config.BUILTIN_TASKS names the same tasks)
TASK_OPTIONS: dict[str, type] = {
    "tiny_clip": ClipOptions,
    "clip_realign": ClipRealignOptions,
    "pixel_text": PixelTextOptions,
    "video_curriculum": VideoCurriculumOptions,
    "instruction_tuning": InstructionTuningOptions,
    "instruction_tuning_vlm": VlmInstructionOptions,
}
