"""VLM2Vec-style towers: a vision-language model reads an item whole; its last token is the vector.

VLM2Vec (Jiang et al., ICLR 2025) writes one prompt per item: a visual placeholder token per
image or video, then the task instruction, then the text (``"<|image_pad|> Represent the given
image with the following question: What is in the image?"``). The model runs once over the
prompt and the hidden state of the last non-padding token is the embedding. Padding may be on
either side: pooling finds the last attended token, and the rotary positions come from the
attention mask, so a padded batch gives the same vectors as items run alone.

What differs between VLM families (model class, prompt style and tokens, adapter key names)
lives in ``BACKBONES``: Qwen2-VL (VLM2Vec V1 and V2), Qwen3-VL (Qwen3-VL-Embedding, whose
prompt is a chat; see ``vlm_inputs``) and LLaVA-Next (VLM2Vec-LLaVa-Next). Phi-3.5-V cannot run
here and is refused by name and by model type (``models.zoo.UNSUPPORTED``).
"""

from __future__ import annotations

import json
import logging
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import transformers
from torch import nn

from ..processors.sequence import SequenceItem
from .hf_text import pool, quiet_transformers
from .vlm_inputs import (
    ImagePrep,
    PromptCfg,
    VideoPrep,
    format_prompt,
    prepare_image,
    prepare_video,
)

__all__ = ["BACKBONES", "BackboneSpec", "PromptCfg", "VLMCfg", "VLMTower", "format_prompt"]

logger = logging.getLogger(__name__)

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass(frozen=True)
class BackboneSpec:
    """One VLM family: its transformers class, prompt tokens, adapter key names, and how its own
    MMEB code reads MMEB rows."""

    model_class: str  # transformers class, e.g. "Qwen2VLForConditionalGeneration"
    prompt: PromptCfg
    # (regex, replacement) applied to LoRA module names saved by older transformers versions
    adapter_renames: tuple[tuple[str, str], ...] = ()
    # how the family's own MMEB code reads MMEB rows: "joined" (MMEB-eval's texts, instruction
    # included: VLM2Vec) or "split" (MMEB_Test_Instruct's instruction apart: Qwen3-VL-Embedding)
    mmeb_rows: str = "joined"


BACKBONES: dict[str, BackboneSpec] = {
    "qwen2_vl": BackboneSpec(
        model_class="Qwen2VLForConditionalGeneration",
        prompt=PromptCfg(image_token="<|image_pad|>", video_token="<|video_pad|>"),
        # transformers >= 4.52 nests the language model and the vision tower under ``model``.
        adapter_renames=(
            (r"^model\.(?!language_model\.|visual\.)", "model.language_model."),
            (r"^visual\.", "model.visual."),
        ),
    ),
    # Qwen3-VL-Embedding: the chat template's vision span per image, the reference's default
    # system message (src/models/qwen3_vl_embedding.py, Qwen3VLEmbedder.__init__).
    "qwen3_vl": BackboneSpec(
        model_class="Qwen3VLForConditionalGeneration",
        prompt=PromptCfg(
            image_token="<|vision_start|><|image_pad|><|vision_end|>",
            video_token="<|vision_start|><|video_pad|><|vision_end|>",
            style="qwen_chat",
            default_instruction="Represent the user's input.",
        ),
        # src/evaluation/mmeb_v2/data/datasets/image_*.py (QwenLM/Qwen3-VL-Embedding 8ce3aab)
        mmeb_rows="split",
    ),
    # LLaVA-Next (VLM2Vec-LLaVa-Next): VLM2Vec's prompt with LLaVA's "<image>" token, which the
    # processor expands to the image's anyres feature count (VLM2Vec v1 src/model_utils.py
    # vlm_image_tokens); the model reads no video in VLM2Vec.
    "llava_next": BackboneSpec(
        model_class="LlavaNextForConditionalGeneration",
        prompt=PromptCfg(image_token="<image>", video_token=None),
    ),
}


