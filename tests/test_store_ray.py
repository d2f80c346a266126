"""``--engine ray --out milvus://...``: each Ray embedding actor upserts its own batches into
the engine (a Milvus Lite server on loopback, on a local Ray instance), the ledger still lists
exactly what the collection holds, and a run cut short between the actors' upserts and the
ledger is finished by the rerun without a duplicate."""

from __future__ import annotations

import functools
import shutil
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")
pytest.importorskip("pymilvus")
pytest.importorskip("milvus_lite")

from store_helpers import entities, free_port, start_server  # noqa: E402

import mmembed  # noqa: E402
from mmembed.retrieval import Index  # noqa: E402
from mmembed.retrieval.remote import ledger as ledger_module  # noqa: E402
from mmembed.retrieval.remote import milvus  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
PHOTOS = ROOT / "assets" / "images"


@pytest.fixture(scope="module")
def local_ray():
    # 3 logical CPUs, so that two embedding actors (one CPU each) leave room for decode tasks.
    ray.init(
        num_cpus=3,
        include_dashboard=False,
        log_to_driver=False,
        runtime_env={"env_vars": {"PYTHONPATH": str(ROOT)}},
    )
    yield
    ray.shutdown()


def test_actors_upsert_their_own_batches(local_ray, mini, tmp_path, monkeypatch):
    folder = tmp_path / "photos"
    shutil.copytree(PHOTOS, folder)
    (folder / "note.txt").write_text("A cat sleeps on a sofa in the afternoon sun.")
    port = free_port()
    # One request at a time: Milvus Lite's write path has no lock of its own (see
    # remote/update.py `_embed`); a Milvus server takes concurrent writers.
    server = start_server(tmp_path / "data", port, max_workers=1)
    uri = f"milvus://127.0.0.1:{port}/photos?ledger={tmp_path}/ledger"
    build = functools.partial(
        Index.build,
        embedder=mini,
        path=uri,
        engine="ray",
        embedder_factory=functools.partial(mmembed.load, "mmembed-mini"),
        num_workers=2,
        batch_size=2,
    )
    driver_rows: list[int] = []  # entities this process (the Ray driver) upserted
    original = milvus.MilvusCollection.upsert

    def upsert(self, rows):
        driver_rows.append(len(rows))
        original(self, rows)

    def die(self, rows):
        raise RuntimeError("the driver died before its ledger recorded the actors' items")

    monkeypatch.setattr(milvus.MilvusCollection, "upsert", upsert)
    monkeypatch.setattr(ledger_module.Ledger, "put", die)
    try:
        with pytest.raises(RuntimeError, match="driver died"):
            build([folder])
        assert sum(driver_rows) == 0  # the actors stored every item, the driver none
        assert len(entities(uri)) == 10
        monkeypatch.undo()
        monkeypatch.setattr(milvus.MilvusCollection, "upsert", upsert)

        rerun = build([folder])
        report = rerun.last_update
        assert "deleted 10 entities the ledger does not list" in report.repaired
        assert (report.embedded, report.resumed, report.added) == (0, 10, 10)
        keys = entities(uri)
        assert len(rerun) == len(keys) == len(set(keys)) == 10
        local = Index.build([folder], mini, tmp_path / "local", num_workers=0)
        for query in ("a cat", "a rocket", "a cup of coffee"):
            ours, theirs = rerun.search(query, k=5)[0], local.search(query, k=5)[0]
            assert [hit.id for hit in ours] == [hit.id for hit in theirs], query
        rerun.close()

        driver_rows.clear()
        (folder / "extra.md").write_text("A note about rockets.")
        added = build([folder])
        assert (added.last_update.added, added.last_update.embedded) == (1, 1)
        assert sum(driver_rows) == 0 and len(added) == 11
        added.close()
        Index.open(uri, verify=True).close()  # the ledger matches every stored vector
    finally:
        server.kill()
        server.wait()
