"""A repair that survives its own kill (issue 21): ``Index.repair`` (``mmembed index --repair``)
builds the new generation beside the damaged one and swaps only when it is complete, so a
SIGKILL at any point leaves an index the next ``--repair`` restores to the clean results.

The repair runs in a real subprocess with the slow fake embedder of ``test_retrieval_crash``;
the test kills it at several points: while salvaging, after some batches were checkpointed,
with the new generation written but not yet renamed, and renamed but not yet made current.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_retrieval_crash import BATCH, SlowFakeEmbedder, _staged_count, _write_notes

from mmembed.retrieval import Index, store

REPO = Path(__file__).resolve().parents[1]
NOTES = 40
QUERIES = ("note number 3", "note number 17", "note number 39")
DAMAGES = {  # file of the generation -> how it is damaged
    "vectors.npy": lambda data: data[: len(data) // 2],
    "meta.sqlite": lambda data: data[:100] + b"\xff" * 200 + data[300:],
}
POINTS = ("salvaging", "embedding", "written", "renamed")


def main(out: str, point: str) -> None:
    """Subprocess entry point: repair ``out``, pausing where the test kills it."""
    pause = {"salvaging": 0.0, "embedding": 0.2}.get(point, 0.0)
    if point == "salvaging":
        from mmembed.retrieval import repair

        salvage = repair.salvage

        def slow_salvage(index_dir):
            (Path(out) / "salvaging").touch()
            time.sleep(60)
            return salvage(index_dir)

        repair.salvage = slow_salvage
        import mmembed.retrieval.update as update

        update.salvage = slow_salvage
    if point in ("written", "renamed"):
        rename, write_json = store.os.rename, store.write_json_atomic

        def slow_rename(source, target):
            if point == "written":
                (Path(out) / "written").touch()
                time.sleep(60)
            return rename(source, target)

        def slow_write_json(path, data):
            if point == "renamed" and path.name == store.CURRENT:
                (Path(out) / "renamed").touch()
                time.sleep(60)
            return write_json(path, data)

        store.os.rename = slow_rename
        store.write_json_atomic = slow_write_json
    Index.repair(out, SlowFakeEmbedder(pause), batch_size=BATCH, num_workers=1)


def _spawn(out: Path, point: str) -> subprocess.Popen:
    code = (
        f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); "
        f"from test_repair_kill import main; main(*sys.argv[1:])"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, "-c", code, str(out), point], cwd=REPO, env=env)


def _reached(out: Path, point: str) -> bool:
    if point == "embedding":
        return _staged_count(out) >= 2 * BATCH
    return (out / point).exists()


def _top(out: Path) -> list[list[tuple[str, float]]]:
    index = Index.open(out, SlowFakeEmbedder())
    return [
        [(Path(hit.path).name, round(hit.score, 5)) for hit in hits]
        for hits in index.search(list(QUERIES), k=5)
    ]


@pytest.fixture(scope="module")
def clean(tmp_path_factory) -> tuple[Path, list]:
    root = tmp_path_factory.mktemp("repair")
    _write_notes(root / "notes", 0, NOTES)
    Index.build([root / "notes"], SlowFakeEmbedder(), root / "index", batch_size=BATCH)
    return root / "index", _top(root / "index")


@pytest.mark.parametrize("point", POINTS)
@pytest.mark.parametrize("damaged", sorted(DAMAGES))
def test_a_repair_killed_at_any_point_is_finished_by_the_next(clean, tmp_path, damaged, point):
    import shutil

    source, clean_top = clean
    out = tmp_path / "index"
    shutil.copytree(source, out)
    target = out / "gen-000001" / damaged
    target.write_bytes(DAMAGES[damaged](target.read_bytes()))

    process = _spawn(out, point)
    deadline = time.time() + 120
    while not _reached(out, point) and time.time() < deadline and process.poll() is None:
        time.sleep(0.02)
    assert process.poll() is None, f"the repair ended before it reached {point}"
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    (out / point).unlink(missing_ok=True)

    # Whatever the kill left, the next repair (a new process) restores the clean results.
    assert any(path.is_dir() for path in out.glob("gen-*")), "the kill left no generation"
    assert _spawn(out, "now").wait(timeout=120) == 0
    assert _top(out) == clean_top
    assert len(Index.open(out, SlowFakeEmbedder())) == NOTES
    assert not (out / store.STAGING).exists()
    assert [path.name for path in out.glob("gen-*") if not path.name.endswith(".tmp")] == [
        Index.open(out, SlowFakeEmbedder()).generation.name
    ]
