"""Varied pages for the ``pixel_text`` recipe: fonts, sizes, layouts, colours and scan noise.

A pixel tower trained on one renderer's layout reads only that layout. Here every training
page draws its look at random: a font file from a list (Debian font packages), a size of
12-36 px, page width, margins and line spacing, text and background colours, then JPEG, blur,
down-scaling, noise and a small rotation. ``html_screenshots`` adds pages that a browser laid
out (headless Chromium), so the tower also sees real web text rendering.

Fonts held out for evaluation are named in the recipe config; ``font_files`` refuses a
training list that shares a file with them, so an evaluation on held-out fonts stays honest.
"""

from __future__ import annotations

import functools
import glob
import html
import io
import logging
import random
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from ..processors.render import RenderConfig, open_font, render_text, wrap_text

logger = logging.getLogger(__name__)

CHROMIUM = "chromium"


@dataclass(frozen=True)
class StyleCfg:
    """Ranges of the random page look (each page draws one value from each range)."""

    sizes: tuple[int, int] = (12, 36)  # font size in px, inclusive
    page_width: int = 448  # the tower's page; drawn pages are at most this large
    page_height: int = 448
    min_width: int = 224  # narrowest page (line width) drawn
    margins: tuple[int, int] = (4, 40)  # blank border in px
    line_spacing: tuple[float, float] = (1.0, 1.6)  # line height / font size
    dark_prob: float = 0.12  # chance of light text on a dark background
    colour_prob: float = 0.3  # chance of a tinted (not white) background
    rotate_prob: float = 0.25  # chance of a small rotation ...
    max_degrees: float = 3.0  # ... of at most this many degrees
    blur_prob: float = 0.25  # chance of a Gaussian blur, radius 0.3-1.2 px
    jpeg_prob: float = 0.35  # chance of JPEG compression, quality 20-90
    rescale_prob: float = 0.2  # chance of down-scaling to 55-90% and back (a low-res scan)
    noise_prob: float = 0.2  # chance of Gaussian pixel noise, sigma 2-10 grey levels


def font_files(patterns: Sequence[str], held_out: Sequence[str] = ()) -> list[str]:
    """Font files matching the glob ``patterns`` (sorted), none of them matching ``held_out``.

    Raises:
        FileNotFoundError: a pattern matches nothing (its Debian package is not installed).
        ValueError: a training font is also a held-out font.
    """
    files = []
    for pattern in patterns:
        found = sorted(glob.glob(pattern))
        if not found:
            raise FileNotFoundError(
                f"no font matches {pattern!r}: install the Debian font packages listed in the "
                "recipe config (see .ci/run)"
            )
        files += found
    reserved = {path for pattern in held_out for path in glob.glob(pattern)}
    shared = sorted(set(files) & reserved)
    if shared:
        raise ValueError(f"training fonts include held-out fonts: {shared[:3]}")
    return list(dict.fromkeys(files))


@functools.cache
def font_glyphs(path: str) -> frozenset[str]:
    """The characters the font file ``path`` has glyphs for (its best cmap): a font without a
    glyph draws a box, and a page labelled with the letter would teach the reader a lie."""
    from fontTools.ttLib import TTFont

    with TTFont(path, lazy=True, fontNumber=0) as font:
        return frozenset(chr(code) for code in font.getBestCmap())


def fonts_for(text: str, fonts: Sequence[str]) -> list[str]:
    """The ``fonts`` that draw every character of ``text``."""
    needed = {char for char in text if not char.isspace()}
    return [path for path in fonts if needed <= font_glyphs(path)]


def _luma(colour: tuple[int, int, int]) -> float:
    return (0.299 * colour[0] + 0.587 * colour[1] + 0.114 * colour[2]) / 255


