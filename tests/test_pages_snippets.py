"""A page read by the model (the line reader here; OCR goes the same way) shows the text it
read in results, like a page with a text layer: search's text output, ``--json``, ``--html``
and the ``mmembed serve`` page. The lines come from the same reading as the embedded tokens.

Pages: the assets' field guide, whose third page is a scan (no text layer), and a page image
rendered by ``mmembed.Page.render`` marked with ``--pages``.
"""

from __future__ import annotations

import json
import shutil
import urllib.parse
import urllib.request
from pathlib import Path

import numpy as np
from debian import needs

import mmembed
from mmembed.retrieval.decode import decode_item
from mmembed.retrieval.pages import PageRouting, expand_pages, page_planner
from mmembed.retrieval.walk import scan

ROOT = Path(__file__).resolve().parent.parent
GUIDE = ROOT / "assets/documents/field_guide.pdf"
TYRE = "Take the wheel off the bicycle and lever one side of the tyre over the rim."
KAYAK = "Store the kayak upside down, out of the sun, on padded racks."
KAYAK_LINE = "Store the kayak upside down, out of the sun, on"  # Page.render's first line


def test_a_read_page_keeps_its_lines_and_its_vector(mini):
    scanned = expand_pages(scan([GUIDE]), PageRouting("auto", lambda: "reader"))[2]
    decoded = decode_item(scanned)
    assert (scanned.route, decoded.snippet) == ("reader", "")  # no text layer to show
    planned = page_planner(mini, mini.document_instruction)(decoded)
    assert planned.snippet.splitlines()[:2] == ["Repairing a bicycle puncture", TYRE]
    # The same reading made the tokens: the vector is encode(Page)'s own.
    np.testing.assert_array_equal(mini.encode([planned.input]), mini.encode([decoded.input]))


@needs("tesseract-ocr", "tesseract-ocr-eng")
def test_an_ocr_page_keeps_the_lines_tesseract_read():
    ocr_mini = mmembed.load("mmembed-mini", page="ocr")
    scanned = expand_pages(scan([GUIDE]), PageRouting("auto", lambda: "ocr"))[2]
    decoded = decode_item(scanned)
    planned = page_planner(ocr_mini, ocr_mini.document_instruction)(decoded)
    lines = planned.snippet.splitlines()
    assert lines[0] == "Repairing a bicycle puncture" and len(lines) >= 5, lines
    np.testing.assert_array_equal(
        ocr_mini.encode([planned.input]), ocr_mini.encode(decoded.input)[None]
    )


def test_results_show_what_the_reader_read(cli, mini, tmp_path):
    folder, shots, index = tmp_path / "docs", tmp_path / "shots", tmp_path / "index"
    folder.mkdir()
    shots.mkdir()
    shutil.copy(GUIDE, folder / "guide.pdf")
    mmembed.Page.render(KAYAK).source.save(shots / "kayak.png")
    code, out, err = cli("index", folder, "--pages", str(shots / "*.png"), "--out", index)
    assert code == 0, err

    query = "how do I fix a flat bicycle tyre"
    code, out, _ = cli("search", index, query, "-k", "1")
    first, line = out.splitlines()[:2]
    assert first.endswith(f"page      {folder / 'guide.pdf'}#page=3  (reader)")
    assert line.strip() == TYRE  # the read line sharing most words with the query
    code, out, _ = cli("search", index, "where should I keep my kayak", "-k", "1")
    first, line = out.splitlines()[:2]
    assert first.endswith(f"page      {shots / 'kayak.png'}  (reader)")
    assert line.strip() == KAYAK_LINE

    code, out, _ = cli("search", index, query, "-k", "1", "--json")
    hit = json.loads(out)[0]
    assert (hit["page"], hit["route"]) == (3, "reader")
    assert hit["snippet"].startswith(f"Repairing a bicycle puncture\n{TYRE}\n")

    html = tmp_path / "results.html"
    code, out, _ = cli("search", index, "where should I keep my kayak", "-k", "2", "--html", html)
    page = html.read_text()
    assert f'<a href="{(shots / "kayak.png").as_uri()}">kayak.png</a>' in page
    assert f'<div class="snippet">{KAYAK_LINE}</div>' in page

    from serve_helpers import running

    from mmembed.serve import ServeCfg, build_app

    app = build_app(ServeCfg(), index, embedder=mini, use_onnx=False)
    with running(app) as url:
        address = f"{url}/?" + urllib.parse.urlencode({"q": query, "k": 1})
        with urllib.request.urlopen(address, timeout=60) as response:
            served = response.read().decode()
    assert "guide.pdf, page 3" in served and f'<div class="snippet">{TYRE}</div>' in served
