"""The cache fault matrix: every cache file x every damage -> a clean cache's vectors or a
one-line error, never silently wrong vectors (issue 21).

Each cache site runs through the code that opens it in a new process (``verified.forget``),
on the smallest towers that have each kind of cache: a 1-layer BERT with MiniLM's tokenizer,
a ConSE tower over a conv classifier, open_clip's image-export path on a conv, and a narrow
line reader. One clean cache and its outputs are made once per site; every case starts from
a copy of it.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import shutil
import struct
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from test_image_runtime import TinyVisual  # open_clip's image-export path on a conv
from torch import nn

from mmembed.hub import verified

DAMAGES = ("truncated", "half", "flipped middle", "flipped header", "deleted", "bit rot")
TEXTS = ["a cat on a sofa", "Espresso in a white cup, served hot on a saucer.", "short"]
PROMPTS = [f"a photo of a {name}." for name in "cat dog car cup tree boat bird lamp".split()]
TOLERANCE = 1e-5  # the exports' own tolerance to torch (onnx_text.TORCH_ATOL)
SITES = (
    "text export",
    "ConSE class table",
    "ConSE image export",
    "open_clip image export",
    "page reader export",
    "downloaded weights",
)
OUTCOMES: Counter = Counter()  # tallied over the sites for the summary test


@dataclass
class Site:
    """One cache: how to make it, open it as a new process would, and where its files lie."""

    name: str
    build: Callable[[Path], object]  # home -> output (makes the cache on first use)
    entry: Callable[[Path], Path]  # home -> the cached file or folder
    files: tuple[str, ...]  # damaged one by one (relative to a folder entry, or "" for a file)
    intact: Callable[[Path], bool]  # whether the entry is whole again


def _tiny_text(tmp: Path, mini):
    """A 1-layer, 16-wide BERT (random, seeded) with mmembed-mini's tokenizer."""
    from mmembed.encoders.hf_text import HFTextCfg, HFTextTower

    source = Path(mini.towers["text"].cfg.path)
    folder = tmp / "tiny-bert"
    folder.mkdir()
    for name in ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        shutil.copy(source / name, folder / name)
    config = json.loads((source / "config.json").read_text())
    config.update(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32)
    (folder / "config.json").write_text(json.dumps(config))
    torch.manual_seed(0)
    return HFTextTower(HFTextCfg(str(folder), pooling="mean", max_tokens=64, weights=False)).eval()


@pytest.fixture(scope="module")
def weights_server():
    """Downloaded weights: a small safetensors file served on 127.0.0.1, pinned by sha256."""
    import hashlib

    from http_server import FileServer
    from safetensors.torch import save

    from mmembed.hub import UrlSource

    data = save({"proj.weight": torch.randn(64, 32, generator=torch.Generator().manual_seed(3))})
    with FileServer({"/tiny.safetensors": data}) as server:
        url = server.url("/tiny.safetensors")
        yield UrlSource(url, hashlib.sha256(data).hexdigest(), "tiny.safetensors")


