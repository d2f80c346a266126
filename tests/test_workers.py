"""Worker processes prepare encode's inputs: same vectors, same order, same errors, no hangs.

Real files throughout: the asset photos, the shipped video clip, broken copies of both.
"""

from __future__ import annotations

import os
import pickle
import shutil
import signal
import time
from pathlib import Path

import numpy as np
import pytest

import mmembed
from mmembed.errors import InputError
from mmembed.preparation import (
    WorkerError,
    chunk_size,
    default_workers,
    pack,
    prepared_chunks,
    resolve_workers,
)

ASSETS = Path(__file__).resolve().parent.parent / "assets"
PHOTOS = sorted(str(p) for p in (ASSETS / "images").glob("*.jpg"))
CLIP = ASSETS / "videos" / "motorcycle_zoom.mp4"
TABLE = ASSETS / "tables" / "planets.csv"


@pytest.fixture(autouse=True)
def small_calls_use_workers(monkeypatch):
    """The lists here are small: let them use worker processes, as large ones do."""
    import mmembed.preparation

    monkeypatch.setattr(mmembed.preparation, "MIN_ITEMS_FOR_WORKERS", 1)


@pytest.fixture
def workers(mini):
    """mini with a given worker count; restored after the test."""
    saved = mini.cfg.num_workers, mini.cfg.preprocess_on

    def set_workers(count):
        mini.cfg.num_workers = count
        return mini

    yield set_workers
    mini.cfg.num_workers, mini.cfg.preprocess_on = saved


def _mixed_items() -> list:
    """Every modality, decoded by workers in input order: images, video, table, document."""
    items = [mmembed.Image(p) for p in PHOTOS] + ["a photo of an astronaut", "a cat"]
    items += [mmembed.Video(str(CLIP), num_frames=4), mmembed.Table(str(TABLE))]
    items += [mmembed.Document(["Apollo 11", mmembed.Image(PHOTOS[0])])]
    return items + [mmembed.Image(p) for p in reversed(PHOTOS)]


def test_workers_give_the_inline_vectors_in_input_order(workers):
    items = _mixed_items()
    inline = workers(0).encode(items, batch_size=4)
    processes = workers(2).encode(items, batch_size=4)
    np.testing.assert_array_equal(inline, processes)
    # The same photo at both ends of the list: rows follow the input, not the batches (in
    # other batches, so equal to float rounding; any other photo is at cosine < 0.99).
    np.testing.assert_allclose(processes[0], processes[-1], atol=1e-6)
    assert float(processes[0] @ processes[1]) < 0.99


def test_bad_files_in_workers_name_their_item(workers, tmp_path):
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(Path(PHOTOS[1]).read_bytes()[:300])
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"not a picture at all" * 50)
    short_video = tmp_path / "short.mp4"
    short_video.write_bytes(CLIP.read_bytes()[:2000])
    good = [mmembed.Image(p) for p in PHOTOS]
    items = good[:4] + [mmembed.Image(str(empty))] + good[4:] + [mmembed.Image(str(truncated))]
    items += [mmembed.Image(str(junk)), mmembed.Video(str(short_video))]
    model = workers(2)
    with pytest.raises(InputError) as caught:
        model.encode(items, batch_size=4)
    assert caught.value.index == 4 and "empty.jpg" in str(caught.value)
    result = model.encode(items, batch_size=4, on_error="skip")
    bad = {4, len(good) + 1, len(good) + 2, len(good) + 3}
    assert set(result.errors) == bad
    assert all(result.errors[i].index == i for i in bad)
    reference = workers(0).encode(good, batch_size=4)
    kept = [i for i in range(len(items)) if i not in bad]
    # Skipped items leave the batches, so other batches: equal to float rounding.
    np.testing.assert_allclose(result[kept], reference, atol=1e-6)
    assert np.isnan(result[sorted(bad)]).all()


