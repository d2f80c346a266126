"""mmembed-mini's OCR page route: Tesseract reads pages in fonts nobody trained on."""

from __future__ import annotations

import numpy as np
import pytest
from debian import HELD_OUT_FONTS as HELD_OUT_PACKAGES
from debian import needs
from page_samples import HELD_OUT_FONTS, SENTENCES

import mmembed
from mmembed.encoders.ocr import OCRCfg, OCRPageTower, read_page
from mmembed.errors import MissingDependencyError
from mmembed.pages.styles import plain_page
from mmembed.pages.unseen import regular_face

pytestmark = needs("tesseract-ocr", "tesseract-ocr-eng", *HELD_OUT_PACKAGES)
FAMILIES = HELD_OUT_FONTS[:3]  # fonts no page route trains on


@pytest.fixture(scope="module")
def ocr_mini():
    return mmembed.load("mmembed-mini", page="ocr")


@pytest.fixture(scope="module")
def pages():
    fonts = [regular_face(pattern) for pattern in FAMILIES]
    return [
        mmembed.Page(plain_page(text, fonts[i % len(fonts)], size=18 + 4 * (i % 3)))
        for i, text in enumerate(SENTENCES)
    ]


def test_tesseract_reads_an_unseen_font(pages):
    read = read_page(pages[0].source, OCRCfg())
    assert "early bird catches the worm" in read, read


def test_ocr_route_finds_each_page_by_its_text(ocr_mini, pages):
    assert isinstance(ocr_mini.towers["page"], OCRPageTower)
    assert not list(ocr_mini.towers["page"].parameters())  # it uses the text tower's weights
    scores = ocr_mini.similarity(ocr_mini.encode(SENTENCES), ocr_mini.encode(pages))
    assert (scores.argmax(axis=1) == np.arange(len(SENTENCES))).all(), scores.round(2)
    assert np.diag(scores).min() > 0.8  # OCR text lands next to the typed text
    blank = ocr_mini.encode(mmembed.Page(plain_page("", regular_face(FAMILIES[0]), 20)))
    assert blank.shape == (384,) and np.isfinite(blank).all()


def test_ocr_route_is_saved_with_the_model(ocr_mini, pages, tmp_path):
    ocr_mini.save(tmp_path / "mini_ocr")
    again = mmembed.load(tmp_path / "mini_ocr")
    assert isinstance(again.towers["page"], OCRPageTower)
    np.testing.assert_allclose(again.encode(pages[:2]), ocr_mini.encode(pages[:2]), atol=1e-5)
    # The route holds no weights of its own: the text tower is stored once.
    assert not any(name.startswith("towers.page.") for name in again.state_dict())


def test_missing_tesseract_is_one_clear_error(ocr_mini, monkeypatch):
    import pytesseract

    monkeypatch.setattr(pytesseract.pytesseract, "tesseract_cmd", "/nonexistent/tesseract")
    with pytest.raises(MissingDependencyError, match="apt-get install tesseract-ocr"):
        OCRPageTower(ocr_mini.towers["text"], OCRCfg())


def test_page_option_is_checked_before_any_weights_load():
    with pytest.raises(ValueError, match="page must be one of"):
        mmembed.load("mmembed-mini", page="scanner")
    with pytest.raises(ValueError, match="takes no option"):
        mmembed.load("all-MiniLM-L6-v2", page="ocr")