@pytest.fixture(scope="module")
def sites(tmp_path_factory, mini, weights_server) -> dict[str, Site]:
    from mmembed.encoders import conse, onnx_image, onnx_text, reader
    from mmembed.encoders.digest import tower_digest
    from mmembed.hub import load_state_dict, resolve
    from mmembed.hub.cache import cache_entry

    text = _tiny_text(tmp_path_factory.mktemp("tiny"), mini)
    text_digest = tower_digest(text)
    torch.manual_seed(0)
    classifier = nn.Sequential(
        nn.Conv2d(3, 4, 8, stride=8), nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(16, 8)
    )
    with torch.no_grad():
        table = text(text.tokenize(PROMPTS))
    image_tower = conse.ConSEImageTower(
        classifier, table, conse.ConSECfg(top_t=3, image_size=32)
    ).eval()
    image_digest = tower_digest(image_tower)
    images = [Image.open(f"assets/images/{n}.jpg").convert("RGB") for n in ("cat", "rocket")]
    visual = TinyVisual().eval()
    pixels = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(1)).numpy()
    line_reader = reader.LineReader(reader.ReaderCfg(channels=(4, 4, 8, 8), hidden=8)).eval()
    reader_digest = tower_digest(line_reader)
    lines = torch.rand(2, 1, 32, 96, generator=torch.Generator().manual_seed(2)).numpy()

    def text_output(home: Path):
        tower = copy.deepcopy(text)  # a fresh runtime: the export is opened anew
        with torch.inference_mode(), tower.inference():
            assert tower._active is not None, "the text export did not run"
            return tower(tower.tokenize(TEXTS)).numpy()

    def table_output(home: Path):
        return conse.cached_class_embeddings(text, PROMPTS).numpy()

    def image_output(home: Path):
        folder = onnx_image.cached_conse_export(image_tower, home, image_digest)
        return onnx_image.OnnxImageEncoder(folder).encode(images)

    def visual_output(home: Path):
        folder = onnx_image.cached_visual_export(visual, home, "v" * 64)
        return onnx_text.session_of(folder / "model.onnx", 1).run(None, {"pixels": pixels})[0]

    def reader_output(home: Path):
        folder = reader.cached_reader_export(line_reader, home, reader_digest)
        return onnx_text.session_of(folder / "model.onnx", 1).run(None, {"lines": lines})[0]

    def weights_output(home: Path):
        path = resolve(weights_server, offline=False, progress=False)  # the suite runs offline
        return load_state_dict(path)["proj.weight"].numpy()

    def folder_site(name, build, folder_of, files, required):
        return Site(
            name,
            build,
            folder_of,
            files,
            lambda home: verified.intact_folder(folder_of(home), required, recheck=True),
        )

    return {
        "text export": folder_site(
            "text export",
            text_output,
            lambda home: onnx_text.export_folder(home, text_digest),
            ("model.onnx", "tokenizer.json", "onnx_text.json", "model.onnx.xxh3"),
            onnx_text.FILES,
        ),
        "ConSE class table": Site(
            "ConSE class table",
            table_output,
            lambda home: conse.class_embeddings_cache(text, PROMPTS),
            ("", ".xxh3"),
            lambda home: verified.intact_file(conse.class_embeddings_cache(text, PROMPTS), True),
        ),
        "ConSE image export": folder_site(
            "ConSE image export",
            image_output,
            lambda home: home / "onnx" / image_digest[:32],
            ("model.onnx", "onnx_image.json"),
            ("model.onnx", "onnx_image.json"),
        ),
        "open_clip image export": folder_site(
            "open_clip image export",
            visual_output,
            lambda home: home / "onnx" / ("v" * 32),
            ("model.onnx", "onnx_visual.json"),
            ("model.onnx", "onnx_visual.json"),
        ),
        "downloaded weights": Site(
            "downloaded weights",
            weights_output,
            lambda home: cache_entry(weights_server).path,
            ("", ".xxh3"),
            lambda home: verified.intact_file(cache_entry(weights_server).path, True),
        ),
        "page reader export": folder_site(
            "page reader export",
            reader_output,
            lambda home: home / "onnx" / reader_digest[:32],
            ("model.onnx", reader.EXPORT_CONFIG),
            ("model.onnx", reader.EXPORT_CONFIG),
        ),
    }


def tensor_span(path: Path) -> tuple[int, int]:
    """Where the bytes of the largest weight tensor lie in an ONNX or safetensors file (the
    middle of the file for others): damage there keeps the file parseable."""
    data = path.read_bytes()
    if path.suffix == ".safetensors":
        start = 8 + struct.unpack("<Q", data[:8])[0]
        return start, len(data)
    if path.suffix == ".onnx":
        import onnx

        weights = max(onnx.load(str(path)).graph.initializer, key=lambda t: len(t.raw_data))
        start = data.find(weights.raw_data)
        assert start > 0
        return start, start + len(weights.raw_data)
    return len(data) // 4, 3 * len(data) // 4


def damage(path: Path, how: str) -> None:
    """Damage ``path`` one way; "bit rot" flips 4 bits inside a tensor and keeps size and mtime."""
    stat = path.stat()
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    if how == "deleted":
        path.unlink()
        return
    if how == "truncated":
        data = data[: len(data) - max(8, len(data) // 50)]  # the tail lost
    elif how == "half":
        data = data[:middle]
    elif how == "flipped middle":
        for i in range(middle, min(middle + 64, len(data))):
            data[i] ^= 0xFF
    elif how == "flipped header":
        for i in range(min(16, len(data))):
            data[i] ^= 0xFF
    elif how == "bit rot":
        start, end = tensor_span(path)
        at = (start + end) // 2
        for i in range(4):
            data[at + 7 * i] ^= 1 << (6 - i)  # exponent and high mantissa bits of a weight
    path.write_bytes(bytes(data))
    if how == "bit rot":
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))


