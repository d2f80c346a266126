"""Pixel-text renderer: wrapping, paging, table grids and font fallback, on real fonts."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from mmembed.errors import InputError
from mmembed.inputs import Page, Table
from mmembed.processors.render import (
    SYSTEM_FONTS,
    RenderConfig,
    font_candidates,
    load_font,
    open_font,
    render_page,
    render_table,
    render_text,
    resolve_font_path,
    wrap_text,
)

PLANETS = Path(__file__).resolve().parent.parent / "assets" / "tables" / "planets.csv"
DARK = 128  # a pixel darker than this (any channel mean) counts as ink


def _ink(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("L")) < DARK


def test_long_text_wraps_onto_several_fixed_size_pages():
    config = RenderConfig(width=320, height=240, font_size=14)
    text = " ".join(f"word{i}" for i in range(600))
    pages = render_text(text, config)
    assert len(pages) > 2
    assert all(page.size == (320, 240) and page.mode == "RGB" for page in pages)
    for page in pages:
        ink = _ink(page)
        assert ink.any()
        # nothing drawn in the left/right margins
        assert not ink[:, : config.margin - 1].any() and not ink[:, -config.margin + 1 :].any()


def test_wrapped_lines_fit_and_keep_every_word():
    config = RenderConfig()
    font = load_font(config)
    text = "The quick brown fox jumps over the lazy dog. " * 20 + "\n\nsecond paragraph"
    lines = list(wrap_text(text, font, config.inner_width))
    assert all(font.getlength(line) <= config.inner_width for line in lines)
    assert " ".join(" ".join(lines).split()) == " ".join(text.split())
    assert "" in lines  # the blank line between paragraphs survives


def test_a_word_wider_than_the_page_is_broken():
    config = RenderConfig(width=200, height=200)
    font = load_font(config)
    lines = list(wrap_text("a " + "x" * 200 + " b", font, config.inner_width))
    assert len(lines) > 3
    assert "".join(lines).replace(" ", "") == "a" + "x" * 200 + "b"
    assert all(font.getlength(line) <= config.inner_width for line in lines)


def test_empty_text_gives_one_blank_page():
    (page,) = render_text("")
    assert page.size == (448, 448) and not _ink(page).any()


def test_page_count_is_capped():
    pages = render_text("word " * 50_000, RenderConfig(max_pages=3))
    assert len(pages) == 3


def test_rendered_table_has_a_grid_and_text():
    config = RenderConfig(width=640, height=480)
    (page,) = render_table(PLANETS, config)
    ink = _ink(page)
    coverage = ink.mean(axis=1)
    rows = np.flatnonzero(coverage > 0.9 * coverage.max())  # horizontal rules: the inkiest rows
    assert len(rows) >= 9  # a rule above the header, under it, and under each of 8 rows
    top, bottom = rows.min(), rows.max()
    cols = np.flatnonzero(ink[top : bottom + 1].mean(axis=0) > 0.95)  # vertical rules
    assert len(cols) >= 3
    inside = ink[top + 2 : bottom - 1, cols.min() + 2 : cols.max() - 1]
    assert inside.mean() > 0.02  # cell text, not just lines


def test_long_table_repeats_the_header_on_each_page():
    df = pd.DataFrame({"name": [f"row {i}" for i in range(100)], "value": range(100)})
    pages = render_table(Table(df), RenderConfig(width=300, height=300))
    assert len(pages) > 3
    header_band = [_ink(page)[16:40] for page in pages]  # margin .. first row
    for band in header_band[1:]:
        assert np.array_equal(band, header_band[0])


def test_wide_table_drops_columns_with_a_note():
    df = pd.DataFrame({f"column number {i}": [i] for i in range(30)})
    (page,) = render_table(df, RenderConfig(width=300, height=200))
    assert page.size == (300, 200)


def test_render_page_text_table_and_page_input():
    text_page = render_page("hello pages", width=256, height=128)
    assert text_page.size == (256, 128) and _ink(text_page).any()
    table_page = render_page(Table(PLANETS), font_size=12)
    assert table_page.size == (448, 448) and _ink(table_page).any()
    assert isinstance(Page.render("via the input class").source, Image.Image)


def test_render_page_rejects_bad_content_and_options():
    with pytest.raises(InputError):
        render_page(42)
    with pytest.raises(ValueError, match="unknown render options"):
        render_page("text", colour="red")
    with pytest.raises(ValueError, match="margin"):
        RenderConfig(width=20, margin=10)


def test_font_fallback_chooses_an_existing_font():
    candidates = font_candidates()
    assert all(os.path.isfile(path) for path in candidates)
    chosen = resolve_font_path()
    assert chosen == (candidates[0] if candidates else None)
    if any(os.path.isfile(path) for path in SYSTEM_FONTS):
        assert chosen in SYSTEM_FONTS  # system DejaVu wins over matplotlib's copy


def test_font_path_in_config_wins_and_must_exist(tmp_path):
    candidates = font_candidates()
    if candidates:
        config = RenderConfig(font_path=candidates[-1], font_size=20)
        assert resolve_font_path(config) == candidates[-1]
        assert load_font(config).size == 20
    with pytest.raises(ValueError, match="does not exist"):
        resolve_font_path(RenderConfig(font_path=str(tmp_path / "missing.ttf")))


def test_pillow_builtin_font_renders_when_nothing_else_exists():
    font = open_font(None, 16)
    assert font.getlength("some text") > 0
    lines = list(wrap_text("word " * 100, font, 200))
    assert len(lines) > 2
