"""The reader page route: lines found on real-looking pages, read by the shipped line reader,
embedded by the text tower; saved and loaded as one model."""

from __future__ import annotations

import numpy as np
import pytest
from page_samples import HELD_OUT_FONTS, SENTENCES
from PIL import Image, ImageDraw

import mmembed
from mmembed.encoders.reader import (
    ALPHABET,
    LineReader,
    ReaderCfg,
    ReaderPageTower,
    batch_lines,
    decode,
    encode,
    line_crops,
    load_reader,
    to_alphabet,
)
from mmembed.pages.styles import plain_page
from mmembed.pages.unseen import regular_face
from mmembed.processors.render import open_font, wrap_text
from mmembed.train.page_reader import edit_distance

CFG = ReaderCfg()


def page_lines(text: str, font_path: str, size: int, width: int = 448) -> int:
    return sum(1 for _ in wrap_text(text, open_font(font_path, size), width - 40))


@pytest.mark.parametrize("size", [12, 20, 36])
def test_lines_are_found_in_unseen_fonts(size):
    text = " ".join(SENTENCES[:4])
    for pattern in HELD_OUT_FONTS:
        font = regular_face(pattern)
        page = plain_page(text, font, size)
        assert len(line_crops(page, CFG)) == page_lines(text, font, size), (font, size)


def test_lines_survive_colour_and_a_small_rotation():
    font = regular_face(HELD_OUT_FONTS[0])
    text = " ".join(SENTENCES[:3])
    expected = page_lines(text, font, 22)
    dark = Image.new("RGB", (448, 260), (20, 30, 60))
    draw = ImageDraw.Draw(dark)
    for number, line in enumerate(wrap_text(text, open_font(font, 22), 408)):
        draw.text((20, 20 + 30 * number), line, font=open_font(font, 22), fill=(240, 230, 120))
    assert len(line_crops(dark, CFG)) == expected
    tilted = dark.rotate(2.5, Image.Resampling.BILINEAR, fillcolor=(20, 30, 60))
    assert len(line_crops(tilted, CFG)) == expected
    assert all(crop.shape[0] == CFG.height for crop in line_crops(tilted, CFG))


def test_blank_and_tiny_pages_have_no_lines():
    assert line_crops(Image.new("RGB", (300, 200), "white"), CFG) == []
    assert line_crops(Image.new("RGB", (3, 2), (40, 40, 40)), CFG) == []


def test_long_lines_come_in_pieces():
    font = regular_face(HELD_OUT_FONTS[1])
    page = plain_page(" ".join(SENTENCES), font, 16, width=3000)
    crops = line_crops(page, CFG)
    assert len(crops) > 1 and max(crop.shape[1] for crop in crops) <= CFG.max_width


def test_alphabet_and_ctc_decoding():
    assert to_alphabet("“Café” – naïve…\tok") == '"Cafe" - naive... ok'
    ids = encode("aab b")
    assert decode([0, *ids[:1], ids[0], 0, ids[1], 0, *ids[2:], 0]) == "aab b"
    assert len(ALPHABET) == 95 and decode([0, 0, 0]) == ""


@pytest.fixture(scope="module")
def reader_mini():
    return mmembed.load("mmembed-mini", page="reader")


def test_shipped_reader_reads_unseen_fonts():
    """Character error rate of the sentences above, each in all four held-out families at 20 px.

    On the 250-sentence unseen-font set the shipped reader's CER at 20 px is a few percent
    (README, "Pages"); a reader that had not learnt to read would be near 1.
    """
    reader = load_reader()
    errors = chars = 0
    for pattern in HELD_OUT_FONTS:
        font = regular_face(pattern)
        for text in SENTENCES:
            errors += edit_distance(reader.read_page(plain_page(text, font, 20)), text)
            chars += len(text)
    assert errors / chars <= 0.05, errors / chars


def test_reader_route_finds_pages_in_unseen_fonts(reader_mini):
    assert isinstance(reader_mini.towers["page"], ReaderPageTower)
    fonts = [regular_face(pattern) for pattern in HELD_OUT_FONTS]
    pages = [
        mmembed.Page(plain_page(text, fonts[i % len(fonts)], size=14 + 6 * (i % 3)))
        for i, text in enumerate(SENTENCES)
    ]
    scores = reader_mini.similarity(reader_mini.encode(SENTENCES), reader_mini.encode(pages))
    assert (scores.argmax(axis=1) == np.arange(len(SENTENCES))).all(), scores.round(2)
    blank = reader_mini.encode(mmembed.Page(Image.new("RGB", (200, 100), "white")))
    assert blank.shape == (384,) and np.isfinite(blank).all()


def test_reader_route_saves_and_loads(reader_mini, tmp_path):
    page = mmembed.Page(plain_page(SENTENCES[1], regular_face(HELD_OUT_FONTS[2]), 20))
    reader_mini.save(tmp_path / "mini")
    loaded = mmembed.load(tmp_path / "mini")
    assert isinstance(loaded.towers["page"], ReaderPageTower)
    np.testing.assert_allclose(loaded.encode(page), reader_mini.encode(page), atol=1e-6)


def test_a_fresh_reader_is_the_right_shape():
    reader = LineReader(CFG).eval()
    crops = line_crops(plain_page(SENTENCES[2], regular_face(HELD_OUT_FONTS[3]), 20), CFG)
    lines, widths = batch_lines(crops)
    logits = reader(lines)
    assert logits.shape == (len(crops), int(widths.max()) // LineReader.STRIDE, len(ALPHABET) + 1)


def test_onnx_runtime_reads_as_torch_does(tmp_path, monkeypatch):
    monkeypatch.setenv("MMEMBED_HOME", str(tmp_path))
    reader = load_reader()
    pages = [
        plain_page(text, regular_face(HELD_OUT_FONTS[i % 4]), 18)
        for i, text in enumerate(SENTENCES)
    ]
    onnx = [reader.read_page(page) for page in pages]
    assert list((tmp_path / "onnx").glob("*/model.onnx"))  # the export ran, once, and was kept
    torch_read = [load_reader().set_runtime("torch").read_page(page) for page in pages]
    assert onnx == torch_read


def test_a_failed_reader_export_falls_back_to_torch(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("MMEMBED_HOME", str(tmp_path / "not-a-folder"))
    (tmp_path / "not-a-folder").write_text("a file where the cache folder should be")
    page = plain_page(SENTENCES[4], regular_face(HELD_OUT_FONTS[1]), 20)
    read = load_reader().set_runtime("onnx").read_page(page)
    assert read == load_reader().set_runtime("torch").read_page(page)
    assert "falls back to torch" in caplog.text