@pytest.mark.parametrize("name", SITES)
def test_cache_fault_matrix(sites, name, tmp_path, monkeypatch, caplog):
    site = sites[name]
    clean = tmp_path / "clean"
    monkeypatch.setenv("MMEMBED_HOME", str(clean))
    reference = site.build(clean)
    assert site.intact(clean)
    counts = {"equal": 0, "one-line error": 0, "wrong": 0}
    for file in site.files:
        for how in DAMAGES:
            home = tmp_path / "case"
            shutil.rmtree(home, ignore_errors=True)
            shutil.copytree(clean, home)
            monkeypatch.setenv("MMEMBED_HOME", str(home))
            entry = site.entry(home)
            target = entry / file if entry.is_dir() else entry.with_name(entry.name + file)
            damage(target, how)
            verified.forget()  # as a new process
            caplog.clear()
            case = f"{name}: {how} {target.name}"
            with caplog.at_level(logging.WARNING, logger="mmembed"):
                try:
                    output = site.build(home)
                except Exception as error:  # noqa: BLE001 - any error must be one clear line
                    assert "\n" not in str(error) and str(error), case
                    counts["one-line error"] += 1
                    continue
            if np.abs(np.asarray(output) - np.asarray(reference)).max() <= TOLERANCE:
                counts["equal"] += 1
            else:
                counts["wrong"] += 1
            warnings = [r.getMessage() for r in caplog.records if r.name.startswith("mmembed.hub")]
            assert len(warnings) == 1 and target.name in warnings[0], (case, warnings)
            verified.forget()
            assert site.intact(home), f"{case}: the cache was not made whole again"
    total = sum(counts.values())
    print(f"\ncache fault matrix, {name}: {total} cases: {counts}")
    assert total == len(site.files) * len(DAMAGES)
    assert counts["wrong"] == 0, counts
    OUTCOMES.update({**counts, "sites": 1})


def test_cache_fault_matrix_counts():
    """The whole matrix in one line (``pytest -s``); skipped when not every site ran."""
    if OUTCOMES["sites"] < len(SITES):
        pytest.skip(f"{OUTCOMES['sites']} of {len(SITES)} cache sites ran")
    cases = OUTCOMES["equal"] + OUTCOMES["one-line error"] + OUTCOMES["wrong"]
    print(
        f"\ncache fault matrix: {cases} cases over {len(SITES)} caches, {OUTCOMES['equal']} "
        f"equal to a clean cache, {OUTCOMES['one-line error']} one-line errors, "
        f"{OUTCOMES['wrong']} silently wrong"
    )
    assert OUTCOMES["wrong"] == 0


def test_cache_verify_search_verify_and_clear(cli, mini, tmp_path, monkeypatch):
    """`mmembed cache verify` and `search --verify` catch bit rot that keeps size and mtime."""
    import mmembed

    monkeypatch.setattr(mmembed, "load", lambda name, device=None: mini)
    home = tmp_path / "home"
    monkeypatch.setenv("MMEMBED_HOME", str(home))
    photos = tmp_path / "photos"
    photos.mkdir()
    for name in ("cat", "rocket", "coffee"):
        shutil.copy(f"assets/images/{name}.jpg", photos)
    assert cli("index", photos, "--out", tmp_path / "index")[0] == 0
    code, out, _ = cli("cache", "verify")
    assert code == 0 and "all intact" in out
    exports = sorted(home.glob("onnx/*/onnx_text.json"))
    assert len(exports) == 1
    model = exports[0].parent / "model.onnx"
    clean = cli("search", tmp_path / "index", "a cup of coffee", "--json")[1]

    damage(model, "bit rot")
    verified.forget()  # a new process
    code, out, err = cli("search", tmp_path / "index", "a cup of coffee", "--json", "--verify")
    assert code == 0 and "deleted the damaged ONNX export" in err
    assert not model.exists()
    assert json.loads(out)[0]["path"] == json.loads(clean)[0]["path"]
    assert cli("index", photos, "--out", tmp_path / "index")[0] == 0  # exports it again
    assert model.exists() and cli("cache", "verify")[0] == 0

    image = next(home.glob("onnx/*/onnx_image.json")).parent / "model.onnx"
    damage(image, "bit rot")
    verified.forget()  # a new process: a no-op index run checks the exports it points at
    code, out, _ = cli("index", photos, "--out", tmp_path / "index")
    assert code == 0 and "0 added, 0 updated, 0 removed, 3 unchanged" in out
    assert image.exists() and cli("cache", "verify")[0] == 0  # exported again

    damage(model, "bit rot")
    code, out, _ = cli("cache", "verify")
    assert code == 1
    assert f"damaged {model}: does not match its checksum (model.onnx.xxh3)" in out
    damaged = [line for line in out.splitlines() if line.startswith("damaged ")]
    assert len(damaged) == 1 and not model.parent.exists()  # the whole export is deleted
    assert cli("cache", "verify")[0] == 0
    code, out, _ = cli("cache", "clear")
    assert code == 0 and "cleared" in out and not (home / "onnx").exists()
