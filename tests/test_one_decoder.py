"""Every path that turns bytes into pixels reads them with ``processors.image.load_image``.

Five images made from a real photo, in the modes ``Image.convert("RGB")`` gets wrong or that
need care (a 16-bit PNG, 32-bit integer ``I`` and float ``F`` TIFFs, a greyscale PNG with
alpha ``LA``, a palette PNG with a transparent colour ``P``), go through training data, MMEB
frame folders, the server's uploads and its OpenAI requests, video frame lists and pages; each
must give exactly the library decoder's pixels.
"""

from __future__ import annotations

import base64
import json
from types import SimpleNamespace

import numpy as np
import pytest
import skimage.data
import torch
from PIL import Image

import mmembed
from mmembed.eval.data import _load_frame
from mmembed.processors import image as library
from mmembed.processors.plan import PlanCfg, plan_item
from mmembed.processors.video import decode_video
from mmembed.serve import service
from mmembed.serve.config import ServeCfg
from mmembed.serve.openai_request import parse
from mmembed.train.tasks import clip_base, clip_realign, pixel_text, video_curriculum


def _grey() -> np.ndarray:
    photo = Image.fromarray(skimage.data.astronaut()).resize((128, 128))
    return np.asarray(photo.convert("L"))


def _write(mode: str, folder) -> tuple:
    """(path, what ``Image.convert("RGB")`` gets wrong about it)."""
    grey = _grey()
    if mode == "I;16":
        path = folder / "astronaut16.png"
        Image.fromarray(grey.astype(np.uint16) * 257).save(path)
    elif mode == "I":
        path = folder / "astronaut32.tif"
        Image.fromarray(grey.astype(np.int32) * 257, "I").save(path)
    elif mode == "F":
        path = folder / "astronaut_float.tif"
        Image.fromarray(grey.astype(np.float32) / 255.0, "F").save(path)
    elif mode == "LA":
        path = folder / "astronaut_alpha.png"
        alpha = np.where(np.arange(grey.shape[1]) < 64, 0, 255).astype(np.uint8)
        Image.fromarray(np.dstack([grey, np.broadcast_to(alpha, grey.shape)]), "LA").save(path)
    else:
        path = folder / "astronaut_palette.png"
        photo = Image.fromarray(skimage.data.astronaut()).resize((128, 128))
        palette = photo.quantize(16)
        palette.info["transparency"] = 0
        palette.save(path, transparency=0)
    return path


MODES = ["I;16", "I", "F", "LA", "P"]


@pytest.fixture(params=MODES)
def picture(request, tmp_path):
    path = _write(request.param, tmp_path)
    with Image.open(path) as raw:
        assert raw.mode == request.param
    return path, np.asarray(library.load_image(path))


def _identity_cfg() -> PlanCfg:
    to_tensor = lambda image: torch.from_numpy(np.array(image))  # noqa: E731  (H, W, 3) uint8
    return PlanCfg(
        preprocess={"image": to_tensor, "page": to_tensor},
        split_text=lambda text: [text],
        table_chunks=lambda table: [],
        modalities=frozenset({"image", "page", "video", "text"}),
    )


def test_the_library_decoder_keeps_what_each_mode_shows(picture):
    path, expected = picture
    grey = _grey()
    assert expected.shape == (128, 128, 3) and expected.dtype == np.uint8
    if path.suffix == ".tif" or path.name == "astronaut16.png":  # rescaled, never clipped white
        np.testing.assert_array_equal(expected[..., 0], grey)
    elif path.name == "astronaut_alpha.png":  # transparent pixels laid on white
        assert (expected[:, :64] == 255).all()
        np.testing.assert_array_equal(expected[:, 64:, 0], grey[:, 64:])
    else:
        assert (expected == 255).all(axis=-1).any()  # the transparent colour is white


def test_a_16_bit_png_is_what_naive_conversion_gets_wrong(tmp_path):
    path = _write("I;16", tmp_path)
    with Image.open(path) as raw:
        naive = np.asarray(raw.convert("RGB"))
    expected = np.asarray(library.load_image(path))
    assert (naive == 255).mean() > 0.85 and (expected == 255).mean() < 0.05


def test_training_recipes_read_images_with_the_library_decoder():
    for module in (clip_base, clip_realign, video_curriculum, pixel_text):
        assert module.load_image is library.load_image, module.__name__


def test_mmeb_frame_folders(picture):
    path, expected = picture
    np.testing.assert_array_equal(np.asarray(_load_frame(path)), expected)


def test_server_uploads_and_openai_requests(picture):
    path, expected = picture
    assert service.load_image is library.load_image  # SearchService.search_upload's decoder
    np.testing.assert_array_equal(np.asarray(library.load_image(path.read_bytes())), expected)
    url = "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode()
    body = json.dumps({"input": [[{"type": "image_url", "image_url": {"url": url}}]]}).encode()
    model = SimpleNamespace(name="m", dim=8, query_instruction=None, document_instruction=None)
    request = parse(body, ServeCfg(), model)
    (part,) = plan_item(request.items[0], None, _identity_cfg())
    np.testing.assert_array_equal(part.payload.numpy(), expected)


def test_video_frame_lists(picture):
    path, expected = picture
    with Image.open(path) as frame:
        frames = [frame.copy(), frame.copy()]
    for decoded in decode_video(frames, 2):
        np.testing.assert_array_equal(np.asarray(decoded), expected)
    (part,) = plan_item(mmembed.Video(frames, 2), None, _identity_cfg())
    for pixels in part.payload:  # (T, H, W, 3)
        np.testing.assert_array_equal(pixels.numpy(), expected)


def test_images_and_pages(picture):
    path, expected = picture
    for item in (mmembed.Image(path), mmembed.Page(path), mmembed.Image(path.read_bytes())):
        (part,) = plan_item(item, None, _identity_cfg())
        np.testing.assert_array_equal(part.payload.numpy(), expected)