@dataclass(frozen=True)
class VLMCfg:
    path: str  # local transformers checkpoint: config.json and weights (and processor files)
    backbone: str = "qwen2_vl"  # key of BACKBONES
    processor_path: str | None = None  # processor files when they are not in ``path``
    adapter_path: str | None = None  # LoRA adapter folder (PEFT format) merged in at load
    padding_side: str = "right"  # VLM2Vec pads Qwen2-VL on the right; vectors do not depend on it
    dtype: str = "float32"  # weights: "float32", "bfloat16" or "float16"
    min_pixels: int | None = None  # the processor resizes images to at least this many pixels
    max_pixels: int | None = None  # ... and at most this many (None: the processor's default)
    image_resize: int | None = None  # first squash every image to this square side (VLM2Vec's
    # "high" resolution is 1344, src/dataset.py lines 16-29 on its v1 branch); None keeps the size
    weights: bool = True  # False: build from config.json alone; the caller loads the weights
    upscale_below: int | None = None  # an image with a side under this is squashed to twice it
    # (VLM2Vec's Qwen2-VL processing: under 28 pixels -> 56x56); None: no such step
    image_factor: int | None = None  # resize images here to multiples of this (patch x merge)
    # within min_pixels/max_pixels, and the processor does not resize (Qwen3-VL-Embedding: 32);
    # None: the processor resizes, within min_pixels/max_pixels


class VLMTower(nn.Module):
    """A transformers VLM and its processor; ``forward`` maps ``SequenceItem`` s to ``(B, D)``."""

    def __init__(self, cfg: VLMCfg):
        super().__init__()
        if cfg.backbone not in BACKBONES:
            raise ValueError(f"unknown VLM backbone {cfg.backbone!r}; known: {sorted(BACKBONES)}")
        if cfg.padding_side not in ("left", "right"):
            raise ValueError(f"padding_side must be 'left' or 'right', got {cfg.padding_side!r}")
        self.cfg = cfg
        self.spec = BACKBONES[cfg.backbone]
        self.model = _load_model(cfg, self.spec)
        if cfg.adapter_path is not None:
            merge_lora(self.model, Path(cfg.adapter_path), self.spec.adapter_renames)
        self.processor = _load_processor(cfg)
        self.dim = int(self.model.config.get_text_config().hidden_size)
        self.image_prep = ImagePrep(
            presize=cfg.image_resize,
            upscale_below=cfg.upscale_below,
            factor=cfg.image_factor,
            min_pixels=cfg.min_pixels if cfg.image_factor is not None else None,
            max_pixels=cfg.max_pixels if cfg.image_factor is not None else None,
        )

    def save_files(self, folder: Path) -> dict[str, Any]:
        """Write the processor and model config (``encoders.base.SavesFiles``)."""
        self.processor.save_pretrained(folder)
        self.model.config.save_pretrained(folder)
        return {}

    def forward(self, items: list[SequenceItem]) -> torch.Tensor:
        inputs = self._to_model(self.process(items))
        hidden = self.model.model(**inputs).last_hidden_state  # (B, L, D)
        return pool(hidden, inputs["attention_mask"], "last")  # (B, D)

    def process(self, items: list[SequenceItem]) -> transformers.BatchFeature:
        """The processor's outputs for ``items``: the family's prompts, images and videos
        prepared as its reference prepares them (training uses this too)."""
        prompts, images, videos = [], [], []
        for item in items:
            text, item_images, item_videos = format_prompt(item, self.spec.prompt)
            prompts.append(text)
            images += item_images
            videos += item_videos
        images = [prepare_image(image, self.image_prep) for image in images]
        prepared = {}
        if self.cfg.image_factor is not None:  # pixels prepared here, as the reference does
            prepared = {"do_resize": False}
            if videos:
                video_prep = VideoPrep(factor=self.cfg.image_factor)
                ready = [prepare_video(frames, video_prep) for frames in videos]
                videos = [video for video, _ in ready]
                metadata = [meta for _, meta in ready]
                prepared |= {"video_metadata": metadata, "do_sample_frames": False}
        return self.processor(
            text=prompts,
            images=images or None,
            videos=videos or None,
            padding=True,
            padding_side=self.cfg.padding_side,
            return_tensors="pt",
            **prepared,
        )

    def _to_model(self, inputs) -> dict[str, torch.Tensor]:
        """Processor outputs on the model's device, pixels in the model's dtype."""
        parameter = next(self.model.parameters())
        return {
            key: value.to(parameter.device, parameter.dtype)
            if value.is_floating_point()
            else value.to(parameter.device)
            for key, value in inputs.items()
        }


