"""Any file name and any manifest value: indexed, found and shown like any other (issue 21)."""

from __future__ import annotations

import json
import logging
import os
import shutil
import sqlite3
from pathlib import Path

import pytest

import mmembed
import mmembed.cli
from mmembed.models import registry
from mmembed.retrieval.names import from_sql, shown, to_sql

ASSETS = Path(__file__).resolve().parents[1] / "assets"
BAD_NAME = b"caf\xe9.jpg"  # Latin-1, not UTF-8: os.fsdecode gives "caf\udce9.jpg"


@pytest.fixture
def cli(monkeypatch, mini, capsys, tmp_path):
    monkeypatch.setenv("MMEMBED_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(registry, "load", lambda name, device=None: mini)
    monkeypatch.setattr(mmembed, "load", lambda name, device=None: mini)

    def run(*args: object) -> tuple[int, str, str]:
        code = mmembed.cli.main(
            [os.fsdecode(arg) if isinstance(arg, Path) else arg for arg in args]
        )
        out, err = capsys.readouterr()
        return code, out, err

    return run


@pytest.fixture
def photos(tmp_path) -> Path:
    folder = tmp_path / "photos"
    folder.mkdir()
    shutil.copy(ASSETS / "images/cat.jpg", folder / "cat.jpg")
    shutil.copy(ASSETS / "images/rocket.jpg", folder / "rocket.jpg")
    fd = os.open(os.fsencode(folder) + b"/" + BAD_NAME, os.O_WRONLY | os.O_CREAT, 0o644)
    os.write(fd, (ASSETS / "images/coffee.jpg").read_bytes())
    os.close(fd)
    return folder


def test_names_round_trip_through_sqlite_and_are_shown_escaped():
    for value in ["plain", "caf\udce9.jpg", "\ud800 lone", "tab\tand\nnewline", None]:
        db = sqlite3.connect(":memory:")
        db.execute("CREATE TABLE t (v TEXT)")
        db.execute("INSERT INTO t VALUES (?)", (to_sql(value),))
        assert from_sql(db.execute("SELECT v FROM t").fetchone()[0]) == value
    assert to_sql("plain") == "plain"  # valid text stays TEXT: older indexes read unchanged
    assert shown("caf\udce9.jpg") == "caf\\xe9.jpg"
    assert shown("a\nb\x1b[31m") == "a\\nb\\x1b[31m"
    assert shown("\ud800") == "\\ud800"


def test_a_file_name_that_is_not_utf8_is_indexed_found_and_shown(cli, photos, tmp_path):
    index = tmp_path / os.fsdecode(b"index-\xe9")  # the index folder's name too
    code, out, err = cli("index", photos, "--out", index)
    assert code == 0, err
    assert "3 added" in out and "index-\\xe9 (3 added" in out
    bad = os.fsdecode(os.fsencode(photos) + b"/" + BAD_NAME)
    code, out, err = cli("search", index, "a cup of coffee", "--json")
    assert code == 0, err
    hits = json.loads(out)
    assert hits[0]["path"] == bad and hits[0]["id"] == bad  # lossless, through SQLite and JSON
    assert os.path.exists(os.fsencode(hits[0]["path"]))
    code, out, err = cli("search", index, "a cup of coffee", "--html", tmp_path / "r.html")
    assert code == 0, err
    assert out.splitlines()[0].endswith("caf\\xe9.jpg")
    page = (tmp_path / "r.html").read_text(encoding="utf-8")
    assert "caf\\xe9.jpg" in page
    code, out, err = cli("search", index, "--image", Path(bad))
    assert code == 0, err
    assert out.splitlines()[0].endswith("caf\\xe9.jpg") and " 1.0000 " in out.splitlines()[0]
    code, out, _ = cli("index", photos, "--out", index)  # stamps of the odd name match
    assert code == 0 and "0 added, 0 updated, 0 removed, 3 unchanged" in out


def test_stale_temporaries_of_an_aborted_run_never_block_the_next(cli, photos, tmp_path):
    index = tmp_path / "index"
    index.mkdir()
    (index / "gen-000001.tmp").mkdir()
    (index / "gen-000001.tmp" / "meta.sqlite").write_bytes(b"half a database")
    (index / "staging.sqlite").write_bytes(b"SQLite format 3\x00" + b"\x00" * 50)
    (index / ".current.json.999.tmp").write_text("{")
    code, out, err = cli("index", photos, "--out", index)
    assert code == 0, err
    assert "3 added" in out
    left = sorted(p.name for p in index.iterdir() if p.name not in (".lock", "query_encoder.json"))
    assert len(left) == 2 and left[0] == "current.json" and left[1].startswith("gen-"), left
    assert not left[1].endswith(".tmp")
    code, out, _ = cli("search", index, "a cup of coffee")
    assert code == 0 and "caf\\xe9.jpg" in out.splitlines()[0]


def test_manifest_values_of_any_type_are_stored_as_text_and_rendered(cli, photos, tmp_path, caplog):
    manifest = tmp_path / "photos" / "list.json"
    rows = [
        {"path": "cat.jpg", "caption": 12345},
        {"path": "rocket.jpg", "caption": "a rocket", "tags": ["space", 1]},
        {"text": "caf\udce9 au lait", "caption": None},
        {"text": "a bowl of soup", "caption": {"nested": True}},
        {"text": "a song", "modality": "sound"},
    ]
    manifest.write_text(json.dumps(rows))
    index = tmp_path / "index"
    with caplog.at_level(logging.WARNING):
        code, out, err = cli("index", manifest, "--out", index, "--report")
    assert code == 0, err
    warned = [r.getMessage() for r in caplog.records if "stored as text" in r.getMessage()]
    assert len(warned) == 1 and "row 0 caption=12345" in warned[0]
    assert "row 3 caption={'nested': True}" in warned[0]
    assert "text is not valid Unicode" in out  # the bad text row is skipped, by item
    assert "unknown modality 'sound' (use text, image," in out  # and so is this one
    code, out, err = cli("search", index, "a cat", "--json", "-k", "3")
    assert code == 0, err
    captions = {
        Path(hit["path"] or "x").name: hit["metadata"].get("caption") for hit in json.loads(out)
    }
    assert captions["cat.jpg"] == "12345"
    code, out, err = cli("search", index, "a cat", "--html", tmp_path / "r.html", "-k", "3")
    assert code == 0, err
    page = (tmp_path / "r.html").read_text(encoding="utf-8")
    assert '<div class="snippet">12345</div>' in page


def test_a_file_with_an_odd_name_added_to_an_existing_index_lands(cli, photos, tmp_path):
    index = tmp_path / "index"
    bad = os.fsencode(photos) + b"/" + BAD_NAME
    moved = tmp_path / "later.jpg"
    os.rename(bad, moved)
    assert cli("index", photos, "--out", index)[0] == 0
    os.rename(moved, bad)
    code, out, err = cli("index", photos, "--out", index)
    assert code == 0, err
    assert "1 added, 0 updated, 0 removed, 2 unchanged" in out
    code, out, _ = cli("search", index, "--image", Path(os.fsdecode(bad)), "-k", "1")
    assert code == 0 and out.rstrip().endswith("caf\\xe9.jpg")


def test_renderers_take_any_value():
    from mmembed.retrieval.html import results_section
    from mmembed.retrieval.results import Hit

    hits = [
        Hit(1, 0.5, "caf\udce9.jpg", "/p/caf\udce9.jpg", "image", {"caption": 12345}),
        Hit(2, 0.4, "x", None, "text", {"caption": ["a", "<b>"]}, snippet="s"),
        Hit(3, 0.3, "y", None, "text", {"caption": 0}),
        Hit(4, 0.2, "z", None, "text", "not a dict"),  # an older index's odd metadata
    ]
    page = results_section("q \udce9", hits, {})
    page.encode("utf-8")  # the page can be written and served
    assert '<div class="snippet">12345</div>' in page
    assert "caf\\xe9.jpg" in page and "&lt;b&gt;" in page
    assert '<div class="snippet">0</div>' in page


def test_a_manifest_that_is_not_utf8_still_names_its_files(cli, photos, tmp_path, caplog):
    manifest = photos / "list.csv"
    manifest.write_bytes(b"path,caption\n" + BAD_NAME + b",caf\xe9 au lait\ncat.jpg,a cat\n")
    with caplog.at_level(logging.WARNING):
        code, out, err = cli("index", manifest, "--out", tmp_path / "index")
    assert code == 0, err
    assert "2 added" in out and "is not valid UTF-8" in caplog.text
    bad = os.fsdecode(os.fsencode(photos) + b"/" + BAD_NAME)
    code, out, _ = cli("search", tmp_path / "index", "--image", Path(bad), "--json", "-k", "1")
    hit = json.loads(out)[0]
    assert code == 0 and hit["path"] == bad and hit["metadata"]["caption"] == "caf\udce9 au lait"
