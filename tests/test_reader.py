"""The reader page route: lines found on real-looking pages, read by the shipped line reader,
embedded by the text tower; saved and loaded as one model."""

from __future__ import annotations

import dataclasses
import json
import logging
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from debian import HELD_OUT_FONTS as HELD_OUT_PACKAGES
from debian import needs
from page_samples import ACCENTED, HELD_OUT_FONTS, SENTENCES
from PIL import Image, ImageDraw

import mmembed
from mmembed.encoders.reader import (
    ALPHABET,
    ASCII,
    LineReader,
    ReaderCfg,
    ReaderPageTower,
    batch_lines,
    decode,
    encode,
    line_crops,
    load_reader,
    save_reader,
    text_blocks,
    to_alphabet,
)
from mmembed.pages.styles import fonts_for, plain_page
from mmembed.pages.unseen import regular_face, two_column_page
from mmembed.processors.render import open_font, wrap_text
from mmembed.train.page_reader import edit_distance

CFG = ReaderCfg()
needs_fonts = needs(*HELD_OUT_PACKAGES)  # the unseen-font families page_samples draws


def page_lines(text: str, font_path: str, size: int, width: int = 448) -> int:
    return sum(1 for _ in wrap_text(text, open_font(font_path, size), width - 40))


@needs_fonts
@pytest.mark.parametrize("size", [12, 20, 36])
def test_lines_are_found_in_unseen_fonts(size):
    text = " ".join(SENTENCES[:4])
    for pattern in HELD_OUT_FONTS:
        font = regular_face(pattern)
        page = plain_page(text, font, size)
        assert len(line_crops(page, CFG)) == page_lines(text, font, size), (font, size)


@needs_fonts
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


@needs_fonts
def test_long_lines_come_in_pieces():
    font = regular_face(HELD_OUT_FONTS[1])
    page = plain_page(" ".join(SENTENCES), font, 16, width=3000)
    crops = line_crops(page, CFG)
    assert len(crops) > 1 and max(crop.shape[1] for crop in crops) <= CFG.max_width


def test_alphabet_and_ctc_decoding():
    assert to_alphabet("“Café” – naïve…\tok") == '"Café" - naïve... ok'
    assert to_alphabet("„Größe“ łódź Ærø şişe ș\u0301") == '"Größe" łódź Ærø şişe s'
    assert to_alphabet("“Café” – naïve…\tok", ASCII) == '"Cafe" - naive... ok'  # first reader
    ids = encode("aab bł")
    assert decode([0, *ids[:1], ids[0], 0, ids[1], 0, *ids[2:], 0]) == "aab bł"
    assert len(ALPHABET) == 95 + 94 + 128 and decode([0, 0, 0]) == ""
    assert ALPHABET.startswith(ASCII) and len(set(ALPHABET)) == len(ALPHABET)


def test_an_ascii_reader_record_loads_as_one(tmp_path):
    """Readers saved before the alphabet was recorded are ASCII readers."""
    old = LineReader(ReaderCfg(channels=(4, 8, 8, 8), hidden=8, alphabet="ascii"))
    save_reader(old, tmp_path, "old", {})
    record = json.loads((tmp_path / "old.json").read_text())
    del record["reader"]["alphabet"], record["reader"]["blocks"]
    (tmp_path / "old.json").write_text(json.dumps(record))
    loaded = load_reader("old", tmp_path)
    assert loaded.alphabet == ASCII and loaded.classify.out_features == 96
    assert not loaded.cfg.blocks  # and it read rows across the page


@pytest.fixture(scope="module")
def reader_mini():
    return mmembed.load("mmembed-mini", page="reader")


@needs_fonts
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


@needs_fonts
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


@needs_fonts
def test_reader_route_saves_and_loads(reader_mini, tmp_path):
    page = mmembed.Page(plain_page(SENTENCES[1], regular_face(HELD_OUT_FONTS[2]), 20))
    reader_mini.save(tmp_path / "mini")
    loaded = mmembed.load(tmp_path / "mini")
    assert isinstance(loaded.towers["page"], ReaderPageTower)
    np.testing.assert_allclose(loaded.encode(page), reader_mini.encode(page), atol=1e-6)


