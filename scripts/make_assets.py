"""Build the test fixtures under ``assets/`` from photos that ship inside installed packages.

Nothing is downloaded: the photos come from scikit-image, scikit-learn and matplotlib, so the
fixtures can be rebuilt offline and byte for byte (run ``python scripts/make_assets.py``).
Every asset is listed with a plain caption in ``assets/manifest.json``; the captions name the
main object by a common word so that models mapping images to ImageNet classes can match them.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import av.codec.context
import numpy as np
from PIL import Image

logger = logging.getLogger("make_assets")

ASSETS_DIR = Path(__file__).resolve().parent.parent / "assets"
MAX_SIDE = 384  # longest image side in pixels: small enough for a light repo, big enough for CLIP
JPEG_QUALITY = 85
VIDEO_SIZE = (320, 240)  # (width, height); even numbers, as yuv420p needs
VIDEO_FPS = 10
VIDEO_SECONDS = 2
PDF_DPI = 150  # the scanned page's resolution (what a 150 dpi office scanner gives)
PDF_PAGE = (8.27, 11.69)  # A4 in inches


@dataclass(frozen=True)
class Photo:
    """One photo to export: where it comes from and how to describe it."""

    name: str  # file stem under assets/images/
    load: Callable[[], np.ndarray]  # returns an (H, W, 3) uint8 array
    caption: str  # short plain description naming the main object
    source: str  # package and function that ship it
    license: str  # licence as stated by the shipping package


def _skimage(name: str) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        import skimage.data

        return getattr(skimage.data, name)()

    return load


def _sklearn(name: str) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        from sklearn.datasets import load_sample_image

        return load_sample_image(name)

    return load


def _matplotlib(name: str) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        from matplotlib import cbook

        with cbook.get_sample_data(name) as handle:
            return np.asarray(Image.open(handle).convert("RGB"))

    return load


PHOTOS = [
    Photo(
        "cat",
        _skimage("chelsea"),
        "a close-up of a tabby cat with green eyes",
        "scikit-image skimage.data.chelsea",
        "CC0 (Stefan van der Walt)",
    ),
    Photo(
        "coffee",
        _skimage("coffee"),
        "a cup of espresso coffee on a red saucer",
        "scikit-image skimage.data.coffee",
        "CC0 (Rachel Michetti)",
    ),
    Photo(
        "rocket",
        _skimage("rocket"),
        "a rocket on the launch pad at dusk",
        "scikit-image skimage.data.rocket",
        "public domain (SpaceX)",
    ),
    # ConSE has no ImageNet class for these two; they stay, so recall is measured unpruned.
    Photo(
        "astronaut",
        _skimage("astronaut"),
        "an astronaut in an orange space suit",
        "scikit-image skimage.data.astronaut",
        "public domain (NASA)",
    ),
    Photo(
        "galaxies",
        _skimage("hubble_deep_field"),
        "many distant galaxies in deep space",
        "scikit-image skimage.data.hubble_deep_field",
        "public domain (NASA)",
    ),
    Photo(
        "camera",
        _skimage("camera"),
        "a photographer behind a camera on a tripod",
        "scikit-image skimage.data.camera",
        "CC0 (scikit-image)",
    ),
    Photo(
        "palace",
        _sklearn("china.jpg"),
        "a chinese pagoda on a hill above a lake",
        "scikit-learn load_sample_image('china.jpg')",
        "CC BY 2.0 (danielbuechele on Flickr)",
    ),
    Photo(
        "flower",
        _sklearn("flower.jpg"),
        "an orange dahlia flower",
        "scikit-learn load_sample_image('flower.jpg')",
        "CC BY 2.0 (vultilion on Flickr)",
    ),
    Photo(
        "officer",
        _matplotlib("grace_hopper.jpg"),
        "an elderly woman in a navy uniform and cap",
        "matplotlib sample data grace_hopper.jpg",
        "public domain (US Navy)",
    ),
]

# NASA planetary fact sheet (nssdc.gsfc.nasa.gov/planetary/factsheet); moon counts as of 2024.
PLANETS = [
    # name, type, diameter_km, mass_1e24_kg, distance_from_sun_1e6_km, orbital_period_days, moons
    ("Mercury", "terrestrial", 4879, 0.330, 57.9, 88.0, 0),
    ("Venus", "terrestrial", 12104, 4.87, 108.2, 224.7, 0),
    ("Earth", "terrestrial", 12756, 5.97, 149.6, 365.2, 1),
    ("Mars", "terrestrial", 6792, 0.642, 228.0, 687.0, 2),
    ("Jupiter", "gas giant", 142984, 1898.0, 778.5, 4331.0, 95),
    ("Saturn", "gas giant", 120536, 568.0, 1432.0, 10747.0, 146),
    ("Uranus", "ice giant", 51118, 86.8, 2867.0, 30589.0, 28),
    ("Neptune", "ice giant", 49528, 102.0, 4515.0, 59800.0, 16),
]
PLANET_COLUMNS = [
    "planet",
    "type",
    "diameter_km",
    "mass_1e24_kg",
    "distance_from_sun_1e6_km",
    "orbital_period_days",
    "moons",
]

# The document's own photo and table are not items of the manifest: only the document is.
DOCUMENT_PHOTO = Photo(
    "astronaut",
    _skimage("astronaut"),
    "an astronaut in an orange space suit",
    "scikit-image skimage.data.astronaut",
    "public domain (NASA)",
)
# NASA Apollo lunar surface journal: crewed landings, landing site, moonwalkers, samples returned.
APOLLO = [
    ("Apollo 11", "1969-07", "Sea of Tranquility", "Armstrong, Aldrin", 21.5),
    ("Apollo 12", "1969-11", "Ocean of Storms", "Conrad, Bean", 34.3),
    ("Apollo 14", "1971-02", "Fra Mauro", "Shepard, Mitchell", 42.8),
    ("Apollo 15", "1971-07", "Hadley-Apennine", "Scott, Irwin", 77.3),
    ("Apollo 16", "1972-04", "Descartes Highlands", "Young, Duke", 95.7),
    ("Apollo 17", "1972-12", "Taurus-Littrow", "Cernan, Schmitt", 110.5),
]
APOLLO_COLUMNS = ["mission", "landed", "landing_site", "moonwalkers", "samples_kg"]

DOCUMENT_TEXT = [
    "Astronauts train for years before they fly. Between 1969 and 1972 the Apollo program "
    "landed twelve astronauts on the Moon, in six missions.",
    "Each crew explored a different landing site and brought lunar rock samples back to Earth:",
    "The later missions carried a lunar rover and stayed on the surface for three days.",
]


def _shrink(pixels: np.ndarray, max_side: int = MAX_SIDE) -> Image.Image:
    """Scale an array so its longest side is at most ``max_side`` (keeps the assets small)."""
    image = Image.fromarray(pixels).convert("RGB")
    scale = max_side / max(image.size)
    if scale < 1:
        size = (round(image.width * scale), round(image.height * scale))
        image = image.resize(size, Image.Resampling.LANCZOS)
    return image


def write_photos(out_dir: Path) -> list[dict]:
    """Export every photo as a JPEG and return its manifest entries."""
    (out_dir / "images").mkdir(parents=True, exist_ok=True)
    entries = []
    for photo in PHOTOS:
        relative = f"images/{photo.name}.jpg"
        _shrink(photo.load()).save(out_dir / relative, quality=JPEG_QUALITY, optimize=True)
        entries.append(_entry(relative, "image", photo.caption, photo.source, photo.license))
    return entries


def _pan_zoom_frames(pixels: np.ndarray, count: int, size: tuple[int, int]) -> list[np.ndarray]:
    """Crop a window that zooms in and drifts up the photo, like a slow camera move."""
    height, width = pixels.shape[:2]
    image = Image.fromarray(pixels)
    frames = []
    for step in range(count):
        t = step / max(count - 1, 1)
        full_w = min(width, height * size[0] / size[1])  # widest window with the frame's aspect
        crop_w = full_w * (1.0 - 0.35 * t)
        crop_h = crop_w * size[1] / size[0]
        left = (width - crop_w) / 2
        top = (height - crop_h) * (1.0 - t)
        box = (left, top, left + crop_w, top + crop_h)
        frame = image.resize(size, Image.Resampling.BILINEAR, box=box)
        frames.append(np.asarray(frame))
    return frames


def _motorcycle() -> np.ndarray:
    import skimage.data

    left, _, _ = skimage.data.stereo_motorcycle()
    return left


def _video_codec() -> str:
    """H.264 when PyAV's FFmpeg has libx264, else MPEG-4 part 2 (always bundled)."""
    return "libx264" if "libx264" in av.codecs_available else "mpeg4"


