"""The unseen-font evaluation of page towers: held-out sentences in held-out font families.

Sentences are Debian ``fortunes`` entries (quotes, jokes, sayings: everyday English of many
registers, unlike the dictionary glosses the first tower learnt) whose hash puts them in the
recipe's held-out split, cut to one line of 30-150 characters. Each is drawn black on white,
20 px margins, 448 px wide, in one of the recipe's ``held_out_fonts`` families (sentence ``i``
in family ``i mod F``, its Regular face), at each of ``SIZES``. Training never draws these
fonts nor these texts; ``scripts/eval_pixel_tower.py`` and ``benchmarks/pages.py`` read the
same pages.
"""

from __future__ import annotations

import glob
import random
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from . import corpora
from .styles import plain_page

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
