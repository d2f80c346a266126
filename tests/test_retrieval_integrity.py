"""Integrity of an index beyond the fault matrix: checksums, vectors checked on load, the
cache key, zero-byte files, symlinks, change detection, the writer lock, and the CLI's
argument checks and terminal output (with mmembed-mini, a few small files each)."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from skimage import data

import mmembed
import mmembed.cli
from mmembed.errors import CorruptIndexError
from mmembed.retrieval import Index, integrity, store, walk

NOTES = {
    "bread.txt": "Knead the dough, let it rise overnight and bake the bread at 230 degrees.",
    "planets.txt": "Jupiter and Saturn are gas giants; Mars is a small rocky planet.",
}


@pytest.fixture
def folder(tmp_path) -> Path:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for name, text in NOTES.items():
        (corpus / name).write_text(text)
    Image.fromarray(data.chelsea()).resize((96, 96)).save(corpus / "cat.jpg")
    return corpus


def test_every_file_is_listed_with_size_and_checksum(folder, tmp_path, mini, one_torch_thread):
    index = Index.build([folder], mini, tmp_path / "index", index_type="hnsw")
    manifest = json.loads((tmp_path / "index" / store.CURRENT).read_text())
    generation = tmp_path / "index" / manifest["generation"]
    assert integrity.is_sealed(manifest)
    assert sorted(manifest["files"]) == sorted(path.name for path in generation.iterdir())
    for name, entry in manifest["files"].items():
        assert entry["size"] == (generation / name).stat().st_size
        assert entry["xxh3_128"] == integrity.file_checksum(generation / name)
    assert manifest["info"]["model"] == index.info["model"] == "mmembed-mini"


def _overwrite_row(path: Path, row: int, dim: int) -> None:
    """Overwrite one stored vector with huge values, keeping the file's size."""
    with open(path, "r+b") as handle:
        np.lib.format.read_magic(handle)
        np.lib.format.read_array_header_1_0(handle)
        handle.seek(handle.tell() + row * dim * 4)
        handle.write(np.full(dim, 1e30, np.float32).tobytes())


def test_damaged_vectors_are_caught_without_checksums(folder, tmp_path, mini, monkeypatch):
    """Above SMALL_FILE, opening checks sizes and headers only; vectors are still checked."""
    monkeypatch.setattr(integrity, "SMALL_FILE", 0)
    for kind in ("flat", "binary"):
        index_dir = tmp_path / kind
        Index.build([folder], mini, index_dir, index_type=kind)
        generation = Index.open(index_dir).generation
        _overwrite_row(generation.folder / "vectors.npy", 1, generation.info["dim"])
        if kind == "flat":  # read whole: checksummed, and every vector checked, on load
            with pytest.raises(CorruptIndexError, match="vectors.npy does not match its checksum"):
                Index.open(index_dir)
            current = index_dir / store.CURRENT
            sealed = current.read_text()
            legacy = {"generation": generation.name, "format": 1}  # written before checksums
            current.write_text(json.dumps(legacy))
            with pytest.raises(CorruptIndexError, match="vectors.npy holds 1 vectors that are"):
                Index.open(index_dir)
            current.write_text(sealed)
        else:  # memory-mapped: the vectors of the hits are checked
            index = Index.open(index_dir, mini)
            with pytest.raises(CorruptIndexError, match="vectors.npy"):
                index.search("a cat", k=3)
        with pytest.raises(CorruptIndexError, match="does not match its checksum"):
            Index.open(index_dir, verify=True)
        report = Index.build([folder], mini, index_dir).last_update
        assert "vectors.npy does not match its checksum" in report.repaired
        assert (
            Index.open(index_dir, mini, verify=True)
            .search("a cat", k=1)[0][0]
            .path.endswith("cat.jpg")
        )


def test_unit_vectors_are_checked_on_write(tmp_path):
    with pytest.raises(ValueError, match="not finite unit vectors"):
        store.write_generation(
            tmp_path, {}, np.full((2, 4), 0.5, np.float32) * [[1], [3]], [], [], lambda _: None
        )
    assert not list(tmp_path.glob("gen-*"))


