"""encode(): input order, mixed modalities, instructions, Matryoshka, fusion, video."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data

import mmembed
from mmembed.encoders.temporal import TemporalAttentionPool


@pytest.fixture(scope="module")
def cat():
    return Image.fromarray(data.chelsea())


@pytest.fixture(scope="module")
def coffee():
    return Image.fromarray(data.coffee())


def unit(v):
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def test_mixed_list_keeps_input_order(mini, cat, coffee):
    table = mmembed.Table([{"planet": "Mars", "moons": 2}, {"planet": "Earth", "moons": 1}])
    items = ["a cat", cat, table, "a much longer sentence about coffee cups", coffee, "x"]
    together = mini.encode(items, batch_size=2)
    alone = np.stack([mini.encode(item) for item in items])
    assert together.shape == (6, 384)
    assert np.abs(together - alone).max() < 1e-5
    assert np.allclose(np.linalg.norm(together, axis=1), 1.0, atol=1e-5)


def test_single_item_gives_1d_and_torch_output(mini):
    assert mini.encode("hello").shape == (384,)
    tensor = mini.encode(["hello", "world"], convert_to="torch")
    assert isinstance(tensor, torch.Tensor) and tensor.shape == (2, 384)


def test_matryoshka_dim_truncates_and_renormalises(mini):
    full = mini.encode(["a cat on a sofa"], normalize=False)
    short = mini.encode(["a cat on a sofa"], dim=64)
    assert short.shape == (1, 64)
    assert np.allclose(short, unit(full[:, :64]), atol=1e-6)


def test_instruction_is_embedded(mini):
    plain = mini.encode("a cat")
    instructed = mini.encode("a cat", instruction="Represent the caption for image retrieval:")
    assert np.allclose(
        instructed, mini.encode("Represent the caption for image retrieval: a cat"), atol=1e-6
    )
    assert not np.allclose(plain, instructed, atol=1e-3)
    assert np.allclose(
        mini.encode_query("a cat"), plain, atol=1e-6
    )  # mini has no query instruction


def test_image_plus_text_query_is_score_level_fusion(mini, cat):
    fused = mini.encode(mmembed.Document([mmembed.Image(cat), "what animal is this?"]))
    image, text = mini.encode([cat, "what animal is this?"])
    assert np.allclose(fused, unit(image + text), atol=1e-5)
    # An image with an instruction: the instruction becomes the text part.
    instructed = mini.encode(cat, instruction="what animal is this?")
    assert np.allclose(instructed, fused, atol=1e-5)


def test_document_long_text_is_chunked_and_pooled(mini):
    sentence = "The rocket carried a probe toward the outer planets of the solar system. "
    long_text = sentence * 60  # far beyond the 256-token window
    chunks = mini.plan_cfg().split_text(long_text)
    assert len(chunks) > 2
    counts = mini.towers["text"].count_tokens([" ".join(chunks[0].split())])
    assert counts[0] <= mini.towers["text"].max_tokens
    doc = mini.encode(mmembed.Document([long_text]))
    expected = unit(mini.encode(chunks).mean(axis=0))
    assert np.allclose(doc, expected, atol=1e-5)


def test_text_documents_are_batched_with_the_texts(mini, monkeypatch):
    """Documents of text only need no decoding: they are planned inline, so their windows are
    batched across documents by token count (not a few documents at a time, in small ragged
    batches), and each vector equals the document encoded alone."""
    sentence = "Tides rise and fall twice a day along the coast. "
    documents = [mmembed.Document([sentence * (1 + i % 50), "A second note."]) for i in range(40)]
    alone = np.stack([mini.encode(document) for document in documents])
    text = mini.towers["text"]
    rows = []
    forward = type(text).forward
    monkeypatch.setattr(
        type(text),
        "forward",
        lambda self, batch: rows.append(len(batch["input_ids"])) or forward(self, batch),
    )
    together = mini.encode(documents, batch_size=16)
    assert np.allclose(together, alone, atol=1e-5)
    parts = sum(len(mini.plan_cfg().split_text(sentence * (1 + i % 50))) + 1 for i in range(40))
    assert sum(rows) == parts and set(rows[:-1]) == {16}  # every batch full but the last


def test_windows_cover_the_text_and_fit_the_tower(mini):
    tower = mini.towers["text"]
    text = "Unbelievably, the astronauts' photographs were digitised decades later. " * 40
    windows = tower.split_to_window(text)
    assert len(windows) > 2
    assert " ".join(windows).split() == text.split()  # nothing lost or repeated
    counts = tower.token_counts(tower.tokenize(windows))
    assert int(counts.max()) <= tower.max_tokens
    assert int(counts[:-1].min()) >= tower.max_tokens - 4  # windows are full, not word-packed


def test_video_frames_mean_pooled(mini, cat, coffee):
    frames = [np.asarray(cat), np.asarray(coffee)]
    video = mini.encode(mmembed.Video(frames, num_frames=2))
    images = mini.encode([cat, coffee])
    assert np.allclose(video, unit(images.mean(axis=0)), atol=1e-5)


def test_video_file(mini):
    video = mini.encode(mmembed.Video("assets/videos/" + _first_video(), num_frames=4))
    assert video.shape == (384,) and np.isfinite(video).all()


def _first_video() -> str:
    import os

    return sorted(os.listdir("assets/videos"))[0]


def test_zero_initialised_temporal_attention_is_identity_on_one_frame():
    torch.manual_seed(0)
    block = TemporalAttentionPool(dim=32, num_heads=4, max_frames=8)
    frame = torch.randn(3, 1, 32)
    assert torch.allclose(block(frame), frame[:, 0], atol=1e-6)
    block.resize_positions(16)
    assert block.positions.shape == (16, 32)
    assert block(torch.randn(2, 16, 32)).shape == (2, 32)
    assert torch.allclose(block(frame), frame[:, 0], atol=1e-6)


def test_similarity_matrix(mini):
    a = mini.encode(["a cat", "a dog"])
    b = mini.encode(["a kitten", "a car", "a puppy"])
    scores = mini.similarity(a, b)
    assert scores.shape == (2, 3)
    assert np.allclose(scores, a @ b.T, atol=1e-6)
    assert scores[0].argmax() == 0 and scores[1].argmax() == 2


def test_open_clip_embeds_every_modality(clip, cat):
    items = [
        "a cat",
        cat,
        mmembed.Table([{"a": 1}]),
        mmembed.Document(["text", mmembed.Image(cat)]),
    ]
    out = clip.encode(items)
    assert out.shape == (4, 512) and np.isfinite(out).all()


def test_list_models_and_unknown_name():
    assert "mmembed-mini" in mmembed.list_models()
    with pytest.raises(ValueError, match="unknown model"):
        mmembed.load("no-such-model")
