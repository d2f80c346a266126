"""Recipe ``instruction_tuning_vlm``: LoRA on a VLM backbone, VLM2Vec style, on MMEB-train rows.

The VLM (``mmembed.encoders.vlm``: one prompt per item, last-token pooling) gets PEFT LoRA
adapters on its language model's linear layers; only the adapters train, on query / positive
/ hard-negative rows with in-batch negatives and GradCache. Each item's prompt is written
and run through the VLM's processor in ``collate`` (so in data-loader workers), padded per
item, so GradCache can split a batch by items. ``init`` names the VLM: a local transformers
checkpoint folder (read with the options' backbone and pixel limits), a saved mmembed VLM
folder or a zoo name. At the end the adapters are merged into the weights and the run writes
the embedder as ``final/``, which loads without ``peft``::

    embedder = mmembed.load("runs/instruction_tuning_vlm/final")

Training needs ``pip install peft``; images only (a video row is skipped as unusable).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ...embedder import Embedder, EmbedderCfg
from ...encoders.hf_text import pool
from ...encoders.vlm import VLMCfg, VLMTower
from ...errors import InputError
from ...models.families.vlm import vlm_embedder
from ...processors.sequence import Frames, plan_sequence
from ..config import TrainConfig
from ..data import PairSide, Sample
from ..options import VlmInstructionOptions
from .base import Task, register_task
from .instruction_tuning import as_mmembed_input

logger = logging.getLogger(__name__)

# (L,) per item, padded on the right (mm_token_type_ids: transformers >= 5 marks image tokens)
TOKEN_FIELDS = ("input_ids", "attention_mask", "mm_token_type_ids")
PIXEL_FIELDS = ("pixel_values", "image_grid_thw")  # (rows, C) and (images, 3) per item


class LoraVLMTower(nn.Module):
    """A VLM with LoRA adapters; maps per-item processor outputs (padded) to ``(B, D)``.

    Input: ``TOKEN_FIELDS`` ``(B, L)``, and when any item has images,
    ``pixel_values`` ``(B, R, C)`` with ``pixel_rows`` ``(B,)`` and ``image_grid_thw``
    ``(B, M, 3)`` with ``num_images`` ``(B,)``: each item's rows, padded.
    """

    def __init__(self, vlm: VLMTower):
        super().__init__()
        self.vlm = vlm

    def forward(self, inputs: dict[str, Tensor]) -> Tensor:
        model = self.vlm.model
        parameter = next(model.parameters())
        kwargs = {key: inputs[key] for key in TOKEN_FIELDS if key in inputs}
        if "pixel_values" in inputs and int(inputs["num_images"].sum()):
            pixel_rows, num_images = inputs["pixel_rows"].tolist(), inputs["num_images"].tolist()
            kwargs["pixel_values"] = torch.cat(
                [inputs["pixel_values"][b, :n] for b, n in enumerate(pixel_rows)]
            ).to(parameter.dtype)  # (R_total, C)
            kwargs["image_grid_thw"] = torch.cat(
                [inputs["image_grid_thw"][b, :n] for b, n in enumerate(num_images)]
            )  # (images, 3)
        hidden = model.model(**kwargs).last_hidden_state  # (B, L, D)
        return pool(hidden, inputs["attention_mask"], "last")  # (B, D)


@register_task("instruction_tuning_vlm")
class VlmInstructionTask(Task):
    """One LoRA-adapted VLM tower embeds queries, positives and hard negatives."""

    Options = VlmInstructionOptions
    sides = {"query": "vlm", "positive": "vlm", "negative": "vlm"}

    def __init__(self, options: VlmInstructionOptions, config: TrainConfig):
        super().__init__(options, config)
        self.lora_config: Any = None

    def build_model(self) -> Embedder:
        """The VLM embedder ``init`` names (a checkpoint folder is read with the options)."""
        o, path = self.options, Path(self.init)
        if (path / "config.json").is_file() and not (path / "mmembed_config.json").is_file():
            cfg = VLMCfg(
                path=str(path),
                backbone=o.backbone,
                processor_path=o.processor_path,
                min_pixels=o.min_pixels,
                max_pixels=o.max_pixels,
            )
            return vlm_embedder(cfg, EmbedderCfg(name=str(path)))
        embedder = super().build_model()
        if "sequence" not in embedder.towers:
            raise ValueError(f"init {self.init}: instruction_tuning_vlm trains VLM embedders")
        return embedder

    @property
    def tower(self) -> VLMTower:
        return self.model.towers["sequence"]

    def build_towers(self) -> nn.ModuleDict:
        """The VLM with adapters injected; every base weight frozen."""
        try:
            from peft import LoraConfig, inject_adapter_in_model
        except ImportError as error:
            raise ImportError(
                "instruction_tuning_vlm trains LoRA adapters: pip install peft"
            ) from error
        o = self.options
        self.lora_config = LoraConfig(
            r=o.lora.r,
            lora_alpha=o.lora.alpha,
            lora_dropout=o.lora.dropout,
            target_modules=list(o.lora.target_modules),
        )
        for parameter in self.tower.model.parameters():
            parameter.requires_grad_(False)
        inject_adapter_in_model(self.lora_config, self.tower.model)  # adapters: requires_grad
        trainable = sum(p.numel() for p in self.tower.model.parameters() if p.requires_grad)
        logger.info("instruction_tuning_vlm: %d LoRA parameters train", trainable)
        return nn.ModuleDict({"vlm": LoraVLMTower(self.tower)})

    def enable_gradient_checkpointing(self, towers: nn.ModuleDict) -> None:
        """transformers' own hook (renamed ``activation_checkpointing_enable`` in v5)."""
        model = self.tower.model
        hook = getattr(model, "activation_checkpointing_enable", None)
        (hook or model.gradient_checkpointing_enable)()

    def prepare(self, sample: Sample) -> dict[str, Any]:
        record = sample.record
        prepared: dict[str, Any] = {
            "query": self._process(record.query),
            "positive": self._process(record.positive),
        }
        if record.negatives:
            prepared["negative"] = [self._process(item) for item in record.negatives]
        return prepared

    def _process(self, item: PairSide) -> dict[str, Tensor]:
        """One item's prompt through the VLM's processor: unpadded tensors."""
        sequence = plan_sequence(as_mmembed_input(item, "in_place"), None, _no_tables)
        if any(isinstance(segment, Frames) for segment in sequence.segments):
            raise InputError("instruction_tuning_vlm reads images only, not videos")
        out = self.tower.process([sequence])  # the prompt and pixels inference makes
        processed = {key: out[key][0] for key in TOKEN_FIELDS if key in out}
        if "pixel_values" in out:
            processed.update({key: out[key] for key in PIXEL_FIELDS})
        return processed

    def stack(self, prepared: list[dict[str, Any]]) -> dict[str, Any]:
        batch = {}
        for side in prepared[0] if prepared else ():
            items: list[dict[str, Tensor]] = []
            for one in prepared:
                value = one[side]
                items.extend(value if isinstance(value, list) else [value])
            batch[side] = pad_processed(items, int(self.tower.processor.tokenizer.pad_token_id))
        return batch

    def final_model(self, towers: nn.ModuleDict) -> Embedder:
        """The VLM with every adapter merged into its layer: a plain model, saved without peft."""
        merged = merge_peft_layers(self.tower.model)
        logger.info("instruction_tuning_vlm: merged %d LoRA layers", merged)
        return self.model