@needs_fonts
def test_a_fresh_reader_is_the_right_shape():
    reader = LineReader(CFG).eval()
    crops = line_crops(plain_page(SENTENCES[2], regular_face(HELD_OUT_FONTS[3]), 20), CFG)
    lines, widths = batch_lines(crops)
    logits = reader(lines)
    assert logits.shape == (len(crops), int(widths.max()) // LineReader.STRIDE, len(ALPHABET) + 1)


@needs_fonts
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


@needs_fonts
def test_a_failed_reader_export_falls_back_to_torch(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("MMEMBED_HOME", str(tmp_path / "not-a-folder"))
    (tmp_path / "not-a-folder").write_text("a file where the cache folder should be")
    page = plain_page(SENTENCES[4], regular_face(HELD_OUT_FONTS[1]), 20)
    read = load_reader().set_runtime("onnx").read_page(page)
    assert read == load_reader().set_runtime("torch").read_page(page)
    assert "falls back to torch" in caplog.text


def test_the_first_reads_in_many_threads_share_one_export(tmp_path, monkeypatch, caplog):
    """encode reads pages in several threads; on an empty cache each first read opened the
    export, and two torch.onnx.export calls at once failed (GLOBALS.in_onnx_export)."""
    monkeypatch.setenv("MMEMBED_HOME", str(tmp_path))
    reader = load_reader()
    pages = [
        plain_page(text, regular_face(HELD_OUT_FONTS[i % 4]), 18)
        for i, text in enumerate(SENTENCES)
    ]
    with caplog.at_level(logging.WARNING), ThreadPoolExecutor(4) as pool:
        read = list(pool.map(reader.read_page, pages))
    assert "falls back" not in caplog.text and reader._runtime._session is not None
    assert len(list((tmp_path / "onnx").glob("*/model.onnx"))) == 1
    assert read == [load_reader().set_runtime("torch").read_page(page) for page in pages]


def two_columns(size: int = 18) -> tuple[Image.Image, str, str]:
    left, right = " ".join(SENTENCES[:3]), " ".join(SENTENCES[4:7])
    return two_column_page(left, right, regular_face(HELD_OUT_FONTS[1]), size), left, right


def test_a_two_column_page_reads_column_by_column():
    page, left, right = two_columns()
    font = open_font(regular_face(HELD_OUT_FONTS[1]), 18)
    blocks = text_blocks(np.asarray(page.convert("L")) < 128)
    assert len(blocks) == 2 and blocks[0][3] < blocks[1][2]  # left column first
    expected = sum(1 for text in (left, right) for _ in wrap_text(text, font, 408))
    assert len(line_crops(page, CFG)) == expected
    read = load_reader().read_page(page)
    assert edit_distance(read, f"{left} {right}") <= 0.05 * len(left + right), read
    rows = dataclasses.replace(CFG, blocks=False)  # the first reader's lines: interleaved
    assert len(line_crops(page, rows)) < expected


def test_a_single_column_stays_one_block_and_a_table_reads_by_rows():
    page = plain_page(" ".join(SENTENCES), regular_face(HELD_OUT_FONTS[0]), 16)
    assert len(text_blocks(np.asarray(page.convert("L")) < 128)) == 1
    rows = [("word", "kind", "meaning"), ("cat", "noun", "a small domesticated feline"),
            ("run", "verb", "move fast on foot"), ("red", "adjective", "the colour of blood"),
            ("often", "adverb", "many times")]  # fmt: skip
    font = open_font(regular_face(HELD_OUT_FONTS[3]), 16)
    table = Image.new("RGB", (620, 40 + 28 * len(rows)), "white")
    draw = ImageDraw.Draw(table)
    for number, row in enumerate(rows):
        for x, cell in zip((20, 140, 300), row, strict=True):
            draw.text((x, 20 + 28 * number), cell, font=font, fill="black")
    assert len(text_blocks(np.asarray(table.convert("L")) < 128)) == 1
    read = load_reader().read_page(table)
    truth = " ".join(" ".join(row) for row in rows)
    assert edit_distance(read, truth) <= 0.1 * len(truth), read


@pytest.mark.xfail(
    strict=True,
    reason="goal not met: the shipped reader (800 steps, then 400 more) confuses accents (é/è, "
    "ł/f), CER 0.089 here (the 800-step reader 0.101, the first 0.203); README 'Pages'. Remove "
    "this mark when a retrained reader passes",
)
def test_shipped_reader_reads_accented_text_in_unseen_fonts():
    """Character error rate of accented sentences (not from any training text), each in every
    held-out family that has its letters, at 20 px; the first reader dropped the accents."""
    reader = load_reader()
    errors = chars = 0
    for text in ACCENTED:
        fonts = fonts_for(text, [regular_face(pattern) for pattern in HELD_OUT_FONTS])
        assert len(fonts) >= 2, text
        for font in fonts:
            errors += edit_distance(reader.read_page(plain_page(text, font, 20)), text)
            chars += len(text)
    assert errors / chars <= 0.05, errors / chars