def write_video(out_dir: Path) -> dict:
    """Write a short pan-and-zoom clip over the motorcycle photo with PyAV."""
    (out_dir / "videos").mkdir(parents=True, exist_ok=True)
    relative = "videos/motorcycle_zoom.mp4"
    frames = _pan_zoom_frames(_motorcycle(), VIDEO_FPS * VIDEO_SECONDS, VIDEO_SIZE)
    codec = _video_codec()
    # faststart puts the index first, so a truncated copy still opens: a harder test case.
    # bitexact and one thread keep the bytes identical from run to run.
    with av.open(
        str(out_dir / relative),
        "w",
        options={"movflags": "faststart", "fflags": "+bitexact"},
    ) as container:
        stream = container.add_stream(codec, rate=Fraction(VIDEO_FPS))
        stream.width, stream.height = VIDEO_SIZE
        stream.pix_fmt = "yuv420p"
        stream.thread_count = 1
        stream.codec_context.flags |= av.codec.context.Flags.bitexact
        if codec == "libx264":
            stream.options = {"crf": "23", "preset": "medium", "threads": "1"}
        for pixels in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")))
        container.mux(stream.encode(None))
    logger.info("wrote %s with %s, %d frames", relative, codec, len(frames))
    return _entry(
        relative,
        "video",
        "a slow zoom on a parked motorcycle",
        "made from scikit-image skimage.data.stereo_motorcycle (left view)",
        "CC0 (Middlebury stereo dataset, via scikit-image)",
    )