def _load_model(cfg: VLMCfg, spec: BackboneSpec) -> nn.Module:
    model_class = getattr(transformers, spec.model_class, None)
    if model_class is None:
        raise ValueError(
            f"{cfg.backbone}: transformers {transformers.__version__} has no {spec.model_class}; "
            "upgrade transformers"
        )
    dtype = _DTYPES[cfg.dtype]
    with quiet_transformers():
        if cfg.weights:
            model = model_class.from_pretrained(cfg.path, dtype=dtype)
        else:
            config = transformers.AutoConfig.from_pretrained(cfg.path)
            model = model_class._from_config(config, dtype=dtype)
    return model.eval()


def _load_processor(cfg: VLMCfg):
    processor = transformers.AutoProcessor.from_pretrained(cfg.processor_path or cfg.path)
    if cfg.image_factor is None and (cfg.min_pixels is not None or cfg.max_pixels is not None):
        # Qwen2-VL-style dynamic resolution: the image processor's size holds the pixel bounds.
        image_processor = processor.image_processor
        size = dict(image_processor.size)
        if cfg.min_pixels is not None:
            size["shortest_edge"] = cfg.min_pixels
        if cfg.max_pixels is not None:
            size["longest_edge"] = cfg.max_pixels
        image_processor.size = type(image_processor.size)(**size)
    return processor


def merge_lora(
    model: nn.Module, adapter_dir: Path, renames: tuple[tuple[str, str], ...] = ()
) -> int:
    """Add a PEFT LoRA adapter into ``model``'s weights: ``W += scale * B @ A``; returns layers merged.

    The adapter is read without unpickling code (safetensors, or ``torch.load`` with
    ``weights_only=True``), so ``peft`` is not needed.
    """
    from ..hub import load_state_dict

    config = json.loads((adapter_dir / "adapter_config.json").read_text())
    if config.get("peft_type", "LORA") != "LORA":
        raise ValueError(
            f"{adapter_dir}: only LoRA adapters are supported, got {config['peft_type']}"
        )
    for key in ("rank_pattern", "alpha_pattern", "modules_to_save"):
        if config.get(key):
            raise ValueError(f"{adapter_dir}: adapters with {key} are not supported")
    rank = int(config["r"])
    scale = float(config["lora_alpha"]) / (math.sqrt(rank) if config.get("use_rslora") else rank)
    weights_file = next(
        (
            adapter_dir / name
            for name in ("adapter_model.safetensors", "adapter_model.bin")
            if (adapter_dir / name).is_file()
        ),
        None,
    )
    if weights_file is None:
        raise FileNotFoundError(f"{adapter_dir} has no adapter_model.safetensors or .bin")
    state = load_state_dict(weights_file)
    modules = dict(model.named_modules())
    merged = 0
    for key in sorted(state):
        if not key.endswith(".lora_A.weight"):
            if not key.endswith(".lora_B.weight"):
                raise ValueError(f"{weights_file}: unexpected adapter tensor {key!r}")
            continue
        stem = key.removesuffix(".lora_A.weight")
        module = modules.get(_module_name(stem, modules, renames))
        if module is None:
            raise ValueError(f"{weights_file}: no module of the model matches {stem!r}")
        a, b = state[key].float(), state[f"{stem}.lora_B.weight"].float()  # (r, in), (out, r)
        delta = b @ a * scale  # (out, in)
        if config.get("fan_in_fan_out"):
            delta = delta.T
        with torch.no_grad():
            module.weight += delta.to(module.weight.dtype)
        merged += 1
    logger.info("merged %d LoRA layers from %s (scale %.3g)", merged, adapter_dir, scale)
    return merged


def _module_name(stem: str, modules: dict, renames: tuple[tuple[str, str], ...]) -> str:
    """The model's module name for an adapter key (PEFT prefix dropped, old names renamed)."""
    name = stem.removeprefix("base_model.model.")
    if name in modules:
        return name
    for pattern, replacement in renames:
        renamed = re.sub(pattern, replacement, name)
        if renamed in modules:
            return renamed
    return name
