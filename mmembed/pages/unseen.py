"""The unseen-font evaluations of page towers: held-out sentences in held-out font families.

Sentences are Debian ``fortunes`` entries (quotes, jokes, sayings: everyday English of many
registers, unlike the dictionary glosses the first tower learnt) whose hash puts them in the
recipe's held-out split, cut to one line of 30-150 characters. Each is drawn black on white,
20 px margins, 448 px wide, in one of the recipe's ``held_out_fonts`` families (sentence ``i``
in family ``i mod F``, its Regular face), at each of ``SIZES``. Training never draws these
fonts nor these texts; ``scripts/eval_pixel_tower.py`` and ``benchmarks/pages.py`` read the
same pages.

Two more sets, fixed here before any reader was measured on them, check what the first set
cannot: ``accented_set`` (held-out translated messages of Debian's base packages: Czech,
Turkish, Polish, French, ... in the same held-out families, each drawn in a family that has
all its letters) and ``two_column_set`` (two held-out fortunes per column, two columns per
page: text read across the columns is interleaved).
"""

from __future__ import annotations

import glob
import random
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw

from ..processors.render import open_font, wrap_text
from . import corpora
from .styles import fonts_for, plain_page

SIZES = (14, 20, 28)  # font sizes in px of the three evaluation pages of every sentence
MIN_CHARS, MAX_CHARS = 30, 150  # one-line sentences of this length


@dataclass(frozen=True)
class UnseenSet:
    """Held-out sentences and the held-out font file each is drawn in."""

    texts: list[str]
    fonts: list[str]  # one font file per text

    def page(self, index: int, size: int) -> Image.Image:
        """Sentence ``index`` drawn at ``size`` px in its font."""
        return plain_page(self.texts[index], self.fonts[index], size)

    def families(self) -> list[str]:
        return sorted({Path(font).stem.split("-")[0] for font in self.fonts})


def regular_face(pattern: str) -> str:
    """The Regular file of a held-out family glob (the first file when none says Regular).

    Raises:
        FileNotFoundError: the family's Debian package is not installed.
    """
    files = sorted(glob.glob(pattern))
    if not files:
        raise FileNotFoundError(
            f"no held-out font matches {pattern!r}: install the Debian font packages listed in "
            "configs/pixel_text_fonts.yaml (see .ci/run)"
        )
    regular = [path for path in files if "Regular" in Path(path).name]
    return (regular or files)[0]


def unseen_set(held_out_fonts: list[str], permille: int, count: int = 250) -> UnseenSet:
    """``count`` held-out fortunes (a fixed seeded order), each in a held-out family.

    Args:
        held_out_fonts: the recipe's ``held_out_fonts`` globs, one per family.
        permille: the recipe's ``held_out_permille`` (the same hash split as training).
        count: sentences kept.
    """
    fortunes = corpora.read_fortunes()
    train, held = corpora.split_held_out(fortunes, permille)
    seen = {corpora.one_line(g.text) for g in train}  # a fortune filed twice stays out
    texts = sorted(
        {
            line
            for g in held
            if MIN_CHARS <= len(line := corpora.one_line(g.text)) <= MAX_CHARS and line not in seen
        }
    )
    random.Random(0).shuffle(texts)
    texts = texts[:count]
    faces = [regular_face(pattern) for pattern in held_out_fonts]
    return UnseenSet(texts, [faces[i % len(faces)] for i in range(len(texts))])


def accented_set(held_out_fonts: list[str], permille: int, count: int = 250) -> UnseenSet:
    """``count`` held-out translated messages with accented letters (a fixed seeded order), each
    in the first held-out family, from family ``i mod F`` on, that draws all its letters.

    Raises:
        FileNotFoundError: the message catalogs (``corpora.read_translations``) or a held-out
            family are not installed.
    """
    train, held = corpora.split_held_out(corpora.read_translations(), permille)
    seen = {g.text for g in train}
    texts = sorted(
        {
            line
            for g in held
            if MIN_CHARS <= len(line := corpora.one_line(g.text)) <= MAX_CHARS and line not in seen
        }
    )
    random.Random(0).shuffle(texts)
    faces = [regular_face(pattern) for pattern in held_out_fonts]
    kept, fonts = [], []
    for text in texts:
        order = faces[len(kept) % len(faces) :] + faces[: len(kept) % len(faces)]
        usable = fonts_for(text, order)
        if usable:
            kept.append(text)
            fonts.append(usable[0])
        if len(kept) == count:
            break
    return UnseenSet(kept, fonts)


@dataclass(frozen=True)
class TwoColumnSet:
    """Pages of two columns; ``texts[i]`` is page ``i``'s text in reading order."""

    columns: list[tuple[str, str]]  # (left, right) column texts
    fonts: list[str]  # one font file per page

    @property
    def texts(self) -> list[str]:
        return [f"{left} {right}" for left, right in self.columns]

    def page(self, index: int, size: int) -> Image.Image:
        """Page ``index`` at ``size`` px: two 408 px columns, 40 px apart, 20 px margins."""
        return two_column_page(*self.columns[index], self.fonts[index], size)

    def families(self) -> list[str]:
        return sorted({Path(font).stem.split("-")[0] for font in self.fonts})


def two_column_page(
    left: str, right: str, font_path: str, size: int, column: int = 408, gutter: int = 40
) -> Image.Image:
    """Black on white, lines 1.3 x ``size`` apart, both columns from the same top."""
    font = open_font(font_path, size)
    margin, pitch = 20, round(size * 1.3)
    lines = [list(wrap_text(text, font, column)) for text in (left, right)]
    width = 2 * margin + 2 * column + gutter
    page = Image.new("RGB", (width, 2 * margin + pitch * max(map(len, lines))), (255, 255, 255))
    draw = ImageDraw.Draw(page)
    for x, column_lines in zip((margin, margin + column + gutter), lines, strict=True):
        for number, line in enumerate(column_lines):
            draw.text((x, margin + number * pitch), line, font=font, fill=(0, 0, 0))
    return page


def two_column_set(held_out_fonts: list[str], permille: int, count: int = 96) -> TwoColumnSet:
    """``count`` pages, each column two held-out fortunes (those of ``unseen_set``'s pool, in
    another seeded order), page ``i`` in held-out family ``i mod F``."""
    pool = unseen_set(held_out_fonts, permille, count=10**6).texts
    random.Random(1).shuffle(pool)
    if len(pool) < 4 * count:
        raise ValueError(f"{len(pool)} held-out fortunes make fewer than {count} pages")
    columns = [
        (f"{pool[4 * i]} {pool[4 * i + 1]}", f"{pool[4 * i + 2]} {pool[4 * i + 3]}")
        for i in range(count)
    ]
    faces = [regular_face(pattern) for pattern in held_out_fonts]
    return TwoColumnSet(columns, [faces[i % len(faces)] for i in range(count)])