def write_table(out_dir: Path) -> dict:
    """Write the planets table as CSV."""
    (out_dir / "tables").mkdir(parents=True, exist_ok=True)
    relative = "tables/planets.csv"
    _write_csv(out_dir / relative, PLANET_COLUMNS, PLANETS)
    return _entry(
        relative,
        "table",
        "the eight planets of the solar system with their diameter, mass and moons",
        "NASA planetary fact sheet",
        "public domain (NASA)",
    )


def write_document(out_dir: Path) -> dict:
    """Write an interleaved text/image/table document; paths are relative to the JSON file."""
    (out_dir / "documents").mkdir(parents=True, exist_ok=True)
    relative = "documents/apollo.json"
    photo = DOCUMENT_PHOTO
    _shrink(photo.load()).save(
        out_dir / f"documents/{photo.name}.jpg", quality=JPEG_QUALITY, optimize=True
    )
    _write_csv(out_dir / "documents/apollo_landings.csv", APOLLO_COLUMNS, APOLLO)
    segments = [
        {"text": DOCUMENT_TEXT[0]},
        {"image": f"{photo.name}.jpg"},
        {"text": DOCUMENT_TEXT[1]},
        {"table": "apollo_landings.csv"},
        {"text": DOCUMENT_TEXT[2]},
    ]
    _write_json(out_dir / relative, {"segments": segments})
    return _entry(
        relative,
        "document",
        "astronauts and the Apollo missions that landed on the Moon",
        "written for mmembed; astronaut photo from scikit-image skimage.data.astronaut (NASA)",
        "CC0 text; public-domain photo (NASA)",
    )


# A short field guide, written for mmembed (CC0). Pages 1 and 2 keep their text layer; page 3
# is printed and "scanned" (an image only), so only a page reader or OCR finds its words.
FIELD_GUIDE = (
    (
        "Keeping a sourdough starter",
        "A sourdough starter is flour and water that wild yeast and lactic bacteria have "
        "made their home. Feed it once a day when it lives on the kitchen counter: throw away "
        "half, then stir in equal weights of fresh flour and lukewarm water. Kept in the "
        "refrigerator it needs a feed only once a week. A healthy starter doubles within six "
        "hours of a feed and smells pleasantly sour, like yoghurt or green apples.",
    ),
    (
        "Why the sea has two tides a day",
        "The Moon pulls hardest on the ocean facing it and least on the far side, so the water "
        "bulges on both sides of the Earth. As the Earth turns beneath the two bulges, most "
        "coasts see two high tides and two low tides every day. When the Sun and the Moon line "
        "up, at new and full moon, their pulls add together and the spring tides are largest.",
    ),
    (
        "Repairing a bicycle puncture",
        "Take the wheel off the bicycle and lever one side of the tyre over the rim. Pull out "
        "the inner tube and pump a little air into it to find the hole: listen for a hiss or "
        "hold the tube under water and watch for bubbles. Roughen the rubber around the hole "
        "with sandpaper, spread a thin layer of glue, wait until it is dry, then press the "
        "patch on firmly. Check the inside of the tyre for glass or thorns before refitting.",
    ),
)


