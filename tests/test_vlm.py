"""VLM2Vec-style embedder on a tiny random Qwen2-VL: prompts, batching, padding, LoRA merge."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file
from skimage import data
from tiny_vlm import build_tiny_qwen2_vl

import mmembed
from mmembed.embedder import EmbedderCfg
from mmembed.encoders.vlm import BACKBONES, VLMCfg, VLMTower, format_prompt
from mmembed.hub import LocalSource
from mmembed.models import zoo
from mmembed.models.families.vlm import vlm_embedder
from mmembed.processors.sequence import Frames, SequenceItem

QWEN = BACKBONES["qwen2_vl"].prompt


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return build_tiny_qwen2_vl(tmp_path_factory.mktemp("tiny-qwen2-vl"))


@pytest.fixture(scope="module")
def vlm(tiny_dir):
    return mmembed.load(str(tiny_dir))


@pytest.fixture(scope="module")
def items():
    cat = Image.fromarray(data.chelsea()).resize((120, 90))
    coffee = Image.fromarray(data.coffee()).resize((60, 50))
    frames = [
        np.asarray(Image.fromarray(a).resize((64, 48))) for a in (data.chelsea(), data.rocket())
    ]
    return [
        "a cat",
        cat,
        mmembed.Document(
            ["a long sentence about a cup of coffee on a table", mmembed.Image(coffee)]
        ),
        mmembed.Video(frames, num_frames=2),
        mmembed.Table([{"planet": "Mars", "moons": 2}]),
        "the rocket stands on the launch pad before lift-off",
    ]


def test_prompt_follows_vlm2vec():
    image = Image.new("RGB", (32, 32))
    question = SequenceItem(
        "Represent the given image with the following question:", (image, "What is it?")
    )
    text, images, videos = format_prompt(question, QWEN)
    assert (
        text == "<|image_pad|> Represent the given image with the following question: What is it?"
    )
    assert images == [image] and videos == []
    text, _, _ = format_prompt(SequenceItem("Represent the given image.", (image,)), QWEN)
    assert text == "<|image_pad|> Represent the given image."
    text, _, _ = format_prompt(SequenceItem("Find me an everyday image:", ("a dog",)), QWEN)
    assert text == "Find me an everyday image: a dog"
    video = Frames((image, image))
    text, images, videos = format_prompt(SequenceItem(None, ("intro", video, "outro")), QWEN)
    assert text == "intro <|video_pad|> outro" and images == [] and videos == [[image, image]]


def test_mixed_batch_shapes_order_and_padding(vlm, items):
    together = vlm.encode(items, batch_size=4)
    alone = np.stack([vlm.encode(item) for item in items])
    assert together.shape == (len(items), 32) and vlm.dim == 32
    assert np.allclose(np.linalg.norm(together, axis=1), 1.0, atol=1e-5)
    # Each item alone equals the item inside a padded, shape-sorted batch.
    assert np.abs(together - alone).max() <= 1e-5
    assert vlm.modalities == frozenset(mmembed.Modality)


def test_padding_side_does_not_change_vectors(tiny_dir, vlm, items):
    left = vlm_embedder(VLMCfg(path=str(tiny_dir), padding_side="left"), EmbedderCfg("left"))
    assert np.abs(left.encode(items, batch_size=6) - vlm.encode(items, batch_size=6)).max() <= 1e-5


def test_deterministic(vlm, items):
    assert np.array_equal(vlm.encode(items), vlm.encode(items))


def test_instruction_changes_the_vector(vlm):
    plain = vlm.encode("a cat")
    instructed = vlm.encode("a cat", instruction="Find me an everyday image that matches:")
    assert np.abs(plain - instructed).max() > 1e-3
    # The instruction is written into the prompt, not embedded separately.
    assert np.allclose(
        instructed, vlm.encode("Find me an everyday image that matches: a cat"), atol=1e-6
    )


def test_pixel_bounds_reach_the_processor(tiny_dir):
    tower = VLMTower(VLMCfg(path=str(tiny_dir), min_pixels=28 * 28, max_pixels=28 * 28 * 4))
    inputs = tower.processor(text=["<|image_pad|>"], images=[Image.new("RGB", (300, 300))])
    assert int(inputs["image_grid_thw"].prod()) <= 16  # at most 4 merged tokens of 2x2 patches


@pytest.fixture(scope="module")
def adapter(tiny_dir, tmp_path_factory):
    """A LoRA adapter folder laid out like VLM2Vec's: PEFT files next to the processor files."""
    folder = tmp_path_factory.mktemp("adapter")
    generator = torch.Generator().manual_seed(0)
    # Key names as VLM2Vec's PEFT adapters store them (transformers < 4.52 module names).
    weights = {
        "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight": (4, 32),
        "base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight": (32, 4),
        "base_model.model.visual.blocks.0.attn.qkv.lora_A.weight": (4, 32),
        "base_model.model.visual.blocks.0.attn.qkv.lora_B.weight": (96, 4),
    }
    tensors = {k: torch.randn(*shape, generator=generator) for k, shape in weights.items()}
    save_file(tensors, folder / "adapter_model.safetensors")
    (folder / "adapter_config.json").write_text(
        json.dumps(
            {"peft_type": "LORA", "r": 4, "lora_alpha": 8, "target_modules": ["q_proj", "qkv"]}
        )
    )
    for name in ("config.json", "processor_config.json", "tokenizer.json", "tokenizer_config.json"):
        shutil.copy(tiny_dir / name, folder / name)
    return folder, tensors