def _colours(rng: random.Random, cfg: StyleCfg) -> tuple[tuple[int, int, int], ...]:
    """(foreground, background) with a luma contrast of at least 0.45."""
    while True:
        if rng.random() < cfg.dark_prob:
            bg = tuple(rng.randint(0, 90) for _ in range(3))
            fg = tuple(rng.randint(170, 255) for _ in range(3))
        elif rng.random() < cfg.colour_prob:
            bg = tuple(rng.randint(150, 255) for _ in range(3))
            fg = tuple(rng.randint(0, 110) for _ in range(3))
        else:
            grey = rng.randint(225, 255)
            bg = (grey, grey, grey)
            fg = tuple([rng.randint(0, 70)] * 3) if rng.random() < 0.7 else (0, 0, 0)
        if abs(_luma(bg) - _luma(fg)) >= 0.45:
            return fg, bg


def styled_page(text: str, fonts: Sequence[str], rng: random.Random, cfg: StyleCfg) -> Image.Image:
    """``text`` drawn whole in a random look; the font shrinks until the text fits the page."""
    font_path = rng.choice(list(fonts))
    size = rng.randint(*cfg.sizes)
    width = rng.randint(cfg.min_width, cfg.page_width)
    margin = rng.randint(*cfg.margins)
    spacing = rng.uniform(*cfg.line_spacing)
    fg, bg = _colours(rng, cfg)
    while True:
        font = open_font(font_path, size)
        lines = sum(1 for _ in wrap_text(text, font, width - 2 * margin))
        needed = 2 * margin + lines * max(1, round(size * spacing)) + size // 3
        if needed <= cfg.page_height or size <= 8:
            break
        size = max(8, int(size * 0.85))  # too long for the page: smaller type, as a user would
    height = min(cfg.page_height, max(needed, rng.randint(needed, needed + 60)))
    config = RenderConfig(
        width=width,
        height=height,
        font_size=size,
        margin=margin,
        line_spacing=spacing,
        font_path=font_path,
        background=bg,
        foreground=fg,
    )
    return degrade(render_text(text, config)[0], rng, cfg)


def degrade(page: Image.Image, rng: random.Random, cfg: StyleCfg) -> Image.Image:
    """Scan and screenshot noise: rotation, blur, low resolution, pixel noise, JPEG."""
    page = page.convert("RGB")
    if rng.random() < cfg.rotate_prob:
        fill = page.getpixel((0, 0))
        angle = rng.uniform(-cfg.max_degrees, cfg.max_degrees)
        page = page.rotate(angle, resample=Image.Resampling.BILINEAR, fillcolor=fill)
    if rng.random() < cfg.blur_prob:
        page = page.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.2)))
    if rng.random() < cfg.rescale_prob:
        scale = rng.uniform(0.55, 0.9)
        small = (max(1, round(page.width * scale)), max(1, round(page.height * scale)))
        page = page.resize(small, Image.Resampling.BILINEAR).resize(
            page.size, Image.Resampling.BILINEAR
        )
    if rng.random() < cfg.noise_prob:
        pixels = np.asarray(page, dtype=np.float32)
        noise = np.random.default_rng(rng.getrandbits(32)).normal(
            0, rng.uniform(2, 10), pixels.shape
        )
        page = Image.fromarray(np.clip(pixels + noise, 0, 255).astype(np.uint8))
    if rng.random() < cfg.jpeg_prob:
        buffer = io.BytesIO()
        page.save(buffer, format="JPEG", quality=rng.randint(20, 90))
        page = Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")
    return page


# -- held-out pages (evaluation) -------------------------------------------------------------


def plain_page(text: str, font_path: str, size: int, width: int = 448) -> Image.Image:
    """Black text on white, 20 px margins, as tall as the text needs: the evaluation page."""
    font = open_font(font_path, size)
    margin = 20
    lines = list(wrap_text(text, font, width - 2 * margin))
    line_height = round(size * 1.3)
    height = 2 * margin + line_height * len(lines)
    page = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(page)
    for number, line in enumerate(lines):
        draw.text((margin, margin + number * line_height), line, font=font, fill=(0, 0, 0))
    return page


# -- browser pages ---------------------------------------------------------------------------

