"""A built wheel carries mmembed-mini's page towers (line reader and pixel tower), and pages
embed from the wheel's own files."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

import mmembed
from mmembed.encoders.pixel import WEIGHTS_NAME, load_pixel_tower
from mmembed.encoders.reader import READER_NAME, load_reader

ROOT = Path(__file__).resolve().parent.parent
TEXT = "Pages are read as pixels by a small convolutional tower."
# Runs with the unpacked wheel first on sys.path and the checkout nowhere on it.
PROBE = f"""
import json, sys
import mmembed
from mmembed.models.families.mini import shipped_page_tower
tower = shipped_page_tower("pixel")
reader = shipped_page_tower("reader")
assert tower is not None and reader is not None, "a page tower is missing from the wheel"
page = mmembed.Page.render({TEXT!r}).source
vector = tower(tower.preprocess(page)[None])[0]
read = reader.read_page(page)
print(json.dumps({{"file": mmembed.__file__, "vector": vector.tolist(), "read": read}}))
"""


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """A wheel built offline from a copy of the package (the checkout stays clean)."""
    src = tmp_path_factory.mktemp("src")
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(ROOT / "mmembed", src / "mmembed", ignore=ignore)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    out = tmp_path_factory.mktemp("dist")
    command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation"]
    subprocess.run([*command, "-q", "-w", str(out), str(src)], check=True, timeout=300)
    (built,) = out.glob("mmembed-*.whl")
    return built


def test_wheel_contains_the_page_tower(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    for name in (WEIGHTS_NAME, READER_NAME):
        for suffix in ("safetensors", "json"):
            assert f"mmembed/weights/{name}.{suffix}" in names, sorted(names)[:20]
        size = zipfile.ZipFile(wheel).getinfo(f"mmembed/weights/{name}.safetensors").file_size
        assert size <= 25e6  # fp16, within the budget


def test_page_embeds_from_the_installed_wheel(wheel, tmp_path):
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    env = {**os.environ, "PYTHONPATH": str(site), "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, "-c", PROBE],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert Path(report["file"]).is_relative_to(site)  # the wheel's copy, not the checkout
    tower = load_pixel_tower()
    expected = tower(tower.preprocess(mmembed.Page.render(TEXT).source)[None])[0].detach()
    np.testing.assert_allclose(np.array(report["vector"]), expected.numpy(), atol=1e-5)
    assert report["read"] == load_reader().read_page(mmembed.Page.render(TEXT).source)