def test_cache_key_zero_byte_files_and_duplicate_names(tmp_path, mini, one_torch_thread):
    folder = tmp_path / "corpus"
    folder.mkdir()
    rows = "city,population\nParis,2100000\nLyon,520000\n"
    (folder / "cities.csv").write_text(rows)
    (folder / "cities.txt").write_text(rows)
    photo = Image.fromarray(data.astronaut()).resize((96, 96))
    photo.save(folder / "astronaut.png")
    photo.save(folder / "copy-of-astronaut.png")
    for name in ("empty.jpg", "empty.png", "empty.mp4", "empty.csv", "empty.txt"):
        (folder / name).write_bytes(b"")
    index = Index.build([folder], mini, tmp_path / "index")
    rows_by_name = {Path(row["path"]).name: row for row in index.generation.all_rows()}
    table, text = (rows_by_name[name]["pos"] for name in ("cities.csv", "cities.txt"))
    assert rows_by_name["cities.csv"]["modality"] == "table"
    assert float(index.generation.vectors[table] @ index.generation.vectors[text]) < 0.99
    expected_text = mini.encode([mmembed.Text(rows)], instruction=index.info["instruction"])[0]
    assert np.allclose(index.generation.vectors[text], expected_text, atol=1e-5)
    reasons = {Path(row["path"]).name: row["reason"] for row in index.skipped()}
    assert reasons == {
        "empty.jpg": "empty image file (0 bytes)",
        "empty.png": "empty image file (0 bytes)",
        "empty.mp4": "empty video file (0 bytes)",
        "empty.csv": "empty table file (0 bytes)",
        "empty.txt": "empty text file (0 bytes)",
    }
    hits = index.search("an astronaut", k=2, modalities={"image"})[0]
    assert {hit.snippet for hit in hits} == {"astronaut.png", "copy-of-astronaut.png"}
    assert {Path(hit.path).name for hit in hits} == {hit.snippet for hit in hits}


def test_symlinks_loops_and_links_leaving_the_roots(folder, tmp_path, mini, one_torch_thread):
    outside = tmp_path / "private.txt"
    outside.write_text("The secret recipe uses saffron and cardamom.")
    (folder / "loop-a.txt").symlink_to(folder / "loop-b.txt")
    (folder / "loop-b.txt").symlink_to(folder / "loop-a.txt")
    (folder / "dangling.txt").symlink_to(folder / "nowhere.txt")
    (folder / "secret.txt").symlink_to(outside)
    (folder / "inside.txt").symlink_to(folder / "bread.txt")
    (folder / "linked-dir").symlink_to(folder)  # a folder loop
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "diary.txt").write_text("Dear diary, today I planted tulips.")
    (folder / "linked-elsewhere").symlink_to(tmp_path / "elsewhere")
    index = Index.build([folder], mini, tmp_path / "index")
    reasons = {Path(row["path"]).name: row["reason"] for row in index.skipped()}
    assert reasons["loop-a.txt"] == reasons["loop-b.txt"] == "symlink loop"
    assert reasons["dangling.txt"] == "dangling symlink"
    assert "outside the indexed folders (use --follow-symlinks)" in reasons["secret.txt"]
    assert "folder leads outside" in reasons["linked-elsewhere"]
    assert len(index) == 3 and "inside.txt" not in reasons  # the link is its target
    assert all("saffron" not in (row["snippet"] or "") for row in index.generation.all_rows())

    index = Index.build([folder], mini, tmp_path / "index", follow_symlinks=True)
    assert len(index) == 5  # the outside file and the diary in the outside folder
    assert index.search("saffron and cardamom", k=1)[0][0].path == str(outside)