_BLOCK = (
    '<div style="position:absolute;left:0;top:{top}px;width:{w}px;height:{h}px;overflow:hidden;'
    "box-sizing:border-box;padding:{pad}px;background:{bg};color:{fg};font-family:'{family}';"
    'font-size:{size}px;line-height:{spacing}">{body}</div>'
)


def _html_block(text: str, families: Sequence[str], rng: random.Random, cfg: StyleCfg, top: int):
    fg, bg = _colours(rng, cfg)
    width = rng.randint(cfg.min_width, cfg.page_width)
    pad = rng.randint(*cfg.margins)
    area = (width - 2 * pad) * (cfg.page_height - 2 * pad)
    spacing = round(rng.uniform(*cfg.line_spacing), 2)
    # The largest size whose text fills at most ~60% of the block (0.55 em per character).
    fits = int((0.6 * area / max(1, len(text)) / (0.55 * spacing)) ** 0.5)
    size = max(10, min(rng.randint(*cfg.sizes), fits))
    escaped = html.escape(text).replace("\n", "<br>")
    kind = rng.random()
    if kind < 0.2 and len(text.split()) > 4:  # a heading over the rest
        words = escaped.split(" ")
        body = f"<h3 style='margin:0 0 .3em'>{' '.join(words[:3])}</h3>{' '.join(words[3:])}"
    elif kind < 0.3:
        body = f"<b>{escaped}</b>"
    else:
        body = f"<p style='margin:0'>{escaped}</p>"
    block = _BLOCK.format(
        top=top,
        w=width,
        h=cfg.page_height,
        pad=pad,
        bg="#{:02x}{:02x}{:02x}".format(*bg),
        fg="#{:02x}{:02x}{:02x}".format(*fg),
        family=rng.choice(list(families)),
        size=size,
        spacing=spacing,
        body=body,
    )
    return block, width


def html_screenshots(
    texts: Sequence[str],
    families: Sequence[str],
    folder: Path,
    seed: int,
    cfg: StyleCfg,
    per_shot: int = 24,
) -> list[Path]:
    """Each text laid out by headless Chromium in a random style, one PNG per text.

    Many blocks are stacked in one tall document and cut apart after one screenshot, so a
    browser starts once per ``per_shot`` pages.

    Raises:
        FileNotFoundError: Chromium is not installed (``apt-get install chromium``).
    """
    browser = shutil.which(CHROMIUM)
    if browser is None:
        raise FileNotFoundError("html pages need Chromium: apt-get install chromium")
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    paths = []
    for start in range(0, len(texts), per_shot):
        chunk = texts[start : start + per_shot]
        blocks, widths = [], []
        for index, text in enumerate(chunk):
            block, width = _html_block(text, families, rng, cfg, index * cfg.page_height)
            blocks.append(block)
            widths.append(width)
        document = (
            "<html><body style='margin:0;background:#fff'>" + "".join(blocks) + "</body></html>"
        )
        shot = _screenshot(browser, document, cfg.page_width, cfg.page_height * len(chunk))
        for index, width in enumerate(widths):
            top = index * cfg.page_height
            path = folder / f"{start + index:06d}.png"
            shot.crop((0, top, width, top + cfg.page_height)).save(path)
            paths.append(path)
        logger.info("html pages: %d/%d drawn", len(paths), len(texts))
    return paths


def _screenshot(browser: str, document: str, width: int, height: int) -> Image.Image:
    with tempfile.TemporaryDirectory() as scratch:
        page = Path(scratch) / "page.html"
        page.write_text(document, encoding="utf-8")
        out = Path(scratch) / "shot.png"
        flags = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--disable-background-networking",
            "--disable-component-update",
            "--no-first-run",
            "--force-device-scale-factor=1",
            f"--user-data-dir={Path(scratch) / 'profile'}",
            f"--window-size={width},{height}",
            f"--screenshot={out}",
        ]
        subprocess.run(
            [browser, *flags, page.as_uri()], capture_output=True, timeout=180, check=True
        )
        return Image.open(out).convert("RGB")
