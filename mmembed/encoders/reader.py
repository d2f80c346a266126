"""Reader page tower: find the text lines on a page, read each with a small CTC line reader,
and embed what was read with the text tower.

A pixel tower that maps a page straight to a sentence vector has to learn reading from a
384-number target per page; a line reader learns from every character (CTC, Graves et al.
2006; the CNN + BiLSTM shape of Shi et al. 2016, CRNN). That supervision is dense enough to
train on a CPU, and the vectors are the text tower's own, so a text query meets a page as it
would meet the text. The reader is trained by ``scripts/train_page_reader.py`` on pages drawn
in many fonts and looks and ships in ``mmembed/weights/``.

Lines are found the way classic OCR finds them: the page's ink is separated from its
background (any colours), deskewed by the angle that makes its row profile sharpest, and cut
where rows hold no text. Training crops lines with this same code, so the reader sees at test
time exactly the kind of crop it learnt from.
"""

from __future__ import annotations

import functools
import json
import threading
import unicodedata
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageFilter
from torch import nn

from ..hub import MissingWeightsError, load_state_dict, mmembed_home
from ..hub.atomic import write_atomic
from .ocr import ReadingPageTower
from .onnx_export import ExportSpec, cache_folder, cached, export_checked
from .onnx_text import session_of
from .runtime import RuntimeChoice

READER_NAME = "reader_crnn.fonts"
EXPORT_CONFIG = "onnx_reader.json"
EXPORT_ATOL = 1e-3  # largest logit difference to torch an exported reader may show (seen: 2e-5)
PACKAGE_WEIGHTS = Path(__file__).resolve().parents[1] / "weights"
_EXPORTING = threading.Lock()  # one torch.onnx.export of a reader at a time (see _open_export)
# What a reader can output (index 0 of its logits is the CTC blank). "latin" adds Latin-1 and
# Latin Extended-A (é, ü, ß, ł, ő, ş, ...: the Latin-script languages of Western, Central and
# Northern Europe and Turkish) to printable ASCII; "ascii" is the alphabet of the first reader.
ASCII = "".join(chr(code) for code in range(32, 127))
LATIN = (
    ASCII
    + "".join(chr(code) for code in range(0xA1, 0x100) if code != 0xAD)  # no soft hyphen
    + "".join(chr(code) for code in range(0x100, 0x180))
)
ALPHABETS = {"ascii": ASCII, "latin": LATIN}
ALPHABET = LATIN  # the alphabet of new readers
# Typographic marks read as their ASCII look-alikes (German and Polish low quotes included).
_TYPOGRAPHIC = str.maketrans(
    {"‘": "'", "’": "'", "‚": "'", "“": '"', "”": '"', "„": '"', "–": "-", "—": "-", "‐": "-",
     "‑": "-", "−": "-", "…": "..."}
)  # fmt: skip


@dataclass(frozen=True)
class ReaderCfg:
    """Line reader architecture and line geometry (saved next to its weights)."""

    height: int = 32  # line crops are scaled to this height in px
    max_width: int = 2048  # longer lines are cut at a gap between words into pieces
    channels: tuple[int, int, int, int] = (24, 48, 96, 128)  # conv widths of the 4 stages
    hidden: int = 128  # BiLSTM width per direction
    max_degrees: float = 3.0  # deskew searches rotations of at most this many degrees ...
    degree_step: float = 0.5  # ... in steps of this size
    ink_level: float = 0.4  # a pixel is ink when it is this far (0..1) from the background
    # Touching lines are cut at their emptiest row; each crop reaches this fraction of the
    # x-height past the cut, so ascenders and descenders near it are not cut off.
    line_overlap: float = 0.0
    alphabet: str = "latin"  # a key of ALPHABETS: the characters the reader outputs
    blocks: bool = True  # find text blocks (columns) before lines; False: rows span the page


def to_alphabet(text: str, alphabet: str = ALPHABET) -> str:
    """``text`` as a reader with ``alphabet`` should read it: typographic marks as ASCII,
    a character outside the alphabet as its base letter when it has one (ș -> s; é -> e for
    an ASCII reader), spaces collapsed, anything else removed."""
    charset = _charset(alphabet)
    kept = []
    for char in unicodedata.normalize("NFC", text.translate(_TYPOGRAPHIC)):
        if char in charset:
            kept.append(char)
        elif char.isspace():
            kept.append(" ")
        else:
            kept += [c for c in unicodedata.normalize("NFKD", char) if c in charset]
    return " ".join("".join(kept).split())


@functools.cache
def _charset(alphabet: str) -> frozenset[str]:
    return frozenset(alphabet)


@functools.cache
def _indices(alphabet: str) -> dict[str, int]:
    return {char: index + 1 for index, char in enumerate(alphabet)}


# -- lines -------------------------------------------------------------------------------------


def ink_map(page: Image.Image) -> np.ndarray:
    """(H, W) float32, 0 on the background and up to 1 on ink, whatever the colours."""
    grey = np.asarray(page.convert("L"), dtype=np.float32) / 255.0
    ink = np.abs(grey - np.median(grey))  # the background is the most common grey
    peak = float(np.percentile(ink, 99.7))
    if peak < 0.08:  # no contrast anywhere: a blank page
        return np.zeros_like(ink)
    return np.clip(ink / peak, 0.0, 1.0)


def ink_mask(ink: np.ndarray, cfg: ReaderCfg) -> np.ndarray:
    """Where the ink is, without specks of scan noise: a pixel stays ink when at least 3 pixels
    of its 3x3 neighbourhood are ink (a one-pixel stroke keeps its own pixels; a median filter
    would erase it)."""
    above = Image.fromarray(((ink >= cfg.ink_level) * 255).astype(np.uint8))
    return np.asarray(above.filter(ImageFilter.RankFilter(3, 6))) > 0


def deskew(ink: np.ndarray, cfg: ReaderCfg) -> np.ndarray:
    """``ink`` rotated by the angle (within ``cfg.max_degrees``) whose row profile is sharpest."""
    if cfg.max_degrees <= 0 or not ink.any():
        return ink
    image = Image.fromarray((ink * 255).astype(np.uint8))
    mask = Image.fromarray(ink_mask(ink, cfg).astype(np.uint8) * 255)
    steps = int(round(cfg.max_degrees / cfg.degree_step))
    angles = [step * cfg.degree_step for step in range(-steps, steps + 1)]

    def sharpness(angle: float) -> float:
        rows = np.asarray(mask.rotate(angle, Image.Resampling.NEAREST), dtype=np.float32).sum(1)
        return float(np.square(np.diff(rows)).sum())

    scores = [sharpness(angle) for angle in angles]
    best = angles[int(np.argmax(scores))]
    if best == 0.0 or max(scores) < 1.02 * scores[steps]:  # not clearly better than upright
        return ink
    rotated = image.rotate(best, Image.Resampling.BILINEAR)
    return np.asarray(rotated, dtype=np.float32) / 255.0


def _runs(flags: np.ndarray) -> list[tuple[int, int]]:
    """[start, end) of the runs of True in a 1-D bool array."""
    edges = np.diff(np.concatenate([[0], flags.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1), strict=True))


def line_bands(
    ink: np.ndarray, cfg: ReaderCfg, mask: np.ndarray | None = None
) -> list[tuple[int, int]]:
    """Row ranges [top, bottom) of the text lines on a deskewed ink map, top to bottom.

    Blank rows separate blocks; a block holding several touching lines has several dense
    cores (the x-height bands) and is cut at the emptiest row between each pair of them.
    """
    rows = (ink_mask(ink, cfg) if mask is None else mask).sum(axis=1)
    blocks = [(a, b) for a, b in _runs(rows > 0) if b - a >= 3]
    if not blocks:
        return []
    height = float(np.median([b - a for a, b in blocks]))
    kept: list[tuple[int, int]] = []
    for a, b in blocks:  # accents and dots a blank row away join the nearest line
        if b - a < 0.4 * height and kept and a - kept[-1][1] <= 0.5 * height:
            kept[-1] = (kept[-1][0], b)
        elif kept and kept[-1][1] - kept[-1][0] < 0.4 * height and a - kept[-1][1] <= 0.5 * height:
            kept[-1] = (kept[-1][0], b)
        else:
            kept.append((a, b))
    bands = []
    for a, b in kept:
        block = rows[a:b]
        cores = [(a + s, a + e) for s, e in _runs(block > 0.3 * np.percentile(block, 90))]
        tallest = max(e - s for s, e in cores)
        cores = [(s, e) for s, e in cores if e - s >= 0.4 * tallest]
        cuts = [a]
        for (_, end), (start, _) in zip(cores, cores[1:], strict=False):
            cuts.append(end + int(np.argmin(rows[end:start])) if start > end else end)
        cuts.append(b)
        reach = int(round(cfg.line_overlap * tallest))  # ascenders above a cut, descenders below
        bands += [
            (max(a, top - reach * (top > a)), min(b, bottom + reach * (bottom < b)))
            for top, bottom in zip(cuts, cuts[1:], strict=False)
            if bottom > top
        ]
    return bands


# -- blocks: columns before lines -------------------------------------------------------------

Box = tuple[int, int, int, int]  # (top, bottom, left, right) of a region, ends excluded


def text_blocks(mask: np.ndarray, depth: int = 6) -> list[Box]:
    """The text blocks of an ink mask in reading order (a recursive XY cut).

    A region is cut at blank column stripes wider than its line height (columns, read left to
    right), else at blank row stripes wider than it (blocks, top to bottom), and each part is
    cut again. Word gaps never reach a line height, so a single column stays whole. Columns
    whose lines are short and sit on the same rows as their neighbours' are a table's: the
    region stays one block, so a table reads row by row.
    """
    rows, columns = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return []
    return _cut(
        mask, (int(rows[0]), int(rows[-1]) + 1, int(columns[0]), int(columns[-1]) + 1), depth
    )


def _cut(mask: np.ndarray, box: Box, depth: int) -> list[Box]:
    top, bottom, left, right = box
    region = mask[top:bottom, left:right]
    if depth == 0:
        return [box]
    strips = _strips(region.any(axis=0), _line_height(region))
    if len(strips) > 1:
        parts = [region[:, a:b] for a, b in strips]
        if _is_table(parts, [b - a for a, b in strips]):
            return [box]
        return [
            found
            for a, b in strips
            for found in _cut(mask, _trimmed(mask, (top, bottom, left + a, left + b)), depth - 1)
        ]
    bands = _strips(region.any(axis=1), _line_height(region))
    if len(bands) > 1:
        return [
            found
            for a, b in bands
            for found in _cut(mask, _trimmed(mask, (top + a, top + b, left, right)), depth - 1)
        ]
    return [box]


def _line_height(region: np.ndarray) -> float:
    """Median ink height of the region's lines (its row runs; a run of two lines that touch
    counts once, which only makes gaps harder to cut at)."""
    heights = [b - a for a, b in _runs(region.any(axis=1)) if b - a >= 3]
    return float(np.median(heights)) if heights else 0.0


def _strips(ink: np.ndarray, height: float) -> list[tuple[int, int]]:
    """[start, end) of the runs of ``ink`` (a 1-D profile) joined across gaps of at most
    ``height``: the parts a cut at the wider gaps leaves."""
    runs = _runs(ink)
    if not runs or height <= 0:
        return [(0, len(ink))] if runs else []
    joined = [runs[0]]
    for start, end in runs[1:]:
        if start - joined[-1][1] > height:
            joined.append((start, end))
        else:
            joined[-1] = (joined[-1][0], end)
    return [(int(a), int(b)) for a, b in joined]


def _trimmed(mask: np.ndarray, box: Box) -> Box:
    top, bottom, left, right = box
    region = mask[top:bottom, left:right]
    rows, columns = np.flatnonzero(region.any(axis=1)), np.flatnonzero(region.any(axis=0))
    return (
        top + int(rows[0]),
        top + int(rows[-1]) + 1,
        left + int(columns[0]),
        left + int(columns[-1]) + 1,
    )


def _is_table(parts: list[np.ndarray], widths: list[int]) -> bool:
    """Whether side-by-side strips are a table's columns: not all of them prose (lines filling
    most of the strip) and most rows of the strip with the fewest lying on rows of all others."""
    if all(_prose(part, width) for part, width in zip(parts, widths, strict=True)):
        return False
    lines = [_runs(part.any(axis=1)) for part in parts]
    fewest = min(lines, key=len)
    aligned = sum(
        all(any(min(b, d) - max(a, c) > 0.5 * (b - a) for c, d in other) for other in lines)
        for a, b in fewest
    )
    return aligned >= 0.6 * len(fewest)


def _prose(part: np.ndarray, width: int) -> bool:
    """Whether a strip's lines mostly fill it (running text, not a column of cells)."""
    spans = []
    for a, b in _runs(part.any(axis=1)):
        columns = np.flatnonzero(part[a:b].any(axis=0))
        spans.append(columns[-1] - columns[0] + 1)
    return len(spans) >= 2 and float(np.median(spans)) >= 0.6 * width