def test_change_with_same_size_and_mtime_is_found(folder, tmp_path, mini, monkeypatch):
    index_dir = tmp_path / "index"
    Index.build([folder], mini, index_dir)
    note = folder / "bread.txt"
    before = note.stat()
    note.write_text(NOTES["bread.txt"].replace("bread", "cakes"))
    os.utime(note, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert note.stat().st_size == before.st_size
    report = Index.build([folder], mini, index_dir).last_update
    assert (report.updated, report.unchanged, report.embedded) == (1, 2, 1)

    hashed = []
    real_hash = walk.hash_file
    monkeypatch.setattr(walk, "hash_file", lambda path: hashed.append(path) or real_hash(path))
    Index.build([folder], mini, index_dir)
    assert hashed == []  # size, times and inode unchanged: nothing read
    report = Index.build([folder], mini, index_dir, rehash=True).last_update
    assert len(hashed) == 3 and (report.updated, report.unchanged) == (0, 3)


def test_waiting_writer_says_whom_it_waits_for(tmp_path, caplog):
    entered = threading.Event()

    def second_writer():
        with store.write_lock(tmp_path):
            entered.set()

    with store.write_lock(tmp_path):
        assert (tmp_path / store.LOCK).read_text().strip() == str(os.getpid())
        with caplog.at_level(logging.WARNING):
            thread = threading.Thread(target=second_writer)
            thread.start()
            time.sleep(0.3)
            assert not entered.is_set()
    thread.join(10)
    assert entered.is_set()
    expected = f"waiting for another `mmembed index` on {tmp_path} (pid {os.getpid()})"
    assert expected in caplog.text


def test_stale_temporary_files_are_removed(folder, tmp_path, mini, one_torch_thread):
    index_dir = tmp_path / "index"
    Index.build([folder], mini, index_dir)
    stale = index_dir / ".current.json.999999.tmp"
    stale.write_text('{"generation": "gen-0000')
    Index.build([folder], mini, index_dir)
    assert not stale.exists()


def test_cli_checks_arguments_before_loading_anything(cli, folder, tmp_path):
    index_dir = tmp_path / "index"
    assert cli("index", folder, "--out", index_dir)[0] == 0
    cli.loads.clear()
    cases = [
        (("search", index_dir, "a cat", "--top-k", -1), "--top-k must be at least 1, got -1"),
        (("search", tmp_path / "nowhere", "a cat"), "no index at"),
        (("search", index_dir, "a cat", "--modality", "smell"), "unknown modality smell"),
        (("search", index_dir, "--image", tmp_path / "no.jpg"), "query image file not found"),
        (("index", folder, "--out", index_dir, "--dim", 128), "was built with --dim full, not 128"),
        (("index", tmp_path / "missing", "--out", index_dir), "no such file or folder"),
        (("index", folder, "--out", folder / "bread.txt"), "is a file, not an index folder"),
        (("index", folder, "--out", index_dir, "--batch-size", 0), "--batch-size must be at"),
        (("index", "--out", tmp_path / "empty", "--repair"), "no index at"),
    ]
    for args, message in cases:
        code, out, err = cli(*args)
        assert code == 2 and out == "", (args, out)
        assert len(err.strip().splitlines()) == 1 and message in err, (args, err)
    assert cli.loads == []
    code, out, err = cli("index", folder, "--out", tmp_path / "new", "--dim", 999)
    assert (
        code == 2 and err.strip() == "mmembed index: --dim 999 is more than mmembed-mini's 384 dims"
    )


def test_closed_pipe_is_quiet(cli, folder, tmp_path):
    index_dir = tmp_path / "index"
    assert cli("index", folder, "--out", index_dir)[0] == 0
    read_end, write_end = os.pipe()
    os.close(read_end)
    pipe = open(write_end, "w")  # noqa: SIM115 (closed below)
    try:
        with contextlib.redirect_stdout(pipe):
            code = mmembed.cli.main(["search", str(index_dir), "a cat", "--json"])
        assert code == 0
        pipe.write("more")
        pipe.flush()  # stdout now leads to /dev/null: the interpreter's last flush is quiet
    finally:
        pipe.close()


def test_closed_pipe_is_quiet_in_a_real_process(cli, folder, tmp_path):
    """``mmembed index --report | true``: the reader is gone before the first write."""
    import subprocess
    import sys

    index_dir = tmp_path / "index"
    (folder / "notes.xyz").write_text("an unsupported file, listed by --report")
    assert cli("index", folder, "--out", index_dir)[0] == 0
    main = "import sys; from mmembed.cli import main; sys.exit(main())"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    command = [sys.executable, "-c", main, "index", "--out", str(index_dir), "--report"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    process.stdout.close()
    err = process.stderr.read().decode()
    assert process.wait(timeout=300) == 0 and err == ""


def test_control_characters_are_escaped(cli, folder, tmp_path):
    evil = "bread\x1b[2J\nfake line.txt"
    (folder / evil).write_text("Rye bread with caraway seeds.")
    (folder / "bad\x1b[31m.png").write_bytes(b"\x89PNG not really")
    index_dir = tmp_path / "index"
    code, out, _ = cli("index", folder, "--out", index_dir, "--report")
    assert code == 0 and "bad\\x1b[31m.png: cannot decode image" in out
    code, out, _ = cli("search", index_dir, "rye bread with caraway", "--top-k", 1)
    assert code == 0 and "\x1b" not in out and out.count("\n") == 1
    assert "bread\\x1b[2J\\nfake line.txt" in out
    code, out, _ = cli("search", index_dir, "rye bread with caraway", "--top-k", 1, "--json")
    assert json.loads(out)[0]["path"].endswith(evil) and "\x1b" not in out
