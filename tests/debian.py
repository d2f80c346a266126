"""The one skip rule for tests that need Debian packages (what ``.ci/run`` installs).

``needs("fortunes", *HELD_OUT_FONTS)`` skips a test, naming each missing package and the
command that installs it, when a file that package ships is absent. Each package is found by
one file it installs, so the check works wherever the files are (no ``dpkg`` needed). Under
``CI=true`` the conftest turns any such skip into a failed run: CI installs them all, so a skip
there means a test silently stopped running.
"""

from __future__ import annotations

import glob
import shutil

import pytest

SKIP_PREFIX = "needs Debian packages:"  # tests/conftest.py finds these skips by it

# package -> a file it installs (a glob), or "bin:NAME" for a program on PATH
PROBES = {
    "tesseract-ocr": "bin:tesseract",
    "tesseract-ocr-eng": "/usr/share/tesseract-ocr/*/tessdata/eng.traineddata",
    "chromium": "bin:chromium",
    "chromium-driver": "bin:chromedriver",
    "wordnet-base": "/usr/share/wordnet/data.noun",
    "fortunes": "/usr/share/games/fortunes/art",
    "fonts-dejavu-core": "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "fonts-dejavu-extra": "/usr/share/fonts/truetype/dejavu/DejaVuSansCondensed.ttf",
    "fonts-liberation": "/usr/share/fonts/truetype/liberation/*.ttf",
    "fonts-freefont-ttf": "/usr/share/fonts/truetype/freefont/*.ttf",
    "fonts-urw-base35": "/usr/share/fonts/opentype/urw-base35/*.otf",
    "fonts-open-sans": "/usr/share/fonts/truetype/open-sans/*.ttf",
    "fonts-lato": "/usr/share/fonts/truetype/lato/*.ttf",
    "fonts-roboto": "/usr/share/fonts/truetype/roboto/unhinted/RobotoTTF/*.ttf",
    "fonts-crosextra-carlito": "/usr/share/fonts/truetype/crosextra/Carlito-*.ttf",
    "fonts-crosextra-caladea": "/usr/share/fonts/truetype/crosextra/Caladea-*.ttf",
    "fonts-linuxlibertine": "/usr/share/fonts/opentype/linux-libertine/*.otf",
    "fonts-cantarell": "/usr/share/fonts/opentype/cantarell/*.otf",
    "fonts-go": "/usr/share/fonts/fonts-go/*.ttf",
    "fonts-hack": "/usr/share/fonts/truetype/hack/*.ttf",
    "fonts-inconsolata": "/usr/share/fonts/truetype/inconsolata/*.otf",
    "fonts-ebgaramond": "/usr/share/fonts/opentype/ebgaramond/*.otf",
    "fonts-sil-andika": "/usr/share/fonts/truetype/andika/*.ttf",
    "fonts-comic-neue": "/usr/share/fonts/opentype/comic-neue/*.otf",
    "fonts-jetbrains-mono": "/usr/share/fonts/truetype/jetbrains-mono/*.ttf",
    # the French catalog stands for the translated messages of the base packages (coreutils,
    # tar, dpkg, apt, bash...) that the page reader learns accented text from
    "coreutils": "/usr/share/locale/fr/LC_MESSAGES/coreutils.mo",
}
# the font globs of configs/pixel_text_fonts.yaml and configs/reader/page_reader.yaml
TRAINING_FONTS = (
    "fonts-dejavu-core",
    "fonts-dejavu-extra",
    "fonts-liberation",
    "fonts-freefont-ttf",
    "fonts-urw-base35",
    "fonts-open-sans",
    "fonts-lato",
    "fonts-roboto",
    "fonts-crosextra-carlito",
    "fonts-crosextra-caladea",
    "fonts-linuxlibertine",
    "fonts-cantarell",
    "fonts-go",
    "fonts-hack",
    "fonts-inconsolata",
)
# their held_out_fonts: the unseen-font evaluation (tests/page_samples.py HELD_OUT_FONTS)
HELD_OUT_FONTS = (
    "fonts-ebgaramond",
    "fonts-sil-andika",
    "fonts-comic-neue",
    "fonts-jetbrains-mono",
)
CORPORA = ("fortunes", "wordnet-base")


def missing(*packages: str) -> list[str]:
    """The packages among ``packages`` whose probe file (or program) is absent."""
    absent = []
    for package in packages:
        probe = PROBES[package]  # a KeyError here: add the package's probe above
        if probe.startswith("bin:"):
            found = shutil.which(probe[4:]) is not None
        else:
            found = bool(glob.glob(probe))
        if not found:
            absent.append(package)
    return absent


def needs(*packages: str) -> pytest.MarkDecorator:
    """A ``skipif`` mark naming the missing packages and how to install them."""
    absent = missing(*packages)
    return pytest.mark.skipif(
        bool(absent),
        reason=f"{SKIP_PREFIX} {' '.join(absent)} "
        f"(apt-get install {' '.join(absent)}; .ci/run installs them)",
    )
