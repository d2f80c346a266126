"""PDFs and page images in the index: pages as items, routes, results, updates, bad input.

PDFs are written by real writers: matplotlib's PDF backend (text pages with a text layer) and
pypdfium2 (blank, tiny, huge and many-page documents); the encrypted one is a matplotlib PDF
with a standard-security /Encrypt dictionary appended, which PDFium refuses without its
password.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pypdfium2 as pdfium
import pytest

import mmembed
from mmembed.errors import InputError, UsageError
from mmembed.retrieval import Index
from mmembed.retrieval.decode import decode_item
from mmembed.retrieval.pages import PageRouting, expand_pages
from mmembed.retrieval.walk import Item, scan

ROOT = Path(__file__).resolve().parent.parent
GUIDE = ROOT / "assets/documents/field_guide.pdf"  # 2 pages with a text layer, 1 scanned


def text_pdf(path: Path, pages: list[str]) -> Path:
    """A PDF with a text layer, one page per text (matplotlib, embedded TrueType fonts)."""
    import matplotlib
    from matplotlib.backends.backend_pdf import PdfPages
    from matplotlib.figure import Figure

    with matplotlib.rc_context({"pdf.fonttype": 42}), PdfPages(path) as document:
        for body in pages:
            figure = Figure(figsize=(8.27, 11.69))
            for number, line in enumerate(textwrap.wrap(body, 80)):
                figure.text(0.1, 0.9 - 0.022 * number, line, fontsize=11)
            document.savefig(figure)
    return path


def pdfium_pdf(path: Path, sizes: list[tuple[float, float]]) -> Path:
    """A PDF of blank pages of the given sizes in points (pypdfium2)."""
    document = pdfium.PdfDocument.new()
    for width, height in sizes:
        document.new_page(width, height).close()
    document.save(str(path))
    document.close()
    return path


def encrypted(data: bytes) -> bytes:
    """``data`` with an incremental update that adds a standard-security /Encrypt dictionary
    whose user password is not empty: PDFium asks for the password."""
    startxref = int(re.findall(rb"startxref\s+(\d+)", data)[-1])
    size = int(re.findall(rb"/Size (\d+)", data)[-1])
    root = re.findall(rb"/Root (\d+ 0 R)", data)[-1]
    entry = b"%d 0 obj\n<< /Filter /Standard /V 1 /R 2 /O <%s> /U <%s> /P -4 >>\nendobj\n" % (
        size,
        b"11" * 32,
        b"22" * 32,
    )
    xref = b"xref\n%d 1\n%010d 00000 n \n" % (size, len(data))
    trailer = b"trailer\n<< /Size %d /Root %s /Prev %d /Encrypt %d 0 R /ID [<%s> <%s>] >>\n" % (
        size + 1,
        root,
        startxref,
        size,
        b"ab" * 16,
        b"ab" * 16,
    )
    return data + entry + xref + trailer + b"startxref\n%d\n%%%%EOF\n" % (len(data) + len(entry))


def page_items(path: Path, route: str = "auto", model_route: str | None = "reader") -> list[Item]:
    return expand_pages(scan([path]), PageRouting(route, lambda: model_route))


def test_bad_pdfs_are_skipped_with_a_reason_and_a_bad_page_skips_only_itself(tmp_path):
    good = text_pdf(tmp_path / "good.pdf", ["A first page about lighthouses and their keepers."])
    (tmp_path / "locked.pdf").write_bytes(encrypted(good.read_bytes()))
    (tmp_path / "truncated.pdf").write_bytes(good.read_bytes()[:600])
    (tmp_path / "not-a.pdf").write_text("this is a text file named .pdf\n")
    empty = pdfium.PdfDocument.new()
    empty.save(str(tmp_path / "empty.pdf"))
    empty.close()
    pdfium_pdf(tmp_path / "many.pdf", [(100, 100)] * 10_000)
    reasons = {Path(item.path).name: item.problem for item in page_items(tmp_path)}
    assert reasons["locked.pdf"] == "encrypted PDF (needs a password)"
    assert reasons["truncated.pdf"].startswith("not a readable PDF")
    assert reasons["not-a.pdf"].startswith("not a readable PDF")
    assert reasons["empty.pdf"].startswith("not a readable PDF (no pages")
    assert reasons["many.pdf"].startswith("the PDF has 10000 pages, more than the 5000")
    assert reasons["good.pdf"] == ""  # its one page
    # A tiny and a poster-sized page fail on their own; the page between them renders.
    (tmp_path / "mixed").mkdir()
    mixed = pdfium_pdf(tmp_path / "mixed" / "mixed.pdf", [(0.1, 0.1), (595, 842), (20000, 20000)])
    pages = page_items(mixed.parent, route="reader")
    assert [item.id.rsplit("#", 1)[1] for item in pages] == ["page=1", "page=2", "page=3"]
    outcomes = []
    for item in pages:
        try:
            outcomes.append(type(decode_item(item).input).__name__)
        except InputError as error:
            outcomes.append(error.reason)
    assert outcomes[0] == "page 1: the page is empty (0.1x0.1 pt)"
    assert outcomes[1] == "Page"
    assert re.fullmatch(r"page 3: 20000x20000 pt is \d+ Mpx at 150 dpi, over .*", outcomes[2])


def test_auto_route_reads_the_text_layer_where_it_has_words(tmp_path):
    pages = page_items(GUIDE)
    assert [(item.page, item.route) for item in pages] == [(1, "text"), (2, "text"), (3, "reader")]
    assert pages[0].id == f"{GUIDE}#page=1" and pages[0].metadata == {"page": 1, "route": "text"}
    first = decode_item(pages[0])
    assert isinstance(first.input, mmembed.Document) and "sourdough" in first.snippet
    scanned = decode_item(pages[2])
    assert isinstance(scanned.input, mmembed.Page) and scanned.snippet == ""
    assert scanned.input.source.size == (1241, 1754)  # A4 (595 x 842 pt) at 150 dpi
    # Text only: the scanned page has nothing to read; a model without a page route likewise.
    assert page_items(GUIDE, "text")[2].problem.startswith("page 3: no text layer")
    assert page_items(GUIDE, "auto", None)[2].problem == (
        "page 3: no text layer, and the model cannot read page images"
    )


def test_pages_are_found_by_their_words_updated_and_removed(mini, tmp_path):
    folder = tmp_path / "docs"
    folder.mkdir()
    shutil.copy(GUIDE, folder / "guide.pdf")
    bees = "Beekeepers puff cool smoke into the hive before they open it, so the bees stay calm."
    text_pdf(folder / "notes.pdf", [bees, "x"])
    index = Index.build([folder], mini, tmp_path / "index", num_workers=0)
    report = index.last_update
    # notes.pdf's second page holds one letter: no real text, so the line reader reads it.
    assert (report.added, report.embedded, len(index), report.skipped) == (5, 5, 5, [])
    assert index.generation.rows([4])[4]["metadata"] == {"page": 2, "route": "reader"}
    queries = [
        "how often should a sourdough starter be fed",
        "why does the sea have two high tides each day",
        "how to mend a punctured inner tube",  # the scanned page: read by the line reader
        "calming bees with smoke",
    ]
    hits = [found[0] for found in index.search(queries, k=1)]
    assert [(Path(hit.path).name, hit.page, hit.route) for hit in hits] == [
        ("guide.pdf", 1, "text"),
        ("guide.pdf", 2, "text"),
        ("guide.pdf", 3, "reader"),
        ("notes.pdf", 1, "text"),
    ]
    assert hits[0].to_dict()["page"] == 1 and hits[0].to_dict()["route"] == "text"
    # The PDF changes: one page fewer. Its pages are re-embedded, the last one leaves.
    text_pdf(folder / "notes.pdf", [bees + " They wear veils and gloves."])
    report = Index.build([folder], mini, tmp_path / "index", num_workers=0).last_update
    assert (report.updated, report.removed, report.embedded, report.unchanged) == (1, 1, 1, 3)
    shutil.copy(GUIDE, folder / "notes.pdf")  # now three pages, two of them known content
    index = Index.build([folder], mini, tmp_path / "index", num_workers=0)
    assert (index.last_update.added, index.last_update.updated) == (2, 1)
    (folder / "guide.pdf").write_bytes(b"%PDF-1.7 damaged")  # broken now: its pages leave
    index = Index.build([folder], mini, tmp_path / "index", num_workers=0)
    assert index.last_update.removed == 3 and len(index) == 3
    assert [(Path(row["path"]).name, row["reason"]) for row in index.skipped()] == [
        ("guide.pdf", "not a readable PDF (Data format error)")
    ]
    # Integrity covers page rows: a damaged metadata file is found and repaired.
    Index.open(tmp_path / "index", verify=True)
    meta = next((tmp_path / "index").glob("gen-*/meta.sqlite"))
    meta.write_bytes(meta.read_bytes()[:-100] + b"\0" * 100)
    repaired = Index.build([folder], mini, tmp_path / "index", num_workers=0)
    assert repaired.last_update.repaired and len(repaired) == 3
    assert {row["id"] for row in repaired.generation.all_rows()} == {
        f"{folder / 'notes.pdf'}#page={n}" for n in (1, 2, 3)
    }


def test_typed_inputs_and_page_images_in_build_and_add(mini, tmp_path):
    page = mmembed.Page.render("Lighthouse keepers trimmed the wicks every evening at dusk.")
    table = pd.DataFrame({"planet": ["Mars", "Venus"], "moons": [2, 0]})
    photo = ROOT / "assets/images/cat.jpg"
    sources = [
        page,
        mmembed.Image(str(photo)),
        mmembed.Table(table),
        mmembed.Document(
            ["Tea is grown on hillsides.", mmembed.Image(np.zeros((8, 8, 3), np.uint8))]
        ),
        mmembed.Text("a note about orange marmalade"),
    ]
    index = Index.build(sources, mini, tmp_path / "index", num_workers=0)
    rows = {row["modality"]: row for row in index.generation.all_rows()}
    assert sorted(rows) == ["document", "image", "page", "table", "text"]
    assert rows["image"]["id"] == str(photo) and rows["page"]["id"].startswith("page:")
    assert rows["page"]["metadata"] == {"route": "reader"}
    hit = index.search("who trimmed the lighthouse wicks", k=1)[0][0]
    assert hit.modality == "page"
    # The same picture again is the same item; another one is added.
    other = mmembed.Page(np.asarray(page.source)[:, ::-1].copy())
    # A page route by name must be the model's own: mini reads pages with its line reader.
    with pytest.raises(UsageError, match="reads pages by 'reader' \\(load it with page='ocr'\\)"):
        Index.build([GUIDE], mini, tmp_path / "other", pdf_route="ocr")
    again = index.add([page])
    assert (again.added, again.embedded, again.unchanged) == (0, 0, 5)
    assert index.add([other]).added == 1 and len(index) == 6


def test_cli_pages_glob_search_json_text_and_html(cli, tmp_path):
    folder = tmp_path / "docs"
    (folder / "shots").mkdir(parents=True)
    shutil.copy(GUIDE, folder / "guide.pdf")
    shot = mmembed.Page.render("Store the kayak upside down, out of the sun, on padded racks.")
    shot.source.save(folder / "shots" / "kayak.png")
    index = tmp_path / "index"
    code, out, err = cli("index", folder, "--pages", f"{folder}/shots/*.png", "--out", index)
    assert code == 0, err
    assert out.startswith(f"4 items in {index} (4 added,")
    code, out, _ = cli("search", index, "how to store a kayak", "-k", "1", "--json")
    hit = json.loads(out)[0]
    assert (hit["modality"], hit["page"], hit["route"]) == ("page", None, "reader")
    assert hit["path"] == str(folder / "shots" / "kayak.png")
    code, out, _ = cli("search", index, "feed the sourdough starter once a day", "-k", "1")
    first, line = out.splitlines()[:2]
    assert first.endswith(f"page      {folder / 'guide.pdf'}#page=1  (text)")
    assert "Feed it once a day" in line or "feed" in line.lower()
    html = tmp_path / "results.html"
    code, out, _ = cli("search", index, "why are there two tides", "-k", "2", "--html", html)
    page = html.read_text()
    assert f'href="{(folder / "guide.pdf").as_uri()}#page=2"' in page
    assert "guide.pdf, page 2" in page and "page &middot; text" in page
    # The line sharing most words with the query ("why", "two", "tides"): here the title.
    assert '<div class="snippet">Why the sea has two tides a day</div>' in page


MEMORY_SCRIPT = """
import io, resource, sys
import numpy as np, pypdfium2 as pdfium
from PIL import Image
from mmembed.retrieval.decode import decode_item
from mmembed.retrieval.pages import PageRouting, expand_pages
from mmembed.retrieval.walk import scan

