"""Video decoding: a file or a list of frames in, ``num_frames`` RGB images out.

Frames are picked by deterministic segment-middle sampling (Frozen-in-Time's ``uniform``
eval mode, also used by VLM2Vec), so an evaluation run sees the same frames every time.
Files are decoded with decord when it imports, else with PyAV; both use FFmpeg and give
the same pixels on the shipped assets. Every file is first probed with PyAV, which only
reads packets, because decord can crash the interpreter on some corrupt files; a file that
fails the probe or the decode raises ``InputError`` naming the path.
"""

from __future__ import annotations

import functools
import logging
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ..errors import InputError
from .image_modes import to_rgb

logger = logging.getLogger(__name__)

BACKENDS = ("decord", "pyav")  # preference order when no backend is named
# FFmpeg demuxers that read still images; such a file is an image, not a video.
_IMAGE_DEMUXERS = ("image2", "_pipe")
# decord prefixes its messages with "[12:00:00] /path/to/file.cc:123: ".
_DECORD_PREFIX = re.compile(r"^(\[[\d:]+\] \S+:\d+: )+")

Frame = Image.Image | np.ndarray


def sample_frame_indices(num_total: int, num_frames: int) -> list[int]:
    """Pick the middle frame of each of ``num_frames`` equal segments.

    Segment ``i`` covers frames ``[floor(i*T/N), floor((i+1)*T/N) - 1]`` and gives the
    middle ``(first + last) // 2``, as Frozen-in-Time's ``uniform`` mode does. A segment
    that holds no frame (``T < N``) takes its first index, so short clips repeat frames in
    order and the result always has ``num_frames`` entries.

    Args:
        num_total: frames in the video (T), at least 1.
        num_frames: frames wanted (N), at least 1.

    Raises:
        ValueError: if either count is below 1.
    """
    if num_total < 1 or num_frames < 1:
        raise ValueError(f"need num_total >= 1 and num_frames >= 1, got {num_total}, {num_frames}")
    bounds = [i * num_total // num_frames for i in range(num_frames + 1)]
    indices = []
    for first, end in zip(bounds[:-1], bounds[1:], strict=True):
        last = max(end - 1, first)
        indices.append((first + last) // 2)
    return indices


@functools.cache
def available_backends() -> tuple[str, ...]:
    """Decoders that import on this machine, in preference order."""
    found = []
    for name in BACKENDS:
        try:
            __import__("av" if name == "pyav" else name)
        except ImportError as error:  # a missing or broken binary wheel: skip that backend
            logger.debug("video backend %s unavailable: %s", name, error)
            continue
        found.append(name)
    return tuple(found)


def decode_video(
    source: str | os.PathLike | Sequence[Frame] | np.ndarray,
    num_frames: int = 8,
    backend: str | None = None,
) -> list[Image.Image]:
    """Sample ``num_frames`` RGB frames from a video file or a list of frames.

    Args:
        source: a video path, a list of frames (PIL images or ``(H, W, 3)`` uint8 arrays)
            or a ``(T, H, W, 3)`` uint8 array.
        num_frames: how many frames to return; short videos repeat frames.
        backend: ``"decord"``, ``"pyav"`` or None for the first of ``available_backends()``.
            Ignored for frame lists.

    Raises:
        InputError: the file is missing, not a video, truncated or undecodable, or a frame
            in the list is not an image.
        ValueError: ``num_frames`` < 1, or the backend is unknown or not installed.
    """
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    if isinstance(source, (str, os.PathLike)):
        return _decode_file(Path(source), num_frames, _pick_backend(backend))
    if isinstance(source, np.ndarray) and source.ndim == 4:
        source = list(source)
    if isinstance(source, (list, tuple)):
        return _sample_list(source, num_frames)
    raise InputError(
        f"unsupported video source {type(source).__name__}; use a path or a list of frames"
    )


def _pick_backend(backend: str | None) -> str:
    available = available_backends()
    if backend is None:
        if not available:
            raise ValueError("no video backend installed; pip install av (or decord)")
        return available[0]
    if backend not in BACKENDS:
        raise ValueError(f"unknown video backend {backend!r}; choose one of {BACKENDS}")
    if backend not in available:
        raise ValueError(f"video backend {backend!r} is not installed; available: {available}")
    return backend


# ---- frame lists ---------------------------------------------------------------------------


def _sample_list(frames: Sequence[Any], num_frames: int) -> list[Image.Image]:
    """Sample a list of frames the same way as a file, so both inputs embed alike."""
    if len(frames) == 0:
        raise InputError("video frame list is empty")
    indices = sample_frame_indices(len(frames), num_frames)
    return [_frame_to_rgb(frames[i], i) for i in indices]


def _frame_to_rgb(frame: Any, position: int) -> Image.Image:
    if isinstance(frame, Image.Image):
        return to_rgb(frame)  # every Pillow mode, as images are read
    if isinstance(frame, np.ndarray):
        shape_ok = frame.ndim == 2 or (frame.ndim == 3 and frame.shape[2] in (3, 4))
        if frame.dtype == np.uint8 and shape_ok and frame.size > 0:
            return to_rgb(Image.fromarray(frame))
        raise InputError(
            f"video frame {position} must be an (H, W, 3) uint8 array, "
            f"got shape {frame.shape} dtype {frame.dtype}"
        )
    raise InputError(
        f"video frame {position} is a {type(frame).__name__}, not a PIL image or array"
    )


# ---- files ---------------------------------------------------------------------------------


def _decode_file(path: Path, num_frames: int, backend: str) -> list[Image.Image]:
    """Probe the file with PyAV, then decode the sampled frames with ``backend``."""
    if not path.is_file():
        raise InputError(f"video file {str(path)!r} does not exist or is not a file")
    if path.stat().st_size == 0:
        raise InputError(f"video file {str(path)!r} is empty (0 bytes)")
    num_packets = _probe(path)
    if backend == "decord":
        frames = _decode_decord(path, num_frames)
    else:
        frames = _decode_pyav(path, num_frames, num_packets)
    logger.debug("decoded %d frames from %s with %s", len(frames), path, backend)
    return frames


def _probe(path: Path) -> int:
    """Read the packets (no decoding) and check the file holds a whole video stream.

    Returns:
        The number of video packets, one per frame for the codecs FFmpeg muxes.
    """
    import av

    try:
        with av.open(str(path)) as container:
            _reject_images(path, container)
            if not container.streams.video:
                raise InputError(f"file {str(path)!r} has no video stream")
            stream = container.streams.video[0]
            declared = stream.frames  # from the container index; 0 when unknown
            num_packets = sum(1 for packet in container.demux(stream) if packet.size)
    except av.FFmpegError as error:
        raise InputError(f"cannot read {str(path)!r} as a video: {_describe(error)}") from error
    if num_packets == 0:
        raise InputError(f"video {str(path)!r} has no frames")
    if declared and num_packets < declared:
        raise InputError(
            f"video {str(path)!r} is truncated: its index lists {declared} frames "
            f"but the file holds {num_packets}"
        )
    return num_packets


def _reject_images(path: Path, container: Any) -> None:
    name = container.format.name
    if name == _IMAGE_DEMUXERS[0] or name.endswith(_IMAGE_DEMUXERS[1]):
        raise InputError(f"file {str(path)!r} is a still image, not a video; use mmembed.Image")


def _decode_pyav(path: Path, num_frames: int, num_expected: int) -> list[Image.Image]:
    """Decode sequentially, keeping only the sampled frames (PyAV cannot seek exactly)."""
    frames, num_decoded = _pyav_pass(path, sample_frame_indices(num_expected, num_frames))
    if num_decoded != num_expected:
        # Packet count and decoded frames differ (rare: e.g. a dropped frame); sample again.
        if num_decoded == 0:
            raise InputError(f"video {str(path)!r} decoded to zero frames")
        logger.debug("%s: %d packets but %d frames", path, num_expected, num_decoded)
        indices = sample_frame_indices(num_decoded, num_frames)
        frames, _ = _pyav_pass(path, indices)
    return frames


def _pyav_pass(path: Path, indices: list[int]) -> tuple[list[Image.Image], int]:
    """One decode pass: the frames at ``indices`` (in order, repeats kept) and the total count."""
    import av

    wanted = set(indices)
    kept: dict[int, Image.Image] = {}
    count = 0
    try:
        with av.open(str(path)) as container:
            for count, frame in enumerate(container.decode(video=0), start=1):
                if count - 1 in wanted:
                    kept[count - 1] = frame.to_image()
    except av.FFmpegError as error:
        raise InputError(
            f"video {str(path)!r} is corrupt or truncated: {_describe(error)}"
        ) from error
    frames = [kept[i] for i in indices if i in kept]
    return frames, count


def _decode_decord(path: Path, num_frames: int) -> list[Image.Image]:
    import decord

    try:
        reader = decord.VideoReader(str(path), ctx=decord.cpu(0), num_threads=1)
        total = len(reader)
        if total == 0:
            raise InputError(f"video {str(path)!r} has no frames")
        batch = reader.get_batch(sample_frame_indices(total, num_frames)).asnumpy()
    except (decord.DECORDError, RuntimeError) as error:
        raise InputError(
            f"video {str(path)!r} is corrupt or truncated: {_describe(error)}"
        ) from error
    return [to_rgb(Image.fromarray(pixels)) for pixels in batch]  # (N, H, W, 3) uint8 RGB


def _describe(error: BaseException) -> str:
    """The decoder's message, without the time and C++ source location decord prefixes."""
    strerror = getattr(error, "strerror", None)  # PyAV's FFmpegError has FFmpeg's own words
    if strerror:
        return strerror
    lines = [line for line in str(error).strip().splitlines() if line.strip()]
    text = lines[0] if lines else type(error).__name__
    return _DECORD_PREFIX.sub("", text)
