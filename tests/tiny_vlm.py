"""Tiny, randomly initialised Qwen2-VL, Qwen3-VL and LLaVA-Next checkpoints built offline, for
VLM tests, and the helpers that load a zoo entry on them and watch its processor.

The tokenizer is a BPE trained here on a few sentences, with the family's special tokens
(byte-level for Qwen, Llama's sentencepiece style with byte fallback and a BOS token for
LLaVA-Next); each model has two text layers, a vision tower of one or two blocks and a 32-wide
hidden state.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path

import torch
from PIL import Image
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import (
    LlamaTokenizer,
    LlavaNextConfig,
    LlavaNextForConditionalGeneration,
    LlavaNextImageProcessor,
    LlavaNextProcessor,
    PreTrainedTokenizerFast,
    Qwen2VLConfig,
    Qwen2VLForConditionalGeneration,
    Qwen2VLProcessor,
    Qwen3VLConfig,
    Qwen3VLForConditionalGeneration,
    Qwen3VLProcessor,
)
from transformers.models.qwen2_vl.image_processing_qwen2_vl import Qwen2VLImageProcessor
from transformers.models.qwen2_vl.video_processing_qwen2_vl import Qwen2VLVideoProcessor
from transformers.models.qwen3_vl.video_processing_qwen3_vl import Qwen3VLVideoProcessor

import mmembed
from mmembed.hub import LocalSource
from mmembed.models import zoo

SPECIAL_TOKENS = [
    "<|endoftext|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
]
CHAT_TOKENS = ["<|im_start|>", "<|im_end|>"]  # Qwen3-VL's chat frame
CORPUS = [
    "Represent the given image with the following question: what is in the image?",
    "Find me an everyday image that matches the given caption: a cat on a sofa.",
    "A cup of coffee on a wooden table, seen from above. The rocket stands on the pad.",
    "Represent the given video. Planets, moons and the Apollo program.",
    "system user assistant. Represent the user's input. Retrieve images or text relevant to the",
]
PIXELS = {"min_pixels": 28 * 28, "max_pixels": 56 * 56, "patch_size": 14, "merge_size": 2}


def tiny_tokenizer(special_tokens: list[str] = SPECIAL_TOKENS) -> PreTrainedTokenizerFast:
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=special_tokens,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    bpe.train_from_iterator(CORPUS, trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=bpe, pad_token="<|endoftext|>", eos_token="<|endoftext|>"
    )


# The text model of every tiny VLM: 2 layers of width 32, grouped-query attention.
TINY_TEXT = {
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
}


def _save(model_class, config, processor, folder: Path, seed: int) -> Path:
    """Build ``model_class(config)`` with seeded random weights; save it and its processor."""
    torch.manual_seed(seed)
    model = model_class(config).eval()
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def build_tiny_qwen2_vl(folder: Path, seed: int = 0) -> Path:
    """Save a tiny Qwen2-VL model and its processor to ``folder``; returns it."""
    tokenizer = tiny_tokenizer()
    ids = dict(zip(SPECIAL_TOKENS, tokenizer.convert_tokens_to_ids(SPECIAL_TOKENS), strict=True))
    processor = Qwen2VLProcessor(
        image_processor=Qwen2VLImageProcessor(**PIXELS, temporal_patch_size=2),
        video_processor=Qwen2VLVideoProcessor(**PIXELS, temporal_patch_size=2),
        tokenizer=tokenizer,
    )
    config = Qwen2VLConfig(
        text_config={
            **TINY_TEXT,
            "vocab_size": len(tokenizer),
            "max_position_embeddings": 1024,
            "rope_scaling": {"type": "mrope", "mrope_section": [2, 1, 1]},
            "bos_token_id": ids["<|endoftext|>"],
            "eos_token_id": ids["<|endoftext|>"],
            "pad_token_id": ids["<|endoftext|>"],
        },
        vision_config={
            "depth": 1,
            "embed_dim": 32,
            "hidden_size": 32,
            "num_heads": 2,
            "mlp_ratio": 2,
            "patch_size": 14,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
        },
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
    )
    return _save(Qwen2VLForConditionalGeneration, config, processor, folder, seed)


# Qwen3-VL reads 16-pixel patches merged 2x2: one merged token per 32x32 pixels.
QWEN3_PIXELS = {"patch_size": 16, "merge_size": 2, "temporal_patch_size": 2}


def build_tiny_qwen3_vl(folder: Path, seed: int = 0) -> Path:
    """Save a tiny Qwen3-VL model and its processor to ``folder``; returns it."""
    special = SPECIAL_TOKENS + CHAT_TOKENS
    tokenizer = tiny_tokenizer(special)
    ids = dict(zip(special, tokenizer.convert_tokens_to_ids(special), strict=True))
    half = [0.5, 0.5, 0.5]  # Qwen3-VL normalises pixels to [-1, 1]
    pixels = {"image_mean": half, "image_std": half, **QWEN3_PIXELS}
    budget = {"shortest_edge": 32 * 32, "longest_edge": 64 * 64}
    processor = Qwen3VLProcessor(
        image_processor=Qwen2VLImageProcessor(size=budget, **pixels),
        video_processor=Qwen3VLVideoProcessor(size=budget, **pixels),
        tokenizer=tokenizer,
    )
    config = Qwen3VLConfig(
        text_config={
            **TINY_TEXT,
            "vocab_size": len(tokenizer),
            "head_dim": 8,
            "max_position_embeddings": 1024,
            "rope_parameters": {
                "rope_type": "default",
                "rope_theta": 5000.0,
                "mrope_section": [2, 1, 1],
                "mrope_interleaved": True,
            },
            "pad_token_id": ids["<|endoftext|>"],
        },
        vision_config={
            "depth": 1,
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_heads": 2,
            "out_hidden_size": 32,
            "num_position_embeddings": 64,
            "deepstack_visual_indexes": [0],
            "patch_size": 16,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
        },
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
    )
    return _save(Qwen3VLForConditionalGeneration, config, processor, folder, seed)


# LLaVA-Next reads 14-pixel patches of a 28-pixel CLIP tile (2x2 patches), the anyres grid scaled
# down from llava-v1.6's 336-pixel tiles (pinpoints 336x672 ... 336x1008) by 12.
LLAVA_TILE = 28
LLAVA_PINPOINTS = [[28, 56], [56, 28], [56, 56], [84, 28], [28, 84]]
LLAVA_SPECIAL = ["<unk>", "<s>", "</s>"]


def tiny_llama_tokenizer() -> LlamaTokenizer:
    """A Llama tokenizer (sentencepiece-style BPE with byte fallback, BOS added) trained here,
    with LLaVA-Next's ``<image>`` and ``<pad>`` tokens added, as llava-v1.6-mistral's files do."""
    bpe = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True))
    bpe.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first")
    byte_tokens = [f"<0x{value:02X}>" for value in range(256)]
    trainer = trainers.BpeTrainer(vocab_size=600, special_tokens=LLAVA_SPECIAL + byte_tokens)
    bpe.train_from_iterator(CORPUS, trainer)
    state = json.loads(bpe.to_str())["model"]
    tokenizer = LlamaTokenizer(
        vocab=state["vocab"],
        merges=[tuple(merge) for merge in state["merges"]],
        add_bos_token=True,
        legacy=False,
    )
    tokenizer.add_special_tokens({"additional_special_tokens": ["<image>"], "pad_token": "<pad>"})
    return tokenizer


def tiny_llava_next_processor() -> LlavaNextProcessor:
    """LLaVA-Next's processor on the tiny tile (CLIP's OpenAI mean and std, as llava-v1.6's)."""
    image_processor = LlavaNextImageProcessor(
        size={"shortest_edge": LLAVA_TILE},
        crop_size={"height": LLAVA_TILE, "width": LLAVA_TILE},
        image_grid_pinpoints=LLAVA_PINPOINTS,
    )
    return LlavaNextProcessor(
        image_processor=image_processor,
        tokenizer=tiny_llama_tokenizer(),
        patch_size=14,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,  # CLIP's class token, dropped by "default"
    )