def test_a_killed_worker_ends_encode_with_an_error_naming_the_chunk(workers, monkeypatch):
    """A worker that dies (SIGKILL, as the out-of-memory killer sends) never hangs encode."""
    from mmembed.processors import plan

    victim = PHOTOS[3]
    real = plan.load_image

    def load_or_die(source):
        if str(source) == victim:
            os.kill(os.getpid(), signal.SIGKILL)
        return real(source)

    monkeypatch.setattr(plan, "load_image", load_or_die)  # forked workers inherit it
    items = [mmembed.Image(p) for p in PHOTOS * 2]
    started = time.monotonic()
    with pytest.raises(WorkerError, match=r"worker process died preparing items .*3"):
        workers(2).encode(items, batch_size=4)
    assert time.monotonic() - started < 60


def _die_on_five(index: int) -> int:
    if index == 5:
        os.kill(os.getpid(), signal.SIGKILL)
    return index * 10


def test_prepared_chunks_keep_order_and_report_a_dead_worker():
    chunks = [[0, 1], [2, 3], [4, 5], [6, 7]]
    got = [
        (list(chunk), prepared.unpack())
        for chunk, prepared in prepared_chunks(chunks[:2], lambda i: i * 10, 2)
    ]
    assert got == [([0, 1], [0, 10]), ([2, 3], [20, 30])]
    seen = []
    with pytest.raises(WorkerError, match=r"items 4, 5 \(chunk 3 of 4\)"):
        for _chunk, prepared in prepared_chunks(chunks, _die_on_five, 2):
            seen.append(prepared.unpack())
    # Chunks that came back before the death are right and in order (how many is a race).
    assert seen == [[0, 10], [20, 30]][: len(seen)]


def test_few_items_are_prepared_inline_many_in_processes(monkeypatch):
    import mmembed.preparation

    monkeypatch.setattr(mmembed.preparation, "MIN_ITEMS_FOR_WORKERS", 64)
    few = [list(range(s, s + 8)) for s in range(0, 56, 8)]  # 56 items
    pids = {
        p for _, ready in prepared_chunks(few, lambda i: os.getpid(), 2) for p in ready.unpack()
    }
    assert pids == {os.getpid()}
    many = [list(range(s, s + 8)) for s in range(0, 64, 8)]
    pids = {
        p for _, ready in prepared_chunks(many, lambda i: os.getpid(), 2) for p in ready.unpack()
    }
    assert len(pids) == 2 and os.getpid() not in pids


def test_pack_moves_tensors_into_one_buffer_per_dtype():
    import torch

    value = [
        {"a": torch.arange(6, dtype=torch.float32).view(2, 3), "b": "text"},
        (torch.ones(2, 2, dtype=torch.uint8), torch.full((4,), 7.0)),
    ]
    packed = pack(value)
    assert sorted(str(d) for d in packed.buffers) == ["torch.float32", "torch.uint8"]
    assert packed.buffers[torch.float32].numel() == 10
    out = packed.unpack()
    assert torch.equal(out[0]["a"], value[0]["a"]) and out[0]["b"] == "text"
    assert torch.equal(out[1][0], value[1][0]) and torch.equal(out[1][1], value[1][1])


def test_input_error_pickles_with_its_index():
    error = pickle.loads(pickle.dumps(InputError("cannot decode image x.png", 7)))
    assert (error.index, error.reason, str(error)) == (7, "cannot decode image x.png", str(error))
    assert str(error) == "item 7: cannot decode image x.png"


def test_worker_counts():
    assert resolve_workers(0) == 0 and resolve_workers(3) == 3
    assert resolve_workers(None) == default_workers()
    assert 1 <= default_workers() <= 16
    with pytest.raises(ValueError, match="num_workers"):
        resolve_workers(-1)
    assert chunk_size(512, 32, 0) == 32  # inline: a batch per chunk
    assert chunk_size(512, 256, 16) == 8  # 64 chunks: every worker has four
    assert chunk_size(100_000, 256, 16) == 256


