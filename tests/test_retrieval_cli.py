"""``mmembed index`` and ``mmembed search`` end to end on the assets, with mmembed-mini."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from debian import needs

import mmembed
import mmembed.cli
from mmembed.models import registry

ASSETS = Path(__file__).resolve().parents[1] / "assets"
CHROMIUM = Path("/usr/bin/chromium")


@pytest.fixture
def cli(monkeypatch, mini, capsys):
    """Run ``mmembed ARGS``; returns (exit code, stdout, stderr). The model loads once."""
    if "index" not in mmembed.cli.SUBCOMMANDS:
        monkeypatch.setattr(
            mmembed.cli, "SUBCOMMANDS", [*mmembed.cli.SUBCOMMANDS, "index", "search"]
        )
    monkeypatch.setattr(registry, "load", lambda name, device=None: mini)
    monkeypatch.setattr(mmembed, "load", lambda name, device=None: mini)

    def run(*args: object) -> tuple[int, str, str]:
        code = mmembed.cli.main([str(arg) for arg in args])
        out, err = capsys.readouterr()
        return code, out, err

    return run


@pytest.fixture(scope="module")
def assets(tmp_path_factory) -> Path:
    target = tmp_path_factory.mktemp("cli") / "assets"
    shutil.copytree(ASSETS, target)
    (target / "broken.png").write_bytes(b"\x89PNG broken")
    return target


@pytest.fixture
def index_dir(cli, assets, tmp_path) -> Path:
    code, out, _ = cli("index", assets, "--out", tmp_path / "index")
    assert code == 0, out
    return tmp_path / "index"


def test_index_reports_counts_skips_and_is_incremental(cli, assets, index_dir):
    code, out, _ = cli("index", assets, "--out", index_dir, "--report")
    assert code == 0
    assert re.search(r"0 added, 0 updated, 0 removed, \d+ unchanged; embedded 0", out)
    assert "exact inner product" in out
    assert re.search(r"skipped .*broken\.png: cannot decode image", out)
    code, out, _ = cli("index", "--out", index_dir, "--report")
    assert code == 0 and "broken.png" in out


def test_search_json_by_text_image_video_and_table(cli, assets, index_dir):
    code, out, _ = cli("search", index_dir, "a tabby cat with green eyes", "--top-k", "3", "--json")
    assert code == 0
    hits = json.loads(out)
    assert [hit["rank"] for hit in hits] == [1, 2, 3]
    assert hits[0]["path"] == str(assets / "images/cat.jpg") and hits[0]["modality"] == "image"
    assert hits[0]["score"] >= hits[1]["score"] >= hits[2]["score"]
    for flag, path in [
        ("--image", "images/coffee.jpg"),
        ("--video", "videos/motorcycle_zoom.mp4"),
        ("--table", "tables/planets.csv"),
    ]:
        code, out, _ = cli("search", index_dir, flag, assets / path, "-k", "1", "--json")
        assert code == 0 and json.loads(out)[0]["path"] == str(assets / path)
    code, out, _ = cli("search", index_dir, "rocket", "--modality", "image,video", "--json")
    assert {hit["modality"] for hit in json.loads(out)} == {"image", "video"}


def test_search_plain_output_and_errors(cli, index_dir, assets):
    code, out, _ = cli("search", index_dir, "a cup of coffee", "-k", "2")
    assert code == 0 and len(out.splitlines()) == 2 and "coffee.jpg" in out.splitlines()[0]
    code, _, err = cli("search", index_dir, "a cat", "--image", assets / "images/cat.jpg")
    assert code == 2 and "exactly one query" in err
    code, _, err = cli("search", index_dir, "--image", assets / "broken.png")
    assert code == 2 and "cannot decode image" in err
    code, _, err = cli("search", index_dir, "a cat", "--modality", "sound")
    assert code == 2 and "unknown modality sound" in err
    code, _, err = cli("search", index_dir.parent / "nowhere", "a cat")
    assert code == 2 and "no index" in err


def _rendered(page: Path, tmp_path: Path) -> str:
    """The DOM after load, with a marker counting images that decoded."""
    probe = tmp_path / "probe.html"
    probe.write_text(
        page.read_text()
        + "<script>window.addEventListener('load', () => { document.body.dataset.loaded ="
        " [...document.images].filter(i => i.complete && i.naturalWidth > 0).length; });"
        "</script>"
    )
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={tmp_path / 'chromium'}",
        "--virtual-time-budget=5000",
    ]
    result = subprocess.run(
        [str(CHROMIUM), *flags, "--dump-dom", probe.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def _cards(page: str) -> list[tuple[str, str]]:
    """(name, snippet) of each result card of a results page."""
    return re.findall(
        r'<div class="path"[^>]*>([^<]*)</div>(?:<div class="snippet">([^<]*)</div>)?', page
    )


def test_html_page_has_one_heading_and_no_caption_repeating_a_name(cli, index_dir, tmp_path):
    page = tmp_path / "results.html"
    assert cli("search", index_dir, "an astronaut", "-k", "14", "--html", page)[0] == 0
    html = page.read_text()
    body = html.split("<body>", 1)[1]
    assert body.count("<h1>") == 1 and body.count("<h2>") == 1
    assert body.count("“an astronaut”") == 1  # the query labels its section only
    cards = _cards(html)
    assert len(cards) == 14 and [name for name, _ in cards].count("astronaut.jpg") == 2
    assert all(name != snippet for name, snippet in cards), cards


@needs("chromium")
def test_html_page_renders_in_headless_chromium(cli, index_dir, assets, tmp_path):
    page = tmp_path / "results.html"
    code, _, _ = cli(
        "search", index_dir, "--image", assets / "images/rocket.jpg", "-k", "5", "--html", page
    )
    assert code == 0
    text = page.read_text()
    assert "http://" not in text and "https://" not in text and "file:" not in text
    dom = _rendered(page, tmp_path)
    assert len(re.findall(r'class="hit"', dom)) == 5
    assert 'data-loaded="6"' in dom  # five result thumbnails and the query image
    assert "#1 · 1.000" in dom and "rocket.jpg" in dom