def _guide_figure(title: str, body: str):
    """One A4 page of the field guide as a matplotlib figure (DejaVu Sans, 11 pt)."""
    import textwrap

    from matplotlib.figure import Figure

    figure = Figure(figsize=PDF_PAGE, dpi=PDF_DPI)
    figure.text(0.1, 0.92, title, fontsize=16, weight="bold", va="top")
    for number, line in enumerate(textwrap.wrap(body, width=78)):
        figure.text(0.1, 0.87 - number * 0.022, line, fontsize=11, va="top")
    return figure


def _scanned_jpeg(figure) -> bytes:
    """The page printed and scanned: greyscale, tilted half a degree, speckled, JPEG bytes."""
    import io

    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(figure)
    canvas.draw()
    page = Image.fromarray(np.asarray(canvas.buffer_rgba())[..., :3]).convert("L")
    page = page.rotate(0.5, resample=Image.Resampling.BICUBIC, fillcolor=255)
    noise = np.random.default_rng(0).normal(0, 3, (page.height, page.width))
    pixels = np.clip(np.asarray(page, dtype=float) * 0.96 + noise, 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=70)
    return buffer.getvalue()


def write_pdf(out_dir: Path) -> Path:
    """A three-page PDF: two pages with a text layer, one scanned (image only, no text layer).

    matplotlib writes the text pages; pypdfium2 adds the scan as a JPEG image object, as a
    scanner's software does. Not listed in the manifest: a folder walk finds the PDF and
    indexes it page by page.
    """
    import io

    import matplotlib
    import pypdfium2 as pdfium
    from matplotlib.backends.backend_pdf import PdfPages

    (out_dir / "documents").mkdir(parents=True, exist_ok=True)
    path = out_dir / "documents/field_guide.pdf"
    text_pages = io.BytesIO()
    # Embedded TrueType fonts carry the character codes a text layer needs; no dates, so the
    # file is the same byte for byte on every run.
    with matplotlib.rc_context({"pdf.fonttype": 42}):
        with PdfPages(text_pages, metadata={"CreationDate": None, "Producer": "mmembed"}) as pdf:
            for title, body in FIELD_GUIDE[:2]:
                pdf.savefig(_guide_figure(title, body))
    document = pdfium.PdfDocument(text_pages.getvalue())
    width, height = (inches * 72 for inches in PDF_PAGE)
    page = document.new_page(width, height)
    scan = pdfium.PdfImage.new(document)
    scan.load_jpeg(io.BytesIO(_scanned_jpeg(_guide_figure(*FIELD_GUIDE[2]))), inline=True)
    scan.set_matrix(pdfium.PdfMatrix().scale(width, height))
    page.insert_obj(scan)
    page.gen_content()
    saved = io.BytesIO()
    document.save(saved)
    document.close()
    # PDFium writes a random file /ID: one taken from the content keeps the file reproducible
    # (same length, so the cross-reference offsets stay right).
    data = saved.getvalue()
    file_id = hashlib.md5(data.split(b"trailer")[0]).hexdigest().upper().encode()
    path.write_bytes(
        re.sub(rb"/ID\[<[0-9A-F]{32}><[0-9A-F]{32}>\]", b"/ID[<%s><%s>]" % (file_id, file_id), data)
    )
    return path


def _entry(path: str, modality: str, caption: str, source: str, license: str) -> dict:
    return {
        "path": path,
        "modality": modality,
        "caption": caption,
        "source": source,
        "license": license,
    }


def _write_csv(path: Path, columns: list[str], rows: list[tuple]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows(rows)


def _write_json(path: Path, data: object) -> None:
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def build(out_dir: Path = ASSETS_DIR) -> list[dict]:
    """Write every asset and the manifest; returns the manifest entries."""
    out_dir.mkdir(parents=True, exist_ok=True)
    entries = write_photos(out_dir)
    entries += [write_video(out_dir), write_table(out_dir), write_document(out_dir)]
    _write_json(out_dir / "manifest.json", entries)
    write_pdf(out_dir)
    total = sum((out_dir / entry["path"]).stat().st_size for entry in entries)
    logger.info("wrote %d assets, %.0f kB, to %s", len(entries), total / 1024, out_dir)
    return entries


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ASSETS_DIR, help="output folder")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    build(args.out)


if __name__ == "__main__":
    main()
