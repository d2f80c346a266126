"""PDF pages through pypdfium2: count them, read a page's text layer, render a page.

Every failure is an ``InputError`` whose reason says what is wrong and, for one page, starts
with the page number, so the index can skip a broken PDF (or only its broken page) with the reason. A
document is opened lazily by PDFium (it reads the cross-reference table, not the pages), so
one page at a time is in memory however long the PDF is.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass

from PIL import Image

from ..errors import InputError
from .limits import MAX_PAGE_PIXELS, MAX_PDF_PAGES

PAGE_DPI = 150  # rendering resolution of a page: ~30 px text lines at 11 pt, what readers want
POINTS_PER_INCH = 72
MIN_TEXT_CHARS = 40  # letters or digits a text layer needs to count as real text
MIN_TEXT_SHARE = 0.5  # ... and their share of its non-space characters (not an OCR'd mess)
_PASSWORD_ERROR = 4  # FPDF_ERR_PASSWORD


@dataclass(frozen=True)
class PdfPageText:
    """A page's text layer and whether it holds real text (the ``auto`` route's test)."""

    number: int  # 1-based
    text: str
    real: bool


@contextlib.contextmanager
def open_pdf(path: str | os.PathLike) -> Iterator[object]:
    """A ``pypdfium2.PdfDocument``, closed on exit.

    Raises:
        InputError: encrypted, not a PDF, damaged, no pages or more than ``MAX_PDF_PAGES``
            (the reason does not repeat the file name; page reasons start "page N:").
    """
    import pypdfium2 as pdfium

    name = os.fspath(path)
    try:
        document = pdfium.PdfDocument(name)
    except pdfium.PdfiumError as error:
        if getattr(error, "err_code", None) == _PASSWORD_ERROR:
            raise InputError("encrypted PDF (needs a password)") from error
        if not getattr(error, "err_code", None):  # PDFium says "Success": no usable page tree
            raise InputError("not a readable PDF (no pages, or a damaged page tree)") from error
        raise InputError(f"not a readable PDF ({_pdfium_reason(error)})") from error
    except OSError as error:
        raise InputError(f"cannot read the file: {error}") from error
    try:
        count = len(document)
        if count == 0:
            raise InputError("the PDF has no pages")
        if count > MAX_PDF_PAGES:
            raise InputError(
                f"the PDF has {count} pages, more than the {MAX_PDF_PAGES} "
                "mmembed indexes per file (split it)"
            )
        yield document
    finally:
        document.close()


def page_count(path: str | os.PathLike) -> int:
    """Pages in a PDF. Raises InputError like ``open_pdf``."""
    with open_pdf(path) as document:
        return len(document)


def real_text(text: str) -> bool:
    """Whether a text layer holds words, not a few stray glyphs or an invisible-OCR mess."""
    visible = [char for char in text if not char.isspace()]
    letters = sum(char.isalnum() for char in visible)
    return letters >= MIN_TEXT_CHARS and letters >= MIN_TEXT_SHARE * len(visible)


def page_text(document: object, number: int) -> str:
    """The text layer of page ``number`` (1-based), lines kept, "" when it has none.

    Raises:
        InputError: the page cannot be loaded.
    """
    with loaded_page(document, number) as page:
        return text_of(page)


def text_of(page: object) -> str:
    """The text layer of a loaded page (``loaded_page``), lines kept, "" when it has none."""
    textpage = page.get_textpage()
    try:
        text = textpage.get_text_range()
    finally:
        textpage.close()
    return "\n".join(line.strip() for line in text.replace("\r\n", "\n").split("\n"))


def text_layers(path: str | os.PathLike) -> Iterator[PdfPageText]:
    """Each page's text layer, one page in memory at a time. A page that fails to load
    counts as one without text (rendering it reports the problem).

    Raises:
        InputError: the PDF itself cannot be read (see ``open_pdf``).
    """
    with open_pdf(path) as document:
        for number in range(1, len(document) + 1):
            try:
                text = page_text(document, number)
            except InputError:
                text = ""
            yield PdfPageText(number, text, real_text(text))


def render_page(document: object, number: int, dpi: int = PAGE_DPI) -> Image.Image:
    """Page ``number`` (1-based) as an RGB image at ``dpi``.

    Raises:
        InputError: the page cannot be loaded, has no area, or would exceed
            ``MAX_PAGE_PIXELS`` (a poster-sized page: its reason gives the size).
    """
    with loaded_page(document, number) as page:
        return render(page, number, dpi)


def render(page: object, number: int, dpi: int = PAGE_DPI) -> Image.Image:
    """A loaded page (``loaded_page``) as an RGB image; raises like ``render_page``."""
    width, height = page.get_size()  # points
    scale = dpi / POINTS_PER_INCH
    pixels = round(width * scale) * round(height * scale)
    if round(width * scale) < 1 or round(height * scale) < 1:
        raise InputError(f"page {number}: the page is empty ({width:g}x{height:g} pt)")
    if pixels > MAX_PAGE_PIXELS:
        raise InputError(
            f"page {number}: {width:g}x{height:g} pt is {pixels / 1e6:.0f} Mpx at "
            f"{dpi} dpi, over the {MAX_PAGE_PIXELS / 1e6:.0f} Mpx page limit"
        )
    try:
        bitmap = page.render(scale=scale)
        try:
            return bitmap.to_pil().convert("RGB")
        finally:
            bitmap.close()
    except Exception as error:  # PDFium's renderer raises several types
        raise InputError(f"page {number}: cannot render the page: {error}") from error


@contextlib.contextmanager
def loaded_page(document: object, number: int) -> Iterator[object]:
    """Page ``number`` (1-based) of an open document, loaded once for its text and pixels.

    Raises:
        InputError: the page cannot be loaded.
    """
    import pypdfium2 as pdfium

    try:
        page = document[number - 1]
    except (pdfium.PdfiumError, IndexError) as error:
        raise InputError(f"page {number}: cannot load the page ({error})") from error
    try:
        yield page
    finally:
        page.close()


def _pdfium_reason(error: Exception) -> str:
    """PDFium's reason without pypdfium2's wrapper text."""
    text = str(error)
    return text.split("(PDFium: ", 1)[-1].rstrip(").") if "(PDFium: " in text else text
