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
    "empty document": lambda f: mmembed.Document([]),
    "huge table": lambda f: mmembed.Table(pd.DataFrame(np.zeros((1000, 1000)))),
    "unsupported type": lambda f: {"not": "an input"},
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