def test_preprocessing_on_the_device_matches_pil(clip, workers):
    """Raw pixels resized by torch (here on the CPU, as on a GPU) against PIL's path.

    Not bit-exact: PIL resizes uint8 in fixed point, torch in float; the tolerance is the
    issue's cosine >= 0.9999 on the asset photos (seeded random ViT-B-32 weights).
    """
    assert clip.towers["image"].pixel_steps is not None
    saved = clip.cfg.preprocess_on, clip.cfg.num_workers
    try:
        clip.cfg.num_workers = 2
        clip.cfg.preprocess_on = "workers"
        pil = clip.encode(PHOTOS, batch_size=4)
        clip.cfg.preprocess_on = "device"
        device = clip.encode(PHOTOS, batch_size=4)
        video = clip.encode(mmembed.Video(str(CLIP), num_frames=4))
        clip.cfg.preprocess_on = "workers"
        video_pil = clip.encode(mmembed.Video(str(CLIP), num_frames=4))
    finally:
        clip.cfg.preprocess_on, clip.cfg.num_workers = saved
    cosines = (pil * device).sum(axis=1)
    print(f"device vs PIL preprocessing, min cosine {cosines.min():.6f}")
    assert cosines.min() >= 0.9999
    assert float(video @ video_pil) >= 0.9999
    with pytest.raises(ValueError, match="preprocess_on"):
        clip.cfg.preprocess_on = "gpu"
        try:
            clip.encode(PHOTOS[:1])
        finally:
            clip.cfg.preprocess_on = saved[0]


def test_two_devices_give_the_one_device_vectors(workers):
    """Two CPU "devices" (two model copies, each on its own thread) against one."""
    items = _mixed_items()
    model = workers(2)
    one = model.encode(items, batch_size=4)
    two = model.encode(items, batch_size=4, device=["cpu", "cpu"])
    np.testing.assert_array_equal(one, two)
    with pytest.raises(ValueError, match="at least one device"):
        model.encode(items, device=[])


def test_index_embeds_with_worker_processes_and_two_devices(mini, tmp_path):
    from mmembed.retrieval import Index

    folder = tmp_path / "photos"
    folder.mkdir()
    for path in PHOTOS:
        shutil.copy(path, folder)
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    one = Index.build([folder], mini, tmp_path / "one", num_workers=2, batch_size=4)
    two = Index.build(
        [folder], mini, tmp_path / "two", num_workers=2, batch_size=4, devices=["cpu", "cpu"]
    )
    assert len(one) == len(two) == len(PHOTOS)
    assert [s["id"] for s in one.skipped()] == [str(folder / "broken.jpg")]
    for query in ("an astronaut", "a cat"):
        hits_one = [(h.id, round(h.score, 6)) for h in one.search(query, k=3)[0]]
        hits_two = [(h.id, round(h.score, 6)) for h in two.search(query, k=3)[0]]
        assert hits_one == hits_two
    vectors = mini.encode([mmembed.Image(str(folder / Path(p).name)) for p in PHOTOS])
    hit = one.search(mmembed.Image(PHOTOS[2]), k=1)[0][0]
    assert Path(hit.id).name == Path(PHOTOS[2]).name
    assert hit.score == pytest.approx(float(vectors[2] @ vectors[2]), abs=1e-5)


def test_index_cli_takes_workers_and_devices(cli, tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    for path in PHOTOS[:4]:
        shutil.copy(path, folder)
    code, out, err = cli(
        "index", folder, "--out", tmp_path / "ix", "--workers", "2", "--devices", "cpu,cpu"
    )
    assert code == 0, err
    assert "4 items" in out
    code, out, err = cli("index", folder, "--out", tmp_path / "ix0", "--workers", "0")
    assert code == 0 and "4 items" in out, err
    code, _, err = cli("index", folder, "--out", tmp_path / "bad", "--workers", "-1")
    assert code != 0 and "--workers must be at least 0" in err
    code, _, err = cli(
        "index", folder, "--out", tmp_path / "bad", "--device", "cpu", "--devices", "cpu"
    )
    assert code != 0 and "not both" in err
