"""Pixel-text renderer: text and tables drawn onto fixed-size pages for pixel towers.

Screenshot-style embedders (DSE, pixel-based encoders) read text as an image. This module
draws text with word wrapping measured in pixels, and tables as ruled grids, on pages of a
fixed size, so every page of every input has the same shape.

Font resolution order (first that exists wins):
    1. ``RenderConfig.font_path`` when set (a missing file is an error, not a fallback);
    2. the system DejaVu Sans (``/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf`` on
       Debian/Ubuntu, or the Fedora/Arch locations in ``SYSTEM_FONTS``);
    3. matplotlib's bundled ``DejaVuSans.ttf`` when matplotlib is installed;
    4. Pillow's built-in font, ``ImageFont.load_default(size=...)``.
Pages look the same on machines that resolve to the same font; set ``font_path`` to pin it.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw, ImageFont

from ..errors import InputError

logger = logging.getLogger(__name__)

Font = ImageFont.FreeTypeFont | ImageFont.ImageFont
Color = tuple[int, int, int]

SYSTEM_FONTS = (
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",  # Debian, Ubuntu
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",  # Fedora
    "/usr/share/fonts/dejavu-sans-fonts/DejaVuSans.ttf",  # Fedora >= 36
    "/usr/share/fonts/TTF/DejaVuSans.ttf",  # Arch
)
_ELLIPSIS = "…"


@dataclass(frozen=True)
class RenderConfig:
    """How pages look. Defaults suit a 448 px square pixel tower input."""

    width: int = 448  # page width in pixels
    height: int = 448  # page height in pixels
    font_size: int = 16  # font size in pixels (the em height)
    margin: int = 16  # blank border on every side, in pixels
    line_spacing: float = 1.25  # line height as a multiple of font_size
    font_path: str | None = None  # a TrueType/OpenType file; None: see the module docstring
    background: Color = (255, 255, 255)  # page colour, RGB
    foreground: Color = (0, 0, 0)  # text and grid colour, RGB
    cell_padding: int = 4  # space between a table cell's text and its grid lines, in pixels
    max_pages: int = 16  # pages rendered at most; longer content is cut (with a warning)

    def __post_init__(self) -> None:
        if self.width <= 2 * self.margin or self.height <= 2 * self.margin:
            raise ValueError(f"page {self.width}x{self.height} leaves no room inside the margin")
        if self.font_size < 1 or self.max_pages < 1 or self.line_spacing <= 0:
            raise ValueError("font_size and max_pages must be >= 1 and line_spacing > 0")

    @property
    def line_height(self) -> int:
        """Distance between baselines, in pixels."""
        return max(1, round(self.font_size * self.line_spacing))

    @property
    def inner_width(self) -> int:
        return self.width - 2 * self.margin

    @property
    def inner_height(self) -> int:
        return self.height - 2 * self.margin


# ---- fonts ---------------------------------------------------------------------------------


def font_candidates() -> list[str]:
    """Font files found on this machine, in fallback order (system DejaVu, matplotlib's)."""
    return [path for path in (*SYSTEM_FONTS, _matplotlib_font()) if path and os.path.isfile(path)]


def resolve_font_path(config: RenderConfig | None = None) -> str | None:
    """The font file the renderer will use, or None for Pillow's built-in font.

    Raises:
        ValueError: ``config.font_path`` is set but does not exist.
    """
    config = config or RenderConfig()
    if config.font_path is not None:
        if not os.path.isfile(config.font_path):
            raise ValueError(f"RenderConfig.font_path {config.font_path!r} does not exist")
        return config.font_path
    candidates = font_candidates()
    return candidates[0] if candidates else None


def _matplotlib_font() -> str | None:
    try:
        import matplotlib
    except ImportError:
        return None
    return str(Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf")


@functools.lru_cache(maxsize=16)
def open_font(path: str | None, size: int) -> Font:
    """A font file at ``size`` px, or Pillow's built-in font when ``path`` is None (cached)."""
    if path is None:
        logger.info("no DejaVu Sans found; rendering with Pillow's built-in font")
        return ImageFont.load_default(size=size)
    return ImageFont.truetype(path, size=size)


def load_font(config: RenderConfig | None = None) -> Font:
    """The font of ``config``, resolved in the order given in the module docstring."""
    config = config or RenderConfig()
    return open_font(resolve_font_path(config), config.font_size)


# ---- text ----------------------------------------------------------------------------------


def render_text(text: str, config: RenderConfig | None = None) -> list[Image.Image]:
    """Draw text on as many fixed-size pages as it needs (at most ``config.max_pages``).

    Lines break between words where the measured width would pass the margin; a word wider
    than the page is broken across lines. Newlines in ``text`` start new lines.

    Raises:
        InputError: ``text`` is not a string.
    """
    if not isinstance(text, str):
        raise InputError(f"render_text needs a str, got {type(text).__name__}")
    config = config or RenderConfig()
    font = load_font(config)
    lines_per_page = max(1, config.inner_height // config.line_height)
    limit = lines_per_page * config.max_pages
    lines = []
    for line in wrap_text(text, font, config.inner_width):
        if len(lines) == limit:
            logger.warning("text longer than %d pages; the rest is not rendered", config.max_pages)
            break
        lines.append(line)
    pages = [lines[i : i + lines_per_page] for i in range(0, len(lines), lines_per_page)]
    return [_draw_lines(page, font, config) for page in pages or [[]]]


def wrap_text(text: str, font: Font, max_width: int) -> Iterator[str]:
    """Yield display lines no wider than ``max_width`` pixels (lazily, for long texts)."""
    for paragraph in text.expandtabs(4).splitlines() or [""]:
        yield from _wrap_paragraph(paragraph.split(), font, max_width)


def _wrap_paragraph(words: list[str], font: Font, max_width: int) -> Iterator[str]:
    if not words:
        yield ""  # keep blank lines between paragraphs
        return
    line = ""
    for word in words:
        candidate = f"{line} {word}" if line else word
        if font.getlength(candidate) <= max_width:
            line = candidate
            continue
        if line:
            yield line
        pieces = _break_word(word, font, max_width)
        yield from pieces[:-1]
        line = pieces[-1]
    yield line


def _break_word(word: str, font: Font, max_width: int) -> list[str]:
    """Split a word wider than the page into pieces that fit (at least one char each)."""
    pieces = []
    while font.getlength(word) > max_width and len(word) > 1:
        cut = _longest_fitting_prefix(word, font, max_width)
        pieces.append(word[:cut])
        word = word[cut:]
    pieces.append(word)
    return pieces


def _longest_fitting_prefix(text: str, font: Font, max_width: float) -> int:
    """Binary search for the longest prefix no wider than ``max_width`` (at least 1)."""
    low, high = 1, len(text)
    while low < high:
        middle = (low + high + 1) // 2
        if font.getlength(text[:middle]) <= max_width:
            low = middle
        else:
            high = middle - 1
    return low


def _draw_lines(lines: list[str], font: Font, config: RenderConfig) -> Image.Image:
    page = _blank_page(config)
    draw = ImageDraw.Draw(page)
    for number, line in enumerate(lines):
        y = config.margin + number * config.line_height
        draw.text((config.margin, y), line, font=font, fill=config.foreground)
    return page


def _blank_page(config: RenderConfig) -> Image.Image:
    return Image.new("RGB", (config.width, config.height), config.background)


# ---- tables --------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Grid:
    """A table laid out for drawing: cell texts cut to their column widths."""

    header: list[str]
    rows: list[list[str]]
    widths: list[int]  # column widths in pixels, padding included
    note: str | None  # shown above the grid on the first page when columns were dropped


def render_table(table: Any, config: RenderConfig | None = None) -> list[Image.Image]:
    """Draw a table as a ruled grid, the header repeated on every page.

    Column widths are measured from the text; columns that do not fit the page width are
    dropped (a note says how many) and long cells end with "…".

    Args:
        table: a DataFrame, ``mmembed.Table``, CSV/TSV/Parquet path or list of row dicts.
        config: page settings; None for the defaults.

    Raises:
        InputError: the table cannot be loaded (see ``load_table``).
    """
    from .table import load_table

    config = config or RenderConfig()
    font = load_font(config)
    grid = _layout(load_table(table), font, config)
    rows_per_page = _rows_per_page(config, has_note=grid.note is not None)
    pages = []
    for start in range(0, len(grid.rows), max(rows_per_page, 1)):
        if len(pages) == config.max_pages:
            logger.warning("table longer than %d pages; the rest is not rendered", len(pages))
            break
        body = grid.rows[start : start + rows_per_page]
        pages.append(_draw_grid(grid, body, font, config, with_note=not pages))
        rows_per_page = _rows_per_page(config, has_note=False)
    return pages


def _rows_per_page(config: RenderConfig, has_note: bool) -> int:
    """Data rows that fit below the header (and the note, on the first page)."""
    free = config.inner_height - _row_height(config) - (config.line_height if has_note else 0)
    return max(1, free // _row_height(config))


def _row_height(config: RenderConfig) -> int:
    return config.line_height + 2 * config.cell_padding


def _layout(df: Any, font: Font, config: RenderConfig) -> _Grid:
    """Measure columns, keep those that fit the page, and cut texts to their columns."""
    from .table import TableLimits, format_cell

    cell_chars = TableLimits().max_cell_chars
    header = [format_cell(name, cell_chars) for name in df.columns]
    body = [[format_cell(value, cell_chars) for value in row] for row in df.itertuples(False)]
    pad = 2 * config.cell_padding
    # A column may take up to half the page, so a long column does not crowd out the rest.
    cap = max(config.inner_width // 2, pad + 1)
    widths = []
    for column, name in enumerate(header):
        texts = [name, *(row[column] for row in body)]
        natural = max(font.getlength(text) for text in texts) + pad
        width = min(int(natural) + 1, cap)
        if sum(widths) + width > config.inner_width:
            break
        widths.append(width)
    widths = widths or [config.inner_width]
    kept = len(widths)
    note = f"(showing {kept} of {len(header)} columns)" if kept < len(header) else None
    return _Grid(
        header=_fit_row(header[:kept], widths, font, pad),
        rows=[_fit_row(row[:kept], widths, font, pad) for row in body],
        widths=widths,
        note=note,
    )


def _fit_row(texts: list[str], widths: list[int], font: Font, pad: int) -> list[str]:
    return [_fit_text(text, width - pad, font) for text, width in zip(texts, widths, strict=True)]


def _fit_text(text: str, max_width: int, font: Font) -> str:
    """Cut ``text`` to ``max_width`` pixels, ending with "…" when cut."""
    if font.getlength(text) <= max_width:
        return text
    room = max_width - font.getlength(_ELLIPSIS)
    if room <= 0:
        return ""
    return text[: _longest_fitting_prefix(text, font, room)].rstrip() + _ELLIPSIS


def _draw_grid(
    grid: _Grid, body: list[list[str]], font: Font, config: RenderConfig, with_note: bool
) -> Image.Image:
    page = _blank_page(config)
    draw = ImageDraw.Draw(page)
    top = config.margin
    if with_note and grid.note:
        draw.text((config.margin, top), grid.note, font=font, fill=config.foreground)
        top += config.line_height
    row_height = _row_height(config)
    lefts = [config.margin + sum(grid.widths[:i]) for i in range(len(grid.widths) + 1)]
    bottom = top + row_height * (len(body) + 1)
    for number, texts in enumerate([grid.header, *body]):
        y = top + number * row_height
        for left, text in zip(lefts[:-1], texts, strict=True):
            xy = (left + config.cell_padding, y + config.cell_padding)
            draw.text(xy, text, font=font, fill=config.foreground)
    for number in range(len(body) + 2):  # horizontal rules, the header's underline doubled
        y = top + number * row_height
        draw.line(
            [(lefts[0], y), (lefts[-1], y)], fill=config.foreground, width=2 if number == 1 else 1
        )
    for x in lefts:
        draw.line([(x, top), (x, bottom)], fill=config.foreground, width=1)
    return page


# ---- pages ---------------------------------------------------------------------------------


def render_page(content: Any, **options: Any) -> Image.Image:
    """The first page of text or a table, as ``mmembed.Page.render`` embeds it.

    Args:
        content: a str (drawn as text), or an ``mmembed.Table`` / ``pandas.DataFrame``.
        **options: ``RenderConfig`` fields, e.g. ``width=512, font_size=20``.

    Raises:
        InputError: ``content`` is of another type, or its table cannot be loaded.
        ValueError: an option is not a ``RenderConfig`` field.
    """
    config = _config_from(options)
    if isinstance(content, str):
        return render_text(content, config)[0]
    if _is_table(content):
        return render_table(content, config)[0]
    raise InputError(
        f"cannot render {type(content).__name__}; use a str, mmembed.Table or DataFrame"
    )


def _config_from(options: dict[str, Any]) -> RenderConfig:
    fields = {field.name for field in dataclasses.fields(RenderConfig)}
    unknown = sorted(set(options) - fields)
    if unknown:
        raise ValueError(f"unknown render options {unknown}; RenderConfig has {sorted(fields)}")
    return RenderConfig(**options)


def _is_table(content: Any) -> bool:
    import pandas as pd

    from ..inputs import Table

    return isinstance(content, (pd.DataFrame, Table))
