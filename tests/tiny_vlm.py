"""Tiny, randomly initialised Qwen2-VL and Qwen3-VL checkpoints built offline, for VLM tests.

The tokenizer is a byte-level BPE trained here on a few sentences, with the family's special
tokens; each model has two text layers, one vision block and a 32-wide hidden state.
"""

from __future__ import annotations

from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import (
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
            "vocab_size": len(tokenizer),
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
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
    torch.manual_seed(seed)
    model = Qwen2VLForConditionalGeneration(config).eval()
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


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
            "vocab_size": len(tokenizer),
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
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
    torch.manual_seed(seed)
    model = Qwen3VLForConditionalGeneration(config).eval()
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder
