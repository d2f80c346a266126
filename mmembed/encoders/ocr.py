"""OCR page tower: Tesseract reads the page, the text tower embeds what it read.

The anchor for pages: slower than a pixel tower, but it reads any font Tesseract reads, and
its vectors are the text tower's own, so a text query meets a page as it would meet the text.
Tesseract comes from the system (Debian: ``apt-get install tesseract-ocr``) and is driven
through pytesseract.

Pages are read in ``preprocess`` (which ``Embedder`` runs in its worker threads, so several
Tesseract processes run at once) and handed on as token ids; ``forward`` runs the text tower.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass

import torch
from PIL import Image
from torch import nn

from ..errors import MissingDependencyError

logger = logging.getLogger(__name__)

INSTALL_HINT = "install Tesseract (Debian/Ubuntu: apt-get install tesseract-ocr; macOS: brew install tesseract)"


@dataclass(frozen=True)
class OCRCfg:
    """How pages are read."""

    language: str = "eng"  # Tesseract language pack(s), e.g. "eng+deu"
    psm: int = 3  # page segmentation mode: 3 finds blocks and lines itself (any layout)
    oem: int = 1  # OCR engine: 1 is the LSTM recogniser
    max_tokens: int = 256  # word pieces kept per page (the text tower's window)
    min_side: int = 600  # pages smaller than this are enlarged first: Tesseract wants ~30 px text


def tesseract_version() -> str:
    """Tesseract's version string.

    Raises:
        MissingDependencyError: pytesseract or the ``tesseract`` program is missing.
    """
    try:
        import pytesseract
    except ImportError as error:
        raise MissingDependencyError(
            "page='ocr' needs pytesseract (pip install pytesseract) and " + INSTALL_HINT
        ) from error
    if shutil.which(pytesseract.pytesseract.tesseract_cmd) is None:
        raise MissingDependencyError(f"page='ocr' needs the tesseract program: {INSTALL_HINT}")
    return str(pytesseract.get_tesseract_version())


def read_page(image: Image.Image, cfg: OCRCfg) -> str:
    """The text Tesseract reads on ``image`` (whitespace collapsed; "" for a blank page)."""
    return " ".join(read_page_lines(image, cfg))


def read_page_lines(image: Image.Image, cfg: OCRCfg) -> list[str]:
    """The lines Tesseract reads on ``image``, whitespace collapsed, blank ones left out."""
    import pytesseract

    page = image.convert("L")
    shortest = min(page.size)
    if shortest < cfg.min_side:
        scale = cfg.min_side / shortest
        size = (round(page.width * scale), round(page.height * scale))
        page = page.resize(size, Image.Resampling.BICUBIC)
    config = f"--psm {cfg.psm} --oem {cfg.oem}"
    text = pytesseract.image_to_string(page, lang=cfg.language, config=config)
    return [" ".join(line.split()) for line in text.splitlines() if line.strip()]


class ReadingPageTower(nn.Module):
    """ImageTower for pages that reads them to text: ``preprocess(PIL) -> (2, L)`` token ids and
    mask of the lines ``read_lines`` found (joined by spaces); ``forward`` runs the text tower
    on them. ``preprocess_read`` also gives the lines, for what a result shows of the page.

    Args:
        text: the text tower whose space pages land in; it is used, not owned (it stays the
            embedder's ``text`` tower, so its weights are saved and cast once).
        max_tokens: word pieces kept per page (the text tower's window).
    """

    def __init__(self, text: nn.Module, max_tokens: int):
        super().__init__()
        self.max_tokens = max_tokens
        self._text = [text]  # a list: not registered, so no second copy of the weights
        self.dim = text.dim

    @property
    def text(self) -> nn.Module:
        return self._text[0]

    def read_lines(self, image: Image.Image) -> list[str]:
        """The lines of text on ``image``, in reading order, blank ones left out."""
        raise NotImplementedError

    def read(self, image: Image.Image) -> str:
        """The text on ``image``, its lines joined by spaces: what the text tower embeds."""
        return " ".join(self.read_lines(image))

    def preprocess(self, image: Image.Image) -> torch.Tensor:
        return self.preprocess_read(image)[0]

    def preprocess_read(self, image: Image.Image) -> tuple[torch.Tensor, list[str]]:
        """``preprocess``'s tensor and the lines it was made from, from one reading."""
        lines = self.read_lines(image)
        tokens = self.text.tokenizer(
            " ".join(lines),
            padding="max_length",
            truncation=True,
            max_length=self.max_tokens,
            return_tensors="pt",
        )
        # float32 holds every id of a vocabulary under 2**24 exactly; the ids carry no weights,
        # so the embedder hands this over as float32 whatever the text tower's precision.
        return torch.cat([tokens["input_ids"], tokens["attention_mask"]]).float(), lines  # (2, L)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        ids, mask = pixels.long().unbind(dim=1)  # (B, L) each
        used = max(int(mask.sum(dim=1).max()), 1)  # drop the padding no page in the batch uses
        device = next(self.text.parameters()).device
        tokens = {
            "input_ids": ids[:, :used].to(device),
            "attention_mask": mask[:, :used].to(device),
        }
        return self.text(tokens)  # (B, dim)


class OCRPageTower(ReadingPageTower):
    """Pages read by Tesseract, embedded by the text tower.

    Args:
        text: the text tower whose space pages land in (used, not owned).
        cfg: how pages are read.

    Raises:
        MissingDependencyError: Tesseract is not installed (checked when the tower is built).
    """

    def __init__(self, text: nn.Module, cfg: OCRCfg):
        super().__init__(text, cfg.max_tokens)
        self.cfg = cfg
        self.version = tesseract_version()

    def read_lines(self, image: Image.Image) -> list[str]:
        return read_page_lines(image, self.cfg)
