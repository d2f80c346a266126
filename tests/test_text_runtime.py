"""The default text runtime ("auto"): ONNX Runtime where torch would give the same vectors on
CPU in fp32, torch wherever the model is trained, cast or moved; one export per MMEMBED_HOME."""

from __future__ import annotations

import copy
import logging
import shutil

import numpy as np
import pytest
import torch

TEXTS = ["a cat on a sofa", "Espresso in a white cup, served hot on a saucer.", "short"]


@pytest.fixture
def tower(mini, mini_onnx_home, monkeypatch):
    """A copy of mmembed-mini's text tower (default runtime) next to the session's export."""
    monkeypatch.setenv("MMEMBED_HOME", str(mini_onnx_home))
    return copy.deepcopy(mini.towers["text"]).eval()


def _embed(tower, texts=TEXTS) -> tuple[torch.Tensor, bool]:
    """What Embedder.encode does with the tower (its inference runtime, no gradients); unit rows."""
    with torch.inference_mode(), tower.inference():
        ran_onnx = tower._active is not None
        out = tower(tower.tokenize(texts)).float()
    return torch.nn.functional.normalize(out, dim=-1), ran_onnx


def _torch(tower, texts=TEXTS) -> torch.Tensor:
    with torch.inference_mode():
        return torch.nn.functional.normalize(tower(tower.tokenize(texts)).float(), dim=-1)


def test_mini_encodes_text_through_onnx_runtime_by_default(mini, mini_onnx_home, monkeypatch):
    monkeypatch.setenv("MMEMBED_HOME", str(mini_onnx_home))
    text = mini.towers["text"]
    assert text.runtime == "auto"
    expected = _torch(text)

    def refuse(*args, **kwargs):
        raise AssertionError("the torch text model ran under the default runtime")

    monkeypatch.setattr(text.model, "forward", refuse)
    assert np.abs(mini.encode(TEXTS) - expected.numpy()).max() <= 1e-5


@pytest.mark.parametrize("change", ["train", "bf16"])
def test_auto_runs_torch_quietly_when_training_or_cast(tower, change, caplog):
    if change == "train":
        tower.train()  # dropout on: the same seed gives the same vectors only through torch
    else:
        tower.to(torch.bfloat16)
    torch.manual_seed(0)
    expected = _torch(tower)
    torch.manual_seed(0)
    with caplog.at_level(logging.WARNING):
        out, ran_onnx = _embed(tower)
    assert not ran_onnx and caplog.text == ""
    assert out.sub(expected).abs().max() <= 1e-5


def test_auto_does_not_export_again_while_weights_change(tower, tmp_path, monkeypatch):
    """A model trained in place keeps torch (same vectors) instead of one export per step."""
    from mmembed.encoders import onnx_text

    _, ran_onnx = _embed(tower)
    assert ran_onnx
    monkeypatch.setenv("MMEMBED_HOME", str(tmp_path))
    exports = []
    monkeypatch.setattr(onnx_text, "export_text_tower", lambda *a: exports.append(a))
    with torch.no_grad():
        tower.model.embeddings.word_embeddings.weight.mul_(1.5)
    out, ran_onnx = _embed(tower)
    assert not ran_onnx and exports == []
    assert out.sub(_torch(tower)).abs().max() <= 1e-5


def test_one_export_per_home_and_a_damaged_one_is_exported_again(
    tower, tmp_path, monkeypatch, caplog
):
    from mmembed.encoders import onnx_text
    from mmembed.encoders.digest import tower_digest

    exports = []
    export = onnx_text.export_text_tower
    monkeypatch.setattr(
        onnx_text, "export_text_tower", lambda *a: exports.append(a[1]) or export(*a)
    )
    expected = _torch(tower)
    home = tmp_path / "home"
    monkeypatch.setenv("MMEMBED_HOME", str(home))
    # A first process on this home exports; later ones (fresh towers) open the cached export.
    for _ in range(2):
        out, ran_onnx = _embed(copy.deepcopy(tower))
        assert ran_onnx and out.sub(expected).abs().max() <= 1e-5
    assert len(exports) == 1
    folder = onnx_text.export_folder(home, tower_digest(tower))
    (folder / "model.onnx").write_bytes(b"not a model")  # a damaged cache file
    with caplog.at_level(logging.WARNING):
        out, ran_onnx = _embed(copy.deepcopy(tower))
    assert ran_onnx and out.sub(expected).abs().max() <= 1e-5
    # One warning, naming the file its checksum record caught (hub/verified.py).
    assert caplog.text.count("WARNING") == 1
    assert f"{folder / 'model.onnx'} has 11 bytes, expected" in caplog.text
    assert exports == [folder, folder]
    shutil.rmtree(home)


def test_a_failed_export_warns_once_and_uses_torch(tower, tmp_path, monkeypatch, caplog):
    from mmembed.encoders import onnx_text

    tries = []

    def full_disk(*args):
        tries.append(args)
        raise OSError(28, "No space left on device")

    monkeypatch.setenv("MMEMBED_HOME", str(tmp_path))
    monkeypatch.setattr(onnx_text, "export_text_tower", full_disk)
    expected = _torch(tower)
    with caplog.at_level(logging.WARNING):
        for _ in range(2):
            out, ran_onnx = _embed(tower)
            assert not ran_onnx and out.sub(expected).abs().max() <= 1e-5
    lines = [r.getMessage() for r in caplog.records]
    assert len(tries) == 1  # not tried again at every call
    assert len(lines) == 1 and "falls back to torch" in lines[0] and "No space left" in lines[0]


def test_an_export_that_differs_from_torch_is_never_published(tower, tmp_path, monkeypatch, caplog):
    """Every export is checked against the torch tower before it is used or cached."""
    from mmembed.encoders import onnx_text

    monkeypatch.setenv("MMEMBED_HOME", str(tmp_path))
    monkeypatch.setattr(onnx_text, "TORCH_ATOL", -1.0)  # no graph can pass the check now
    expected = _torch(tower)
    with caplog.at_level(logging.WARNING):
        out, ran_onnx = _embed(tower)
    assert not ran_onnx and out.sub(expected).abs().max() <= 1e-5
    assert "differs from torch" in caplog.text
    assert not (tmp_path / "onnx").exists() or not any((tmp_path / "onnx").iterdir())


def test_callers_may_leave_out_token_type_ids(tower):
    """Page towers pass input ids and attention mask only; the export reads zeros, as torch."""
    tokens = tower.tokenize(TEXTS)
    del tokens["token_type_ids"]
    with torch.inference_mode(), tower.inference():
        assert tower._active is not None
        out = torch.nn.functional.normalize(tower(tokens).float(), dim=-1)
    assert out.sub(_torch(tower)).abs().max() <= 1e-5