def line_crops(page: Image.Image, cfg: ReaderCfg) -> list[np.ndarray]:
    """The page's text lines as ink maps of height ``cfg.height`` (float32, ink high), block by
    block (``text_blocks``: a two-column page reads column by column), top to bottom in each;
    lines wider than ``cfg.max_width`` come in several pieces."""
    ink = deskew(ink_map(page), cfg)
    mask = ink_mask(ink, cfg)
    crops = []
    whole = [(0, mask.shape[0], 0, mask.shape[1])] if mask.any() else []
    for top, bottom, left, right in text_blocks(mask) if cfg.blocks else whole:
        block, block_mask = ink[top:bottom, left:right], mask[top:bottom, left:right]
        for upper, lower in line_bands(block, cfg, block_mask):
            columns = np.flatnonzero(block_mask[upper:lower].any(axis=0))
            if columns.size == 0:
                continue
            pad = max(2, (lower - upper) // 4)
            # The crop may reach into the margin around the block, never into another block's ink.
            a, b = left + columns[0] - pad, left + columns[-1] + pad + 1
            a, b = max(0, a, left - pad), min(ink.shape[1], b, right + pad)
            band = ink[top + upper : top + lower, a:b] * _inside(a, b, left, right)
            crops += _pieces(_scaled(band, cfg.height), cfg)
    return crops


def _inside(a: int, b: int, left: int, right: int) -> np.ndarray:
    """(W,) 1 on the columns [left, right) of the crop [a, b), 0 elsewhere."""
    columns = np.arange(a, b)
    return ((columns >= left) & (columns < right)).astype(np.float32)


def _scaled(band: np.ndarray, height: int) -> np.ndarray:
    width = max(4, round(band.shape[1] * height / band.shape[0]))
    image = Image.fromarray(band).resize((width, height), Image.Resampling.BILINEAR)
    return np.array(image, dtype=np.float32)  # a writable copy


def _pieces(line: np.ndarray, cfg: ReaderCfg) -> list[np.ndarray]:
    """A line cut at its emptiest columns into pieces of at most ``cfg.max_width``."""
    if line.shape[1] <= cfg.max_width:
        return [line]
    columns = line.sum(axis=0)
    zone = slice(cfg.max_width // 2, cfg.max_width)
    cut = cfg.max_width // 2 + int(np.argmin(columns[zone]))
    return [line[:, :cut]] + _pieces(line[:, cut:], cfg)


def batch_lines(lines: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    """Pad line crops (right, with background) into ``(B, 1, H, W)`` and their widths ``(B,)``."""
    widths = torch.tensor([line.shape[1] for line in lines])
    batch = torch.zeros(len(lines), 1, lines[0].shape[0], int(widths.max()))
    for index, line in enumerate(lines):
        batch[index, 0, :, : line.shape[1]] = torch.from_numpy(line)
    return batch, widths


# -- the reader --------------------------------------------------------------------------------


def _conv(cin: int, cout: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(True)]


class LineReader(nn.Module):
    """CNN + BiLSTM over a line crop: ``(B, 1, H, W) -> (B, W // 4, len(alphabet) + 1)`` logits."""

    STRIDE = 4  # input columns per output step

    def __init__(self, cfg: ReaderCfg, runtime: str = "auto"):
        super().__init__()
        self.cfg = cfg
        self.alphabet = ALPHABETS[cfg.alphabet]
        # Reading runs through an ONNX Runtime export when it may (encoders.runtime): 2.7x
        # torch per page here (README, "Pages"), the same logits within EXPORT_ATOL.
        self._runtime = RuntimeChoice("line reader", runtime)
        c0, c1, c2, c3 = cfg.channels
        self.features = nn.Sequential(
            *_conv(1, c0), nn.MaxPool2d(2),  # H/2, W/2
            *_conv(c0, c1), nn.MaxPool2d(2),  # H/4, W/4
            *_conv(c1, c2), *_conv(c2, c2), nn.MaxPool2d((2, 1)),  # H/8
            *_conv(c2, c3), nn.MaxPool2d((2, 1)),  # H/16
            nn.Conv2d(c3, c3, (cfg.height // 16, 1)), nn.ReLU(True),  # one row
        )  # fmt: skip
        self.rnn = nn.LSTM(c3, cfg.hidden, batch_first=True, bidirectional=True)
        self.classify = nn.Linear(2 * cfg.hidden, len(self.alphabet) + 1)

    def forward(self, lines: torch.Tensor) -> torch.Tensor:
        steps = self.features(lines).squeeze(2).transpose(1, 2)  # (B, T, C)
        return self.classify(self.rnn(steps)[0])

    @torch.inference_mode()
    def read(self, lines: list[np.ndarray]) -> list[str]:
        """The text of each line crop (greedy CTC decoding)."""
        if not lines:
            return []
        batch, widths = batch_lines(lines)
        session = self._runtime.session(self, self._open_export)
        if session is None:
            best = self(batch).argmax(-1)  # (B, T)
        else:
            best = torch.from_numpy(session.run(["logits"], {"lines": batch.numpy()})[0].argmax(-1))
        return [
            decode(row[: int(w) // self.STRIDE].tolist(), self.alphabet)
            for row, w in zip(best, widths, strict=True)
        ]

    def set_runtime(self, runtime: str) -> LineReader:
        """ "auto" (default), "onnx" or "torch" (``encoders.runtime``)."""
        self._runtime.set(runtime)
        return self

    def _open_export(self, digest: str):
        # encode reads pages in several threads, and the first read of each opens the export;
        # torch.onnx.export keeps process-wide state (GLOBALS.in_onnx_export), so two exports at
        # once fail. One at a time: the threads that waited find the finished export cached.
        with _EXPORTING:
            folder = cached_reader_export(self, mmembed_home(), digest)
        return session_of(folder / "model.onnx", 1)

    def read_page(self, page: Image.Image) -> str:
        """The page's text, its lines joined by spaces ("" for a blank page)."""
        return " ".join(self.read_page_lines(page))

    def read_page_lines(self, page: Image.Image) -> list[str]:
        """The page's lines in reading order, blank ones left out."""
        return [line for line in self.read(line_crops(page, self.cfg)) if line]


def cached_reader_export(reader: LineReader, home: Path, digest: str) -> Path:
    """The reader exported to ONNX under ``home/onnx/<digest prefix>``, made on first use by
    ``onnx_export.export_checked`` (logits within ``EXPORT_ATOL`` of torch on other lines than
    the traced ones) before it is used."""
    folder = cache_folder(home, digest)
    if cached(folder, EXPORT_CONFIG, digest, 1) is not None:
        return folder
    generator = torch.Generator().manual_seed(0)
    sample = torch.rand(3, 1, reader.cfg.height, 240, generator=generator)
    spec = ExportSpec(
        inputs=("lines",),
        outputs=("logits",),
        dynamic_axes={"lines": {0: "lines", 3: "width"}, "logits": {0: "lines", 1: "steps"}},
        atol=EXPORT_ATOL,
        unit=False,  # logits, not embeddings
    )
    return export_checked(
        reader, [sample[:2]], [sample], folder, spec, {"digest": digest}, EXPORT_CONFIG
    )


def decode(indices: list[int], alphabet: str = ALPHABET) -> str:
    """Greedy CTC: merge repeats, drop blanks (0)."""
    chars, last = [], 0
    for index in indices:
        if index != last and index:
            chars.append(alphabet[index - 1])
        last = index
    return " ".join("".join(chars).split())


def encode(text: str, alphabet: str = ALPHABET) -> list[int]:
    """Target indices of ``text`` (already in the alphabet: see ``to_alphabet``)."""
    indices = _indices(alphabet)
    return [indices[c] for c in text]


class ReaderPageTower(ReadingPageTower):
    """ImageTower for pages: the line reader reads, the text tower embeds what it read.

    Args:
        text: the text tower whose space pages land in (used, not owned).
        reader: the trained line reader (owned: its weights are saved with the model).
        max_tokens: word pieces kept per page.
    """

    def __init__(self, text: nn.Module, reader: LineReader, max_tokens: int = 256):
        super().__init__(text, max_tokens)
        self.reader = reader.eval()

    def read_lines(self, image: Image.Image) -> list[str]:
        return self.reader.read_page_lines(image)


# -- shipped weights ---------------------------------------------------------------------------


def reader_paths(name: str = READER_NAME, folder: Path = PACKAGE_WEIGHTS) -> tuple[Path, Path]:
    """(weights, config) files of a saved line reader."""
    return folder / f"{name}.safetensors", folder / f"{name}.json"


def save_reader(
    reader: LineReader, folder: Path, name: str, metadata: dict[str, Any]
) -> tuple[Path, Path]:
    """Write fp16 weights and a JSON record (``reader``: the ReaderCfg, plus ``metadata``)."""
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    weights, config = reader_paths(name, folder)
    state = {k: v.detach().half().contiguous() for k, v in reader.state_dict().items()}
    write_atomic(weights, lambda path: save_file(state, str(path)))
    record = {"reader": asdict(reader.cfg), **metadata}
    text = json.dumps(record, indent=2, ensure_ascii=False) + "\n"
    write_atomic(config, lambda path: path.write_text(text, encoding="utf-8"))
    return weights, config


def reader_cfg_from(record: dict[str, Any]) -> ReaderCfg:
    values = dict(record)
    values["channels"] = tuple(values["channels"])
    # Records older than these fields are of the first reader: ASCII, rows across the page.
    values.setdefault("alphabet", "ascii")
    values.setdefault("blocks", False)
    return ReaderCfg(**values)


def load_reader(name: str = READER_NAME, folder: Path = PACKAGE_WEIGHTS) -> LineReader:
    """The line reader saved as ``folder/name.{safetensors,json}`` (default: the shipped one).

    Raises:
        MissingWeightsError: the files are not there.
    """
    weights, config = reader_paths(name, folder)
    if not config.is_file() or not weights.is_file():
        raise MissingWeightsError(
            f"line reader {weights} not found: the shipped reader is package data of mmembed "
            "(mmembed/weights/); reinstall mmembed, or pass the folder holding the files"
        )
    record = json.loads(config.read_text(encoding="utf-8"))
    reader = LineReader(reader_cfg_from(record["reader"]))
    state = {key: value.float() for key, value in load_state_dict(weights).items()}
    reader.load_state_dict(state, strict=True)
    return reader.eval()