def build_tiny_llava_next(folder: Path, seed: int = 0) -> Path:
    """Save a tiny LLaVA-Next (CLIP vision tower, Mistral text model) and its processor."""
    processor = tiny_llava_next_processor()
    tokenizer = processor.tokenizer
    config = LlavaNextConfig(
        vision_config={
            "model_type": "clip_vision_model",
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "image_size": LLAVA_TILE,
            "patch_size": 14,
            "projection_dim": 32,
        },
        text_config={
            "model_type": "mistral",
            **TINY_TEXT,
            "vocab_size": len(tokenizer),
            "head_dim": 8,
            "max_position_embeddings": 4096,
            "bos_token_id": tokenizer.bos_token_id,
            "eos_token_id": tokenizer.eos_token_id,
            "pad_token_id": tokenizer.pad_token_id,
        },
        image_grid_pinpoints=LLAVA_PINPOINTS,
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
        vision_feature_layer=-2,
        vision_feature_select_strategy="default",
        image_seq_length=(LLAVA_TILE // 14) ** 2,
    )
    return _save(LlavaNextForConditionalGeneration, config, processor, folder, seed)


# -- loading a zoo entry on tiny weights, and watching its processor --------------------------


class ProcessorSpy:
    """Stands in for a tower's processor: records what it is called with, then calls it."""

    def __init__(self, processor):
        self.processor = processor
        self.texts: list[str] = []
        self.images: list[Image.Image] = []
        self.kwargs: dict = {}
        self.outputs = None

    def __call__(self, **kwargs):
        self.texts += kwargs["text"]
        self.images += kwargs.get("images") or []
        self.kwargs = kwargs
        self.outputs = self.processor(**kwargs)
        return self.outputs

    def __getattr__(self, name):
        return getattr(self.processor, name)


def spy_on(embedder, encode) -> ProcessorSpy:
    """Run ``encode()`` with a spy on the VLM tower's processor; returns the spy."""
    tower = embedder.towers["sequence"]
    spy = ProcessorSpy(tower.processor)
    tower.processor = spy
    try:
        encode()
    finally:
        tower.processor = spy.processor
    return spy


@contextlib.contextmanager
def tiny_entry(name: str, folder: Path) -> Iterator[str]:
    """The zoo entry ``name`` registered as ``NAME.tiny`` with its weights replaced by the
    checkpoint in ``folder`` (everything else as the zoo defines it); yields the new name."""
    entry = dataclasses.replace(
        zoo.get_pretrained(name), name=f"{name}.tiny", source=LocalSource(folder)
    )
    zoo.register_pretrained(entry)
    try:
        yield entry.name
    finally:
        zoo.unregister_pretrained(entry.name)


def load_as(name: str, folder: Path) -> mmembed.Embedder:
    """The zoo entry ``name`` loaded through ``mmembed.load`` on the checkpoint in ``folder``."""
    with tiny_entry(name, folder) as tiny_name:
        return mmembed.load(tiny_name)
