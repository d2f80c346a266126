"""Text queries through ONNX Runtime: parity with the torch tower, caching, torch fallback."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mmembed.retrieval import Index
from mmembed.retrieval.fast_query import (
    POINTER,
    ImageQueryEncoder,
    TextQueryEncoder,
    export_query_encoder,
    has_query_encoder,
)

ASSETS = Path(__file__).resolve().parents[1] / "assets"
REPO = Path(__file__).resolve().parents[1]
TEXTS = [
    "a tabby cat with green eyes",
    "x",
    "Ünïcödé: café, 東京, naïve résumé — and an emoji 🚀",
    "planets of the solar system and their moons " * 80,  # longer than the 256-token window
    "  leading and trailing spaces  ",
]


@pytest.fixture(scope="module")
def index_dir(mini, mini_onnx_home, tmp_path_factory):
    """The assets indexed by mini, pointing at the ONNX export in ``mini_onnx_home``."""
    folder = tmp_path_factory.mktemp("onnx") / "index"
    Index.build([ASSETS / "images", ASSETS / "tables"], mini, folder)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MMEMBED_HOME", str(mini_onnx_home))
        export_query_encoder(mini, folder)
    return folder


def test_onnx_text_tower_matches_torch(mini, index_dir):
    encoder = TextQueryEncoder.for_index(index_dir, "mmembed-mini")
    assert encoder is not None
    for instruction, dim in [(None, None), ("Find an image of:", None), (None, 128)]:
        torch_rows = np.asarray(mini.encode(TEXTS, instruction=instruction, dim=dim))
        onnx_rows = encoder.encode(TEXTS, instruction, dim)
        assert onnx_rows.shape == torch_rows.shape
        assert np.abs(onnx_rows - torch_rows).max() <= 1e-5, (instruction, dim)


def test_onnx_image_tower_matches_torch(mini, index_dir):
    from mmembed.inputs import Image
    from mmembed.processors.image import load_image

    encoder = ImageQueryEncoder.for_index(index_dir, "mmembed-mini")
    assert encoder is not None and encoder.usable(None) and not encoder.usable("Find:")
    photos = [load_image(path) for path in sorted((ASSETS / "images").glob("*.jpg"))]
    # Odd sizes and shapes: the resize and crop must match timm's transform exactly.
    photos += [photos[0].resize((300, 97)), photos[1].rotate(90, expand=True)]
    photos += [photos[2].resize((224, 224)), photos[3].resize((257, 256))]
    for dim in (None, 64):
        torch_rows = np.asarray(mini.encode([Image(photo) for photo in photos], dim=dim))
        onnx_rows = encoder.encode(photos, dim)
        assert np.abs(onnx_rows - torch_rows).max() <= 1e-5, dim


def test_export_is_cached_and_tied_to_the_model(mini, index_dir, mini_onnx_home, monkeypatch):
    monkeypatch.setenv("MMEMBED_HOME", str(mini_onnx_home))
    record = json.loads((index_dir / POINTER).read_text())
    model_file = Path(record["folder"]) / "model.onnx"
    stamp = model_file.stat().st_mtime_ns
    export_query_encoder(mini, index_dir)  # same tower: the export is reused, not redone
    assert model_file.stat().st_mtime_ns == stamp
    assert has_query_encoder(index_dir, "mmembed-mini")
    assert not has_query_encoder(index_dir, "another-model")
    (index_dir / POINTER).write_text(json.dumps({**record, "digest": "0" * 64}))
    try:
        assert TextQueryEncoder.for_index(index_dir, "mmembed-mini") is None  # stale: torch
    finally:
        (index_dir / POINTER).write_text(json.dumps(record))


def test_a_damaged_export_falls_back_to_torch(mini, index_dir, tmp_path, caplog):
    record = json.loads((index_dir / POINTER).read_text())
    damaged = tmp_path / "export"
    shutil.copytree(record["folder"], damaged)
    (damaged / "model.onnx").write_bytes(b"not a model")
    copy = tmp_path / "index"
    shutil.copytree(index_dir, copy)
    (copy / POINTER).write_text(json.dumps({**record, "folder": str(damaged)}))
    assert TextQueryEncoder.for_index(copy, "mmembed-mini") is None
    # Its checksum record names the damaged file; the export is deleted, to be made again.
    assert f"{damaged / 'model.onnx'} has 11 bytes, expected" in caplog.text
    assert not damaged.exists()


def _cold_search(index_dir: Path, home: Path | None, *args: str) -> tuple[list, list]:
    """Run ``mmembed search --json`` in a fresh interpreter; returns (hits, heavy modules)."""
    code = (
        "import json, sys\n"
        "from mmembed.cli import main\n"
        f"rc = main({['search', str(index_dir), *args, '--json']!r})\n"
        "heavy = ['torch', 'transformers', 'timm', 'open_clip', 'faiss', 'pandas', 'ray', 'decord']\n"
        "print(json.dumps([m for m in heavy if m in sys.modules]))\n"
        "sys.exit(rc)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    if home is not None:
        env["MMEMBED_HOME"] = str(home)
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    *hits, modules = result.stdout.strip().splitlines()
    return json.loads("\n".join(hits)), json.loads(modules)


def test_cold_text_search_does_not_import_torch(mini, index_dir, mini_onnx_home):
    hits, modules = _cold_search(index_dir, mini_onnx_home, "a cup of espresso coffee")
    assert modules == []
    assert hits[0]["path"].endswith("coffee.jpg")
    expected = Index.open(index_dir, mini).search("a cup of espresso coffee")[0]
    assert [hit["id"] for hit in hits] == [hit.id for hit in expected]
    assert np.allclose([hit["score"] for hit in hits], [hit.score for hit in expected], atol=1e-5)


def test_cold_image_search_does_not_import_torch(mini, index_dir, mini_onnx_home):
    photo = ASSETS / "images" / "rocket.jpg"
    hits, modules = _cold_search(index_dir, mini_onnx_home, "--image", str(photo), "-k", "3")
    assert modules == []
    assert hits[0]["path"] == str(photo.resolve())
    assert hits[0]["score"] == pytest.approx(1.0, abs=1e-5)


def test_search_falls_back_to_torch_without_the_export(mini, index_dir, tmp_path):
    # No pointer, as for an index built before exports existed (the default MMEMBED_HOME, where
    # the mini fixture cached its class embeddings).
    copy = tmp_path / "index"
    shutil.copytree(index_dir, copy)
    (copy / POINTER).unlink()
    hits, modules = _cold_search(copy, None, "a cup of espresso coffee", "-k", "2")
    assert "torch" in modules
    assert hits[0]["path"].endswith("coffee.jpg")
