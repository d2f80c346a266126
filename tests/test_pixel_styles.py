"""Varied training pages, corpora and the unseen-font evaluation set of the pixel tower."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import yaml
from debian import HELD_OUT_FONTS, TRAINING_FONTS, needs
from PIL import Image

from mmembed.pages import corpora, styles
from mmembed.pages.unseen import SIZES, unseen_set
from mmembed.train import Trainer, load_config
from mmembed.train.logs import read_metrics

ROOT = Path(__file__).resolve().parent.parent
FONTS_CONFIG = ROOT / "configs" / "pixel_text_fonts.yaml"
OPTIONS = yaml.safe_load(FONTS_CONFIG.read_text())["task_options"]
needs_fonts = needs(*TRAINING_FONTS, *HELD_OUT_FONTS)  # configs/pixel_text_fonts.yaml's fonts
needs_fortunes = needs("fortunes")


def _ink_rows(page: Image.Image) -> int:
    grey = np.asarray(page.convert("L"), dtype=np.float32)
    return int((np.ptp(grey, axis=1) > 60).sum())


@needs_fonts
def test_training_fonts_never_include_held_out_fonts():
    fonts = styles.font_files(OPTIONS["fonts"], OPTIONS["held_out_fonts"])
    assert len(fonts) >= 100 and len({Path(f).parent for f in fonts}) >= 10
    with pytest.raises(ValueError, match="held-out fonts"):
        styles.font_files(
            OPTIONS["fonts"] + OPTIONS["held_out_fonts"][:1], OPTIONS["held_out_fonts"]
        )
    with pytest.raises(FileNotFoundError, match="Debian font packages"):
        styles.font_files(["/nonexistent/*.ttf"])


@needs_fonts
def test_styled_pages_vary_and_always_show_the_whole_text():
    fonts = styles.font_files(OPTIONS["fonts"], OPTIONS["held_out_fonts"])
    cfg = styles.StyleCfg()
    rng = random.Random(0)
    long_text = " ".join(["a long paragraph of ordinary words"] * 14)  # ~480 characters
    pages = [styles.styled_page(long_text, fonts, rng, cfg) for _ in range(12)]
    for page in pages:
        assert page.width <= cfg.page_width and page.height <= cfg.page_height
        assert _ink_rows(page) > 20  # text is drawn on every page
    sizes = {page.size for page in pages}
    backgrounds = {page.getpixel((1, 1)) for page in pages}
    assert len(sizes) >= 8 and len(backgrounds) >= 6
    # Seeded: a resumed run draws the same pages.
    again = styles.styled_page(long_text, fonts, random.Random(0), cfg)
    assert np.array_equal(np.asarray(again), np.asarray(pages[0]))


def test_degrade_keeps_the_page_size():
    page = Image.new("RGB", (300, 120), (250, 250, 250))
    always = styles.StyleCfg(rotate_prob=1, blur_prob=1, jpeg_prob=1, rescale_prob=1, noise_prob=1)
    out = styles.degrade(page, random.Random(1), always)
    assert out.size == page.size and out.mode == "RGB"
    assert not np.array_equal(np.asarray(out), np.asarray(page))


@needs("chromium", "fonts-dejavu-core")  # the page names DejaVu Sans
def test_chromium_lays_out_html_pages(tmp_path):
    texts = ["A short line of text.", "Two lines\nof a fortune -- Someone"]
    paths = styles.html_screenshots(
        texts, ["DejaVu Sans"], tmp_path, seed=0, cfg=styles.StyleCfg(), per_shot=2
    )
    assert [p.name for p in paths] == ["000000.png", "000001.png"]
    for path in paths:
        with Image.open(path) as shot:
            assert shot.height == 448 and _ink_rows(shot) > 5


@needs_fortunes
def test_fortunes_are_prose_with_line_breaks():
    fortunes = corpora.read_fortunes()
    assert len(fortunes) > 5000
    assert all(
        sum(c.isalpha() or c.isspace() for c in f.text) >= 0.85 * len(f.text) for f in fortunes
    )
    assert sum("\n" in f.text for f in fortunes) > 1000  # multi-line paragraphs


@needs_fonts
@needs_fortunes
def test_unseen_set_is_held_out_text_in_held_out_fonts():
    held = unseen_set(OPTIONS["held_out_fonts"], OPTIONS["held_out_permille"], 250)
    assert len(held.texts) == 250 and len(set(held.texts)) == 250
    assert len(held.families()) >= 3 and SIZES == (14, 20, 28)
    training = {
        corpora.one_line(g.text)
        for g in corpora.read_fortunes()
        if not corpora.is_held_out(g.text, OPTIONS["held_out_permille"])
    }
    assert not training & set(held.texts)
    fonts = set(styles.font_files(OPTIONS["fonts"], OPTIONS["held_out_fonts"]))
    assert not fonts & set(held.fonts)
    page = held.page(0, 28)
    assert page.width == 448 and _ink_rows(page) > 20


@needs_fonts
def test_tiny_recipe_trains_on_varied_pages(tmp_path):
    config = load_config(ROOT / "configs" / "pixel_text_tiny.yaml")
    config.output_dir = str(tmp_path)
    config.steps, config.batch_size = 4, 8
    config.task_options.update(
        fonts=OPTIONS["fonts"][:3],
        held_out_fonts=OPTIONS["held_out_fonts"],
        paragraph_fraction=0.1,
        style={"sizes": [10, 16]},
        eval_texts=8,
    )
    summary = Trainer(config).fit()
    records = read_metrics(tmp_path / "metrics.jsonl")
    assert summary.steps == 4 and all(np.isfinite(r["loss"]) for r in records)