def merge_peft_layers(model: nn.Module) -> int:
    """Merge PEFT LoRA layers into their base layers and put the base layers back in place."""
    from peft.tuners.lora import LoraLayer

    found = [(name, m) for name, m in model.named_modules() if isinstance(m, LoraLayer)]
    for name, module in found:
        module.merge()
        parent, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent) if parent else model, child, module.get_base_layer())
    return len(found)


def pad_processed(items: list[dict[str, Tensor]], pad_id: int) -> dict[str, Tensor]:
    """Per-item processor outputs -> right-padded ``(B, ...)`` tensors (see LoraVLMTower)."""
    longest = max(len(item["input_ids"]) for item in items)
    batch = {
        key: torch.full((len(items), longest), pad_id if key == "input_ids" else 0)
        for key in TOKEN_FIELDS
        if key in items[0]
    }
    for row, item in enumerate(items):
        for key in batch:
            batch[key][row, : len(item[key])] = item[key]
    with_images = [item for item in items if "pixel_values" in item]
    if not with_images:
        return batch
    rows = max(len(item["pixel_values"]) for item in with_images)
    images = max(len(item["image_grid_thw"]) for item in with_images)
    width = with_images[0]["pixel_values"].shape[1]
    batch["pixel_values"] = torch.zeros(len(items), rows, width)
    batch["pixel_rows"] = torch.zeros(len(items), dtype=torch.long)
    batch["image_grid_thw"] = torch.zeros(len(items), images, 3, dtype=torch.long)
    batch["num_images"] = torch.zeros(len(items), dtype=torch.long)
    for row, item in enumerate(items):
        if "pixel_values" in item:
            count, grids = len(item["pixel_values"]), len(item["image_grid_thw"])
            batch["pixel_values"][row, :count] = item["pixel_values"]
            batch["pixel_rows"][row] = count
            batch["image_grid_thw"][row, :grids] = item["image_grid_thw"]
            batch["num_images"][row] = grids
    return batch


def _no_tables(table: object) -> str:
    raise InputError("instruction_tuning_vlm rows hold no tables")