path = sys.argv[1]
document = pdfium.PdfDocument.new()
rng = np.random.default_rng(0)
for number in range(500):  # every page its own 300x300 px noise scan: a 500-page, ~25 MB PDF
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (300, 300), np.uint8)).save(buffer, "JPEG", quality=90)
    page = document.new_page(144, 144)
    scan_image = pdfium.PdfImage.new(document)
    scan_image.load_jpeg(io.BytesIO(buffer.getvalue()), inline=True)
    scan_image.set_matrix(pdfium.PdfMatrix().scale(144, 144))
    page.insert_obj(scan_image)
    page.gen_content()
    page.close()
document.save(path)
document.close()
del document
items = expand_pages(scan([path]), PageRouting("reader", lambda: "reader"))
peaks = []
for number, item in enumerate(items):
    decoded = decode_item(item)
    if number in (49, 499):
        peaks.append(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
print(len(items), peaks[0], peaks[1], type(decoded.input).__name__)
"""


def test_a_500_page_pdf_streams_page_by_page_in_bounded_memory(tmp_path):
    path = tmp_path / "big.pdf"
    run = subprocess.run(
        [sys.executable, "-c", MEMORY_SCRIPT, str(path)], capture_output=True, text=True
    )
    assert run.returncode == 0, run.stderr
    pages, after_50, after_500, kind = run.stdout.split()
    assert path.stat().st_size > 20e6 and (pages, kind) == ("500", "Page")
    # Peak memory (KiB) after 500 pages: no more than after 50 plus a few pages' pixels.
    assert int(after_500) - int(after_50) < 20_000, (after_50, after_500)


def test_in_memory_inputs_are_named_by_their_content(tmp_path):
    from mmembed.retrieval.pages import item_of_input

    photo = tmp_path / "segment.jpg"
    shutil.copy(ROOT / "assets/images/cat.jpg", photo)
    document = mmembed.Document(["a note", mmembed.Image(str(photo))])
    first = item_of_input(document)
    assert first.id.startswith("document:") and item_of_input(document).id == first.id
    shutil.copy(ROOT / "assets/images/coffee.jpg", photo)  # the file a segment names changes
    assert item_of_input(document).id != first.id
    picture = mmembed.Page.render("a page").source
    assert item_of_input(mmembed.Page(picture)).id != item_of_input(mmembed.Image(picture)).id
    on_disk = item_of_input(mmembed.Page(str(photo)))  # a path stays a file item, as a page
    assert (on_disk.id, on_disk.modality.value) == (str(photo), "page")
