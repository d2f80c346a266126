"""Video decoding on the shipped clip and on broken copies of it: real files, no mocks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mmembed.errors import InputError
from mmembed.processors.video import available_backends, decode_video, sample_frame_indices

ASSETS = Path(__file__).resolve().parent.parent / "assets"
CLIP = ASSETS / "videos" / "motorcycle_zoom.mp4"
CLIP_FRAMES = 20  # 2 s at 10 fps, see scripts/make_assets.py
BACKENDS = available_backends()


@pytest.mark.parametrize(
    ("num_total", "num_frames", "expected"),
    [
        # segments of 2.5 frames: [0,1] [2,4] [5,6] [7,9] -> middles 0, 3, 5, 8
        (10, 4, [0, 3, 5, 8]),
        # segments of 2 frames: the lower middle of each pair
        (16, 8, [0, 2, 4, 6, 8, 10, 12, 14]),
        # 20 frames into 8: bounds 0 2 5 7 10 12 15 17 20
        (20, 8, [0, 3, 5, 8, 10, 13, 15, 18]),
        (5, 5, [0, 1, 2, 3, 4]),
        (100, 1, [49]),
        # fewer frames than wanted: each frame repeats, in order
        (3, 8, [0, 0, 0, 1, 1, 1, 2, 2]),
        (1, 4, [0, 0, 0, 0]),
    ],
)
def test_sample_frame_indices_hand_checked(num_total, num_frames, expected):
    assert sample_frame_indices(num_total, num_frames) == expected


def test_sample_frame_indices_always_in_range_and_sorted():
    for num_total in range(1, 40):
        for num_frames in range(1, 12):
            indices = sample_frame_indices(num_total, num_frames)
            assert len(indices) == num_frames
            assert indices == sorted(indices)
            assert 0 <= indices[0] and indices[-1] < num_total


@pytest.mark.parametrize(("num_total", "num_frames"), [(0, 8), (10, 0)])
def test_sample_frame_indices_rejects_empty(num_total, num_frames):
    with pytest.raises(ValueError):
        sample_frame_indices(num_total, num_frames)


def test_pyav_backend_always_available():
    assert "pyav" in BACKENDS


@pytest.mark.parametrize("backend", BACKENDS)
def test_decode_clip_gives_rgb_frames(backend):
    frames = decode_video(CLIP, num_frames=8, backend=backend)
    assert len(frames) == 8
    assert all(frame.mode == "RGB" and frame.size == (320, 240) for frame in frames)
    # the clip zooms in, so consecutive sampled frames differ
    assert not np.array_equal(np.asarray(frames[0]), np.asarray(frames[-1]))


def test_decode_more_frames_than_the_clip_holds_repeats():
    frames = decode_video(str(CLIP), num_frames=CLIP_FRAMES + 5, backend="pyav")
    assert len(frames) == CLIP_FRAMES + 5
    assert np.array_equal(np.asarray(frames[0]), np.asarray(frames[1]))


@pytest.mark.skipif(len(BACKENDS) < 2, reason="decord is not installed")
def test_decord_and_pyav_give_the_same_frames():
    by_decord = decode_video(CLIP, num_frames=CLIP_FRAMES, backend="decord")
    by_pyav = decode_video(CLIP, num_frames=CLIP_FRAMES, backend="pyav")
    assert len(by_decord) == len(by_pyav) == CLIP_FRAMES
    for a, b in zip(by_decord, by_pyav, strict=True):
        diff = np.abs(np.asarray(a, dtype=np.int16) - np.asarray(b, dtype=np.int16))
        # both wrap FFmpeg's H.264 decoder and swscale; measured identical (max diff 0)
        assert diff.max() <= 2


def test_frame_list_is_sampled_like_a_file():
    frames = [np.full((4, 6, 3), value, dtype=np.uint8) for value in range(10)]
    frames[3] = Image.fromarray(frames[3]).convert("L")  # mixed inputs, grayscale PIL
    picked = decode_video(frames, num_frames=4)
    assert [int(np.asarray(frame)[0, 0, 0]) for frame in picked] == [0, 3, 5, 8]
    assert all(frame.mode == "RGB" for frame in picked)


def test_frame_array_of_shape_thwc():
    video = np.stack([np.full((4, 6, 3), value, dtype=np.uint8) for value in range(3)])
    picked = decode_video(video, num_frames=2)
    assert [int(np.asarray(frame)[0, 0, 0]) for frame in picked] == [0, 1]


def test_bad_frame_list_raises_input_error():
    with pytest.raises(InputError, match="empty"):
        decode_video([], num_frames=4)
    with pytest.raises(InputError, match="frame 0"):
        decode_video([np.zeros((4, 4, 3), dtype=np.float32)], num_frames=1)


@pytest.mark.parametrize("backend", BACKENDS)
def test_truncated_mp4_raises_input_error_naming_the_path(tmp_path, backend):
    data = CLIP.read_bytes()
    broken = tmp_path / "half.mp4"
    broken.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="truncated") as caught:
        decode_video(broken, num_frames=8, backend=backend)
    assert str(broken) in str(caught.value)


@pytest.mark.parametrize("backend", BACKENDS)
def test_corrupt_packets_raise_input_error(tmp_path, backend):
    # same length, garbage in the middle: the index is whole, the decoder must complain
    data = bytearray(CLIP.read_bytes())
    start = len(data) // 3
    data[start : start + 10000] = np.random.default_rng(0).bytes(10000)
    broken = tmp_path / "garbled.mp4"
    broken.write_bytes(bytes(data))
    with pytest.raises(InputError, match="corrupt") as caught:
        decode_video(broken, num_frames=8, backend=backend)
    assert str(broken) in str(caught.value)


@pytest.mark.parametrize("backend", BACKENDS)
def test_missing_empty_and_non_video_files(tmp_path, backend):
    cases = {
        tmp_path / "missing.mp4": "does not exist",
        tmp_path / "empty.mp4": "empty",
        ASSETS / "tables" / "planets.csv": "as a video",
        ASSETS / "images" / "cat.jpg": "still image",
    }
    (tmp_path / "empty.mp4").touch()
    for path, reason in cases.items():
        with pytest.raises(InputError, match=reason) as caught:
            decode_video(path, num_frames=4, backend=backend)
        assert str(path) in str(caught.value)


def test_unknown_backend_and_bad_source():
    with pytest.raises(ValueError, match="unknown video backend"):
        decode_video(CLIP, backend="opencv")
    with pytest.raises(InputError, match="unsupported video source"):
        decode_video(42)
