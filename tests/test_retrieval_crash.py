"""Crash safety: a killed ``index`` run leaves the previous index readable and a re-run
finishes the job without duplicates.

A small, slow fake embedder (text only) runs in a subprocess so the test can kill it at a
known point: after some batches reached the staging checkpoint.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from mmembed.modality import Modality
from mmembed.retrieval import Index, store

REPO = Path(__file__).resolve().parents[1]
BATCH = 4


class SlowFakeEmbedder:
    """Deterministic 16-d text vectors from a hash; logs every text it embeds."""

    name = "fake-slow"
    dim = 16
    modalities = frozenset({Modality.TEXT})
    query_instruction = None
    document_instruction = None

    def __init__(self, delay: float = 0.0, log: str | None = None):
        self.delay = delay
        self.log = log

    def encode(
        self,
        items,
        instruction=None,
        batch_size=32,
        normalize=True,
        dim=None,
        show_progress_bar=None,
        convert_to="numpy",
        on_error="raise",
    ):
        texts = [item.text for item in items]
        vectors = np.stack([_vector(text) for text in texts])
        time.sleep(self.delay)
        if self.log:
            with open(self.log, "a") as handle:
                handle.write("".join(f"{text}\n" for text in texts))
        return vectors


def _vector(text: str) -> np.ndarray:
    seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "little")
    vector = np.random.default_rng(seed).standard_normal(16).astype(np.float32)
    return vector / np.linalg.norm(vector)


def main(folder: str, out: str, log: str, delay: str) -> None:
    """Subprocess entry point: index ``folder`` into ``out`` with the slow fake."""
    Index.build([folder], SlowFakeEmbedder(float(delay), log), out, batch_size=BATCH, num_workers=1)


def _run(folder: Path, out: Path, log: Path, delay: float) -> subprocess.Popen:
    code = (
        f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); "
        f"from test_retrieval_crash import main; main(*sys.argv[1:])"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    args = [sys.executable, "-c", code, str(folder), str(out), str(log), str(delay)]
    return subprocess.Popen(args, cwd=REPO, env=env)


def _write_notes(folder: Path, start: int, stop: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for number in range(start, stop):
        (folder / f"note{number:03d}.txt").write_text(f"note number {number}")


def _staged_count(out: Path) -> int:
    path = out / store.STAGING
    if not path.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=0.1) as db:
            return db.execute("SELECT count(*) FROM staged").fetchone()[0]
    except sqlite3.OperationalError:  # table not created yet, or locked by the writer
        return 0


def test_kill_mid_run_keeps_previous_index_and_rerun_completes(tmp_path):
    folder, out, log = tmp_path / "notes", tmp_path / "index", tmp_path / "embedded.log"
    _write_notes(folder, 0, 10)
    Index.build([folder], SlowFakeEmbedder(), out, batch_size=BATCH)
    before = Index.open(out, SlowFakeEmbedder())
    ids_before = sorted(row["id"] for row in before.generation.all_rows())

    _write_notes(folder, 10, 70)
    (folder / "note000.txt").write_text("note number zero, edited")
    (folder / "note001.txt").unlink()
    process = _run(folder, out, log, delay=0.2)
    deadline = time.time() + 60
    while _staged_count(out) < 2 * BATCH and time.time() < deadline and process.poll() is None:
        time.sleep(0.02)
    assert process.poll() is None, "the run finished before it could be killed"
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    staged_at_kill = _staged_count(out)
    assert staged_at_kill >= 2 * BATCH

    # The previous generation is intact and searchable.
    reopened = Index.open(out, SlowFakeEmbedder())
    assert sorted(row["id"] for row in reopened.generation.all_rows()) == ids_before
    assert reopened.search("note number 3", k=1)[0][0].path.endswith("note003.txt")
    embedded_first = log.read_text().splitlines()

    # A re-run finishes, reusing the checkpoint, without duplicates.
    assert _run(folder, out, log, delay=0.0).wait(timeout=120) == 0
    final = Index.open(out, SlowFakeEmbedder())
    ids = [row["id"] for row in final.generation.all_rows()]
    assert len(ids) == len(set(ids)) == 69
    assert set(ids) == {str(path.resolve()) for path in folder.iterdir()}
    embedded_second = log.read_text().splitlines()[len(embedded_first) :]
    assert len(embedded_second) <= 61 - staged_at_kill + BATCH  # only the batch in flight again
    assert not (out / store.STAGING).exists()
    assert [path.name for path in out.glob("gen-*")] == [final.generation.name]
    hit = final.search("note number zero, edited", k=1)[0][0]
    assert hit.path.endswith("note000.txt") and hit.score == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize("failing", ["rename", "manifest"])
def test_failure_before_swap_leaves_previous_generation(tmp_path, monkeypatch, failing):
    folder, out = tmp_path / "notes", tmp_path / "index"
    _write_notes(folder, 0, 5)
    first = Index.build([folder], SlowFakeEmbedder(), out).generation.name
    _write_notes(folder, 5, 8)

    def crash(*args, **kwargs):
        raise KeyboardInterrupt("simulated kill")

    real_write_json = store.write_json_atomic
    if failing == "rename":
        monkeypatch.setattr(store.os, "rename", crash)
    else:
        monkeypatch.setattr(
            store,
            "write_json_atomic",
            lambda path, data: (
                crash() if path.name == store.CURRENT else real_write_json(path, data)
            ),
        )
    with pytest.raises(KeyboardInterrupt):
        Index.build([folder], SlowFakeEmbedder(), out)
    monkeypatch.undo()

    assert Index.open(out, SlowFakeEmbedder()).generation.name == first
    assert len(Index.open(out, SlowFakeEmbedder())) == 5
    index = Index.build([folder], SlowFakeEmbedder(), out)
    assert len(index) == 8 and index.last_update.embedded == 0  # all three were checkpointed
    assert index.last_update.resumed == 3
    assert [path.name for path in out.glob("gen-*")] == [index.generation.name]


def test_shards_of_a_killed_ray_run_are_recovered(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from mmembed.retrieval.decode import cache_key
    from mmembed.retrieval.embed import EmbedSettings
    from mmembed.retrieval.ray_engine import SHARD_CONFIG
    from mmembed.retrieval.walk import scan, stamp_item

    folder, out, log = tmp_path / "notes", tmp_path / "index", tmp_path / "embedded.log"
    _write_notes(folder, 0, 6)
    items = scan([folder])
    for item in items:
        stamp_item(item)
    shards = out / store.RAY_SHARDS
    shards.mkdir(parents=True)
    settings = EmbedSettings("fake-slow", None, None).to_dict()
    (shards / SHARD_CONFIG).write_text(json.dumps(settings, sort_keys=True))
    rows = [
        {
            "id": item.id,
            "cache_key": cache_key(item.modality, item.path, item.content_hash, "fake-slow"),
            "metadata": "{}",
            "thumbnail": b"",
            "snippet": "",
            "reason": "",
            "vector": _vector(Path(item.path).read_text()).tobytes(),
        }
        for item in items[:4]
    ]
    pq.write_table(pa.Table.from_pylist(rows), shards / "done.parquet")
    (shards / "cut-short.parquet").write_bytes(b"PAR1 cut short by the kill")

    index = Index.build([folder], SlowFakeEmbedder(log=str(log)), out)
    assert (len(index), index.last_update.resumed, index.last_update.embedded) == (6, 4, 2)
    assert len(log.read_text().splitlines()) == 2
    assert not shards.exists()
    hit = index.search("note number 1", k=1)[0][0]
    assert hit.path.endswith("note001.txt") and hit.score == pytest.approx(1.0, abs=1e-5)
