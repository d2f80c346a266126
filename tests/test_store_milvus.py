"""The index in a Milvus collection, against the engine itself (Milvus Lite, in process or as
a server on loopback): same answers as the folder index on the real photos, same update
semantics, integrity across the wire, and uploads cut short (a killed writer, a lost engine)
finished by the rerun without a duplicate."""

from __future__ import annotations

import fcntl
import os
import shlex
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("pymilvus")
pytest.importorskip("milvus_lite")

from store_helpers import entities, free_port, start_server  # noqa: E402

from mmembed.errors import StoreError  # noqa: E402
from mmembed.retrieval import Index  # noqa: E402
from mmembed.retrieval.remote.milvus import CollectionOptions, MilvusCollection  # noqa: E402
from mmembed.retrieval.remote.uri import parse  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
PHOTOS = ROOT / "assets" / "images"
QUERIES = ["a cat", "an astronaut", "a cup of coffee", "a rocket", "a palace", "a flower"]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """The asset photos and one note, copied so files can be removed."""
    target = tmp_path_factory.mktemp("photos") / "photos"
    shutil.copytree(PHOTOS, target)
    (target / "note.txt").write_text("A cat sleeps on a sofa in the afternoon sun.")
    return target


@pytest.fixture(scope="module")
def built(mini, folder, tmp_path_factory):
    """The same folder in a folder index and in a Milvus Lite collection."""
    base = tmp_path_factory.mktemp("indexes")
    uri = f"milvus-lite://{base}/db.db?collection=photos"
    local = Index.build([folder], mini, base / "local", num_workers=0)
    remote = Index.build([folder], mini, uri, num_workers=0)
    return local, remote, uri


def test_same_top5_as_the_folder_index(built):
    local, remote, _ = built
    assert len(remote) == len(local) == 10
    for query in QUERIES:
        ours, theirs = remote.search(query, k=5)[0], local.search(query, k=5)[0]
        assert [hit.id for hit in ours] == [hit.id for hit in theirs], query
        assert np.allclose([h.score for h in ours], [h.score for h in theirs], atol=1e-5)
    images = remote.search("a cat", k=10, modalities=["image"])[0]
    assert len(images) == 9 and {hit.modality for hit in images} == {"image"}
    assert [hit.id for hit in remote.search("a cat", k=1, modalities=["text"])[0]] == [
        hit.id for hit in local.search("a cat", k=1, modalities=["text"])[0]
    ]
    assert remote.info["model"] == "mmembed-mini" and remote.info["dim"] == local.info["dim"]


def test_serve_and_cli_search_the_collection(built, mini, cli):
    """``mmembed serve URI`` (its app, on loopback) and ``mmembed search URI`` give the
    folder index's answers."""
    import json
    import urllib.request

    from serve_helpers import running

    from mmembed.serve.config import ServeCfg
    from mmembed.serve.server import build_app

    local, _, uri = built
    expected = [hit.id for hit in local.search("a cup of coffee", k=5)[0]]
    with running(build_app(ServeCfg(), uri, embedder=mini, use_onnx=False)) as base:
        with urllib.request.urlopen(f"{base}/api/search?q=a+cup+of+coffee&k=5") as response:
            assert [hit["id"] for hit in json.loads(response.read())] == expected
        with urllib.request.urlopen(f"{base}/api/health") as response:
            assert json.loads(response.read())["items"] == 10
    code, out, err = cli("search", uri, "a cup of coffee", "-k", "5", "--json")
    assert code == 0, err
    assert [hit["id"] for hit in json.loads(out)] == expected
    code, out, _ = cli("search", uri, "a cat", "--modality", "text", "--json")
    assert [hit["modality"] for hit in json.loads(out)] == ["text"]


def test_rerun_removal_and_verify(built, mini, folder):
    _, remote, uri = built
    again = Index.build([folder], mini, uri, num_workers=0, verify=True)
    report = again.last_update
    assert (report.unchanged, report.added, report.embedded, report.repaired) == (10, 0, 0, "")
    removed = folder / "note.txt"
    text = removed.read_text()
    removed.unlink()
    try:
        after = Index.build([folder], mini, uri, num_workers=0)
        assert after.last_update.removed == 1 and len(after) == 9
        assert all(hit.modality == "image" for hit in after.search("a cat", k=10)[0])
        Index.open(uri, verify=True).close()  # every stored vector matches the ledger
    finally:
        removed.write_text(text)
    back = Index.build([folder], mini, uri, num_workers=0)
    assert back.last_update.added == 1 and len(back) == 10


