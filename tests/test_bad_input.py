"""Bad input: InputError naming the item, and with on_error="skip" nothing else is lost."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import mmembed
from mmembed import InputError


@pytest.fixture()
def corrupt_jpeg(tmp_path):
    good = open("assets/images/cat.jpg", "rb").read()
    path = tmp_path / "corrupt.jpg"
    path.write_bytes(good[:200] + b"\x00garbage" * 50)
    return path


@pytest.fixture()
def truncated_mp4(tmp_path):
    import os

    video = sorted(os.listdir("assets/videos"))[0]
    good = open(f"assets/videos/{video}", "rb").read()
    path = tmp_path / "truncated.mp4"
    path.write_bytes(good[: len(good) // 3])
    return path


BAD_CASES = {
    "corrupt jpeg": lambda f: mmembed.Image(f["corrupt_jpeg"]),
    "truncated mp4": lambda f: mmembed.Video(f["truncated_mp4"]),
    "missing file": lambda f: mmembed.Image("/no/such/photo.jpg"),
    "empty string": lambda f: "",
    "only NUL bytes": lambda f: "\x00\x00\x00",
    "only control characters": lambda f: mmembed.Text("\x01\x1b \x7f\u200b"),
    "empty document": lambda f: mmembed.Document([]),
    "huge table": lambda f: mmembed.Table(pd.DataFrame(np.zeros((1000, 1000)))),
    "unsupported type": lambda f: {"not": "an input"},
    "lone surrogate": lambda f: "caf\udce9",
    "lone surrogate in Text": lambda f: mmembed.Text("a \ud800 b"),
    "lone surrogate in a document segment": lambda f: mmembed.Document(["fine", "caf\udce9"]),
    "lone surrogate in a table cell": lambda f: mmembed.Table([{"name": "caf\udce9"}]),
}


@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_bad_item_raises_input_error_naming_its_index(mini, case, corrupt_jpeg, truncated_mp4):
    bad = BAD_CASES[case]({"corrupt_jpeg": corrupt_jpeg, "truncated_mp4": truncated_mp4})
    with pytest.raises(InputError) as raised:
        mini.encode(["a fine sentence", "another one", bad])
    assert raised.value.index == 2
    assert str(raised.value).startswith("item 2: ")


@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_skip_embeds_the_rest(mini, case, corrupt_jpeg, truncated_mp4):
    bad = BAD_CASES[case]({"corrupt_jpeg": corrupt_jpeg, "truncated_mp4": truncated_mp4})
    items = ["a fine sentence", bad, "assets/images/cat.jpg"]
    out = mini.encode(items, on_error="skip")
    assert out.failed == [1]
    assert isinstance(out.errors[1], InputError) and out.errors[1].index == 1
    assert np.isnan(out[1]).all()
    expected = mini.encode([items[0], items[2]])
    assert np.allclose(out[[0, 2]], expected, atol=1e-6)


def test_error_messages_say_why(mini, corrupt_jpeg):
    cases = [
        (mmembed.Image(corrupt_jpeg), "corrupt.jpg"),
        (mmembed.Image("/no/such/photo.jpg"), "not found"),
        ("   ", "empty text"),
        (mmembed.Document([]), "empty document"),
        (mmembed.Table(pd.DataFrame(np.zeros((1000, 1000)))), "100"),
        (3.5, "unsupported input type float"),
        (mmembed.Document(["ok", 42]), "segment 1"),
    ]
    for item, words in cases:
        with pytest.raises(InputError, match=words):
            mini.encode([item])


def test_unencodable_text_is_refused_by_item_and_skip_keeps_every_good_one(mini):
    good = ["a cat on a sofa", "a red car", mmembed.Text("two dogs"), "a bowl of soup"]
    bad = ["caf\udce9", mmembed.Text("\udcff"), mmembed.Document(["x", "\ud83d"])]
    items = [good[0], bad[0], good[1], bad[1], good[2], bad[2], good[3]]
    out = mini.encode(items, on_error="skip")
    assert out.failed == [1, 3, 5]
    for index in out.failed:
        assert "text is not valid Unicode" in str(out.errors[index])
        assert str(out.errors[index]).startswith(f"item {index}: ")
        assert "\n" not in str(out.errors[index])
    assert np.allclose(out[[0, 2, 4, 6]], mini.encode(good), atol=1e-6)
    with pytest.raises(InputError, match=r"item 1: text is not valid Unicode: 'caf\\udce9'"):
        mini.encode(items)


def test_unencodable_instruction_is_an_input_error(mini):
    with pytest.raises(InputError, match="instruction is not valid Unicode"):
        mini.encode(["a cat"], instruction="find \udce9")


def test_page_without_pixel_tower_is_a_clear_error(mini):
    from PIL import Image

    from mmembed.embedder import Embedder, EmbedderCfg

    # mmembed-mini reads pages (mmembed/weights); without a page tower a Page is a clear error.
    no_pages = Embedder(
        EmbedderCfg(name="mini-without-pages"),
        towers={"text": mini.towers["text"], "image": mini.towers["image"]},
        temporal=mini.temporal,
    )
    with pytest.raises(InputError, match="cannot embed page"):
        no_pages.encode([mmembed.Page(Image.new("RGB", (64, 64), "white"))])


def test_bad_arguments_are_value_errors(mini):
    with pytest.raises(ValueError, match="on_error"):
        mini.encode(["x"], on_error="ignore")
    with pytest.raises(ValueError, match="dim"):
        mini.encode(["x"], dim=1000)


def test_document_from_json_error_carries_the_item_index(tmp_path, mini, monkeypatch, capsys):
    bad = tmp_path / "notes.json"
    bad.write_text('{"segments": [{"video": "clip.mp4"}]}')
    with pytest.raises(InputError) as raised:
        mmembed.Document.from_json(bad, index=3)
    assert raised.value.index == 3 and str(raised.value).startswith("item 3: document ")

    from mmembed import cli
    from mmembed.models import registry

    monkeypatch.setattr(registry, "load", lambda name, device=None: mini)
    assert cli.main(["embed", "a fine sentence", str(bad)]) == 2
    assert capsys.readouterr().err.startswith("mmembed embed: item 1: document ")


def _cosine(a, b) -> float:
    return float(np.dot(a, b) / np.linalg.norm(a) / np.linalg.norm(b))


def test_sixteen_bit_png_embeds_like_its_eight_bit_copy(tmp_path, mini):
    from PIL import Image
    from skimage import data

    from mmembed.retrieval.decode import decode_item
    from mmembed.retrieval.walk import Item

    camera = data.camera()  # (512, 512) uint8
    Image.fromarray(camera.astype(np.uint16) * 257).save(tmp_path / "camera16.png")
    Image.fromarray(camera).save(tmp_path / "camera8.png")
    Image.new("L", camera.shape, 255).save(tmp_path / "white.png")
    assert Image.open(tmp_path / "camera16.png").mode == "I;16"
    paths = [tmp_path / name for name in ("camera16.png", "camera8.png", "white.png")]
    sixteen, eight, white = mini.encode([mmembed.Image(path) for path in paths])
    assert _cosine(sixteen, eight) >= 0.99
    assert _cosine(sixteen, white) < 0.9
    # the index decodes files through the same loader
    decoded = decode_item(Item.from_path(paths[0])).input.source
    assert np.array_equal(np.asarray(decoded)[..., 0], camera)


def test_every_image_mode_becomes_the_right_rgb(mini):
    from PIL import Image
    from skimage import data

    from mmembed.processors.image_modes import to_rgb

    photo = Image.fromarray(data.astronaut()).resize((128, 128))  # RGB
    grey = photo.convert("L")
    see_through = photo.convert("RGBA")
    pixels = np.asarray(see_through).copy()
    pixels[:40, :40] = (0, 0, 0, 0)  # black, fully transparent: must show as white
    see_through = Image.fromarray(pixels, "RGBA")
    on_white = np.asarray(photo).copy()
    on_white[:40, :40] = 255
    palette = photo.quantize(colors=255)  # indexes 0..254; 255 is black and transparent
    indexes = np.asarray(palette).copy()
    indexes[:40, :40] = 255
    colours = palette.getpalette()[: 255 * 3] + [0, 0, 0]
    palette = Image.fromarray(indexes, "P")
    palette.putpalette(colours)
    palette.info["transparency"] = 255
    palette_on_white = np.asarray(photo.quantize(colors=255).convert("RGB")).copy()
    palette_on_white[:40, :40] = 255
    cases = {
        "I;16": (Image.fromarray(np.asarray(grey).astype(np.uint16) * 257), grey),
        "I": (grey.convert("I").point(lambda value: value * 257), grey),
        "F": (Image.fromarray(np.asarray(grey, np.float32) / 255, "F"), grey),
        "CMYK": (photo.convert("CMYK"), photo),
        "LA": (photo.convert("LA"), grey),
        "RGBA": (see_through, Image.fromarray(on_white)),
        "P with transparency": (palette, Image.fromarray(palette_on_white)),
    }
    names = sorted(cases)
    converted = [to_rgb(cases[name][0]) for name in names]
    assert all(image.mode == "RGB" for image in converted)
    assert np.asarray(converted[names.index("RGBA")])[:40, :40].min() == 255
    assert np.asarray(converted[names.index("P with transparency")])[:40, :40].min() == 255
    got = mini.encode([mmembed.Image(cases[name][0]) for name in names])
    want = mini.encode([mmembed.Image(cases[name][1]) for name in names])
    for name, a, b in zip(names, got, want, strict=True):
        assert _cosine(a, b) >= 0.99, name