def test_lora_adapter_is_merged(tiny_dir, adapter):
    folder, tensors = adapter
    base = VLMTower(VLMCfg(path=str(tiny_dir)))
    merged = VLMTower(
        VLMCfg(path=str(tiny_dir), processor_path=str(folder), adapter_path=str(folder))
    )
    a_q, b_q, a_qkv, b_qkv = tensors.values()
    layers = (
        lambda tower: tower.model.model.language_model.layers[0].self_attn.q_proj.weight,
        lambda tower: tower.model.model.visual.blocks[0].attn.qkv.weight,
    )
    assert torch.allclose(layers[0](merged), layers[0](base) + 2.0 * b_q @ a_q, atol=1e-6)
    assert torch.allclose(layers[1](merged), layers[1](base) + 2.0 * b_qkv @ a_qkv, atol=1e-6)


def test_zoo_entry_with_base_and_adapter(tiny_dir, adapter, vlm):
    folder, _ = adapter
    entry = zoo.register_pretrained(
        zoo.PretrainedCfg(
            name="tiny-vlm2vec.local",
            builder="vlm",
            architecture="qwen2_vl",
            source=LocalSource(folder),
            base_source=LocalSource(tiny_dir),
            modalities=zoo.ALL_MODALITIES,
            dim=32,
            license="Apache-2.0",
            size_mb=1,
            description="tiny Qwen2-VL with a LoRA adapter, from local folders",
            image=zoo.ImageCfg(
                None, zoo.OPENAI_MEAN, zoo.OPENAI_STD, min_pixels=784, max_pixels=3136
            ),
            pooling="last",
            query_instruction="Find me an everyday image that matches the given caption:",
        )
    )
    try:
        embedder = mmembed.load(entry.name)
    finally:
        zoo.unregister_pretrained(entry.name)
    assert embedder.query_instruction == entry.query_instruction
    query = embedder.encode_query("a cat")
    assert np.allclose(query, embedder.encode(f"{entry.query_instruction} a cat"), atol=1e-6)
    assert np.abs(embedder.encode("a cat") - vlm.encode("a cat")).max() > 1e-4  # LoRA merged


def test_video_frames_of_different_sizes_are_resized(vlm):
    frames = [data.chelsea(), data.coffee()]  # 300x451 and 400x600
    assert vlm.encode(mmembed.Video(frames, num_frames=2)).shape == (32,)


def test_document_holds_a_video_for_a_vlm(vlm):
    """A Document may interleave a video with text for a tower that reads videos; the text is
    written into the prompt byte for byte, the video token where the video stands."""
    frames = [
        np.asarray(Image.fromarray(a).resize((64, 48))) for a in (data.chelsea(), data.rocket())
    ]
    video = mmembed.Video(frames, num_frames=2)
    text = "\nRecognize the category of the video content.\n"
    together = vlm.encode(mmembed.Document([video, text]))
    alone = vlm.encode(video)
    assert together.shape == (32,) and np.abs(together - alone).max() > 1e-3
    from mmembed.processors.sequence import plan_sequence

    item = plan_sequence(mmembed.Document([video, text]), None, str)
    prompt, _, videos = format_prompt(item, QWEN)
    assert prompt == "<|video_pad|>\nRecognize the category of the video content.\n"
    assert len(videos) == 1 and len(videos[0]) == 2


def test_document_with_a_video_is_an_input_error_for_other_towers(clip):
    frames = [data.chelsea(), data.coffee()]
    with pytest.raises(mmembed.InputError, match="unsupported type Video"):
        clip.encode(mmembed.Document([mmembed.Video(frames, num_frames=2), "a cat"]))