def test_index_parameters_reach_the_engine(built, mini, folder):
    """The build parameters given are the ones the engine builds with: IVF_FLAT with one list
    searched is an exact scan. (Milvus Lite 3.2.2 drops pymilvus's flattened parameters and
    builds its default 128 lists, here 10, one per item: one list searched finds one item.)"""
    local, _, uri = built
    options = CollectionOptions.make("IVF_FLAT", {"nlist": 1, "nprobe": 1})
    exact = Index.build([folder], mini, uri.replace("photos", "exact"), options=options)
    try:
        for query in QUERIES:
            ours, theirs = exact.search(query, k=5)[0], local.search(query, k=5)[0]
            assert [hit.id for hit in ours] == [hit.id for hit in theirs], query
    finally:
        exact.close()


def test_refuses_another_model_dim_or_collection(built, mini, folder, tmp_path):
    _, remote, uri = built
    with pytest.raises(StoreError, match=r"collection was made with dim 384, not 64"):
        Index.build([folder], mini, uri, num_workers=0, dim=64)

    class Other:
        name, dim = "another-model", 384

    with pytest.raises(
        StoreError,
        match=r"photos: the collection was made with model 'mmembed-mini', not 'another-model'",
    ):
        remote.use_model(Other())
    foreign = parse(f"milvus-lite://{parse(uri).path}?collection=foreign")
    collection = MilvusCollection(foreign)
    collection.client.create_collection("foreign", dimension=384)
    with pytest.raises(StoreError, match=r"collection foreign was not made by mmembed"):
        Index.build([folder], mini, str(foreign), num_workers=0)
    with pytest.raises(StoreError, match=r"no collection nothing"):
        Index.open(str(foreign).replace("foreign", "nothing"))
    with pytest.raises(StoreError) as error:
        Index.open("milvus://127.0.0.1:9/photos")
    assert str(error.value).startswith("milvus://127.0.0.1:9/photos: cannot connect")
    with pytest.raises(StoreError, match=r"collection=pq: Milvus Lite does not build IVF_PQ"):
        Index.build(
            [folder], mini, uri.replace("photos", "pq"), options=CollectionOptions.make("IVF_PQ")
        )
    held = tmp_path / "held.db"  # Milvus Lite's lock, held as another process would hold it
    held.mkdir()
    with open(held / "LOCK", "wb") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        with pytest.raises(StoreError, match=r"held.db\?collection=x: another process has"):
            Index.open(f"milvus-lite://{held}?collection=x")


def test_manifest_metadata_is_updated_and_filterable(mini, tmp_path):
    """A manifest's new caption reaches the engine without embedding again, and metadata
    filters run in the engine."""
    manifest = tmp_path / "photos.csv"
    uri = f"milvus-lite://{tmp_path}/db.db?collection=manifest"

    def write(cat_caption: str) -> None:
        manifest.write_text(
            f"path,caption,page\n{PHOTOS / 'cat.jpg'},{cat_caption},1\n"
            f"{PHOTOS / 'rocket.jpg'},a rocket,2\n"
        )

    write("a cat")
    Index.build([manifest], mini, uri, num_workers=0).close()
    write("a tabby cat")
    index = Index.build([manifest], mini, uri, num_workers=0)
    assert index.last_update.embedded == 0 and index.last_update.unchanged == 2
    query = mini.encode_query("a cat")
    hit = index.search_vectors(query, k=1)[0][0]
    assert hit.metadata["caption"] == "a tabby cat" and hit.path.endswith("cat.jpg")
    second = index.search_vectors(query, k=5, where='metadata["page"] == 2')[0]
    assert [h.path.rsplit("/", 1)[-1] for h in second] == ["rocket.jpg"]
    index.close()
    Index.open(uri, verify=True).close()


def test_page_options_are_kept_with_the_collection(cli, mini, tmp_path):
    """``--pdf-route`` and ``--pages`` are recorded in the ledger, as in a folder's info.json: a
    re-run that does not give them reads pages the same way and matches the globs again, and
    ``Index.add`` joins its page globs to the recorded ones."""
    import mmembed

    folder, shots = tmp_path / "docs", tmp_path / "shots"
    folder.mkdir()
    shots.mkdir()
    shutil.copy(ROOT / "assets/documents/field_guide.pdf", folder / "guide.pdf")
    for name, words in [
        ("kayak", "Store the kayak upside down on padded racks."),
        ("tent", "Dry the tent before you pack it away for winter."),
    ]:
        mmembed.Page.render(words).source.save(shots / f"{name}.png")
    pattern = str(shots / "k*.png")
    uri = f"milvus-lite://{tmp_path}/db.db?collection=pages"
    code, out, err = cli("index", folder, "--pages", pattern, "--pdf-route", "text", "--out", uri)
    assert code == 0, err
    guide = str(folder / "guide.pdf")  # page 3 has no text layer: skipped by --pdf-route text
    assert entities(uri) == sorted([f"{guide}#page=1", f"{guide}#page=2", str(shots / "kayak.png")])

    code, out, err = cli("index", folder, "--out", uri)
    assert code == 0, err
    assert f"was built: --pdf-route text --pages {shlex.quote(pattern)}" in err
    assert "(0 added, 0 updated, 0 removed, 3 unchanged; embedded 0" in out
    (shots / "kayak.png").unlink()
    code, out, err = cli("index", folder, "--out", uri)
    assert "(0 added, 0 updated, 1 removed, 2 unchanged; embedded 0" in out, err

    index = Index.open(uri, mini)
    assert (index.info["pdf_route"], index.info["pages"]) == ("text", [pattern])
    report = index.add([], pages=[shots / "tent.png"])
    assert (report.added, report.removed) == (1, 0)
    assert index.info["pages"] == [pattern, str(shots / "tent.png")]
    hit = index.search("drying a tent before packing", k=1)[0][0]
    assert hit.path == str(shots / "tent.png") and hit.modality == "page"
    index.close()


WRITER = """
import os, signal, sys
import mmembed
from mmembed.retrieval import Index
from mmembed.retrieval.remote import milvus

calls = []
original = milvus.MilvusCollection.upsert

def upsert(self, rows):
    original(self, rows)
    calls.append(len(rows))
    if len(calls) == 2:  # the engine holds 4 items, the ledger 2: killed between the two
        os.kill(os.getpid(), signal.SIGKILL)

milvus.MilvusCollection.upsert = upsert
Index.build([sys.argv[1]], mmembed.load("mmembed-mini"), sys.argv[2], num_workers=0,
            upload_batch=2)
"""


def test_killed_writer_is_finished_by_the_rerun(mini, folder, tmp_path):
    uri = f"milvus-lite://{tmp_path}/db.db?collection=photos"
    script = tmp_path / "writer.py"
    script.write_text(textwrap.dedent(WRITER))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, str(script), str(folder), uri], env=env, timeout=300)
    assert done.returncode == -signal.SIGKILL
    rerun = Index.build([folder], mini, uri, num_workers=0)
    report = rerun.last_update
    assert report.embedded == 0 and report.resumed == 8  # 2 were recorded before the kill
    assert "deleted 2 entities the ledger does not list" in report.repaired
    assert len(rerun) == 10 and len(set(entities(uri))) == len(entities(uri)) == 10
    rerun.close()
    Index.open(uri, verify=True).close()


def test_lost_engine_mid_upload_is_finished_by_the_rerun(mini, folder, tmp_path, monkeypatch):
    """A Milvus server (Milvus Lite on loopback) that goes away mid-upload: a one-line error,
    then the rerun uploads the rest without embedding again or duplicating."""
    from mmembed.retrieval.remote import milvus

    port = free_port()
    uri = f"milvus://127.0.0.1:{port}/photos?ledger={tmp_path}/ledger"
    server = start_server(tmp_path / "data", port)
    original = milvus.MilvusCollection.upsert
    calls = []

    def upsert(self, rows):
        calls.append(len(rows))
        if len(calls) == 3:
            server.send_signal(signal.SIGINT)  # the engine shuts down (as a node restart does)
            server.wait(timeout=30)
        original(self, rows)

    monkeypatch.setattr(milvus.MilvusCollection, "upsert", upsert)
    try:
        with pytest.raises(StoreError) as error:
            Index.build([folder], mini, uri, num_workers=0, upload_batch=2)
        message = str(error.value)
        assert (
            message.startswith(uri + ": the engine refused a write to photos")
            and "\n" not in message
        )
        monkeypatch.setattr(milvus.MilvusCollection, "upsert", original)
        server = start_server(tmp_path / "data", port)
        rerun = Index.build([folder], mini, uri, num_workers=0)
        assert rerun.last_update.embedded == 0 and rerun.last_update.resumed == 6
        assert len(rerun) == 10 and len(set(entities(uri))) == 10
        hits = rerun.search("a cat", k=3)[0]
        assert hits[0].path.endswith("cat.jpg")
        rerun.close()
    finally:
        server.kill()
        server.wait()
