"""A re-run of ``mmembed index`` reads pages the way the index was built: ``--pdf-route`` and
``--pages`` are recorded in ``info.json`` and reused when a re-run does not give them; a
different value re-embeds what it changes, or is refused in one line.

The PDF is the assets' field guide (two pages with a text layer, one scanned page); the page
images are rendered by ``mmembed.Page.render`` and live outside the indexed folder, so only
their glob brings them in.
"""

from __future__ import annotations

import json
import shlex
import shutil
from pathlib import Path

import pytest

import mmembed
from mmembed.errors import UsageError
from mmembed.retrieval import Index

ROOT = Path(__file__).resolve().parent.parent
GUIDE = ROOT / "assets/documents/field_guide.pdf"


def summary(out: str) -> str:
    """The counts of an index run's first line: "(0 added, ... unchanged; embedded 0"."""
    return out.splitlines()[0].split(" (", 1)[1].split(", 0 resumed")[0]


def rows_by_name(index_dir: Path) -> dict[str, tuple[str, str | None]]:
    """``name#page`` -> (modality, route) of every row of the index."""
    index = Index.open(index_dir)
    try:
        return {
            Path(row["id"].split("#")[0]).name + row["id"][len(row["id"].split("#")[0]) :]: (
                row["modality"],
                row["metadata"].get("route"),
            )
            for row in index.generation.all_rows()
        }
    finally:
        index.close()


def test_a_rerun_reads_pages_as_the_index_was_built(cli, tmp_path):
    folder, shots, index = tmp_path / "docs", tmp_path / "shots", tmp_path / "index"
    folder.mkdir()
    shots.mkdir()
    shutil.copy(GUIDE, folder / "guide.pdf")
    for name, words in [
        ("kayak", "Store the kayak upside down on padded racks."),
        ("tent", "Dry the tent before you pack it away for winter."),
    ]:
        mmembed.Page.render(words).source.save(shots / f"{name}.png")
    pattern = str(shots / "*.png")
    code, out, err = cli("index", folder, "--pages", pattern, "--pdf-route", "text", "--out", index)
    assert code == 0, err
    built = {
        "guide.pdf#page=1": ("page", "text"),
        "guide.pdf#page=2": ("page", "text"),
        "kayak.png": ("page", "reader"),
        "tent.png": ("page", "reader"),
    }
    assert rows_by_name(index) == built  # page 3 has no text layer: skipped by --pdf-route text
    info = json.loads(next(index.glob("gen-*/info.json")).read_text())
    assert (info["pdf_route"], info["pages"]) == ("text", [pattern])

    # The plain refresh: the same route and globs, said on stderr; nothing is embedded again.
    code, out, err = cli("index", folder, "--out", index)
    assert code == 0, err
    assert f"as {index} was built: --pdf-route text --pages {shlex.quote(pattern)}" in err
    assert summary(out) == "0 added, 0 updated, 0 removed, 4 unchanged; embedded 0"
    assert rows_by_name(index) == built

    # The glob is matched again: a new shot joins as a page, a deleted one leaves.
    (shots / "tent.png").unlink()
    mmembed.Page.render("Wax the skis on a warm day.").source.save(shots / "skis.png")
    code, out, err = cli("index", folder, "--out", index)
    assert summary(out) == "1 added, 0 updated, 1 removed, 3 unchanged; embedded 1"
    assert rows_by_name(index)["skis.png"] == ("page", "reader") and "tent.png" not in err

    # Another route, given: the pages it reads another way are embedded again (page 3 now).
    code, out, err = cli("index", folder, "--pdf-route", "auto", "--out", index)
    assert code == 0, err
    assert "--pdf-route text -> auto" in err
    assert summary(out) == "1 added, 0 updated, 0 removed, 4 unchanged; embedded 1"
    assert rows_by_name(index)["guide.pdf#page=3"] == ("page", "reader")
    assert f"as {index} was built: --pages {shlex.quote(pattern)}" in err  # only the globs
    info = json.loads(next(index.glob("gen-*/info.json")).read_text())
    assert (info["pdf_route"], info["pages"]) == ("auto", [pattern])

    # A route the index's page tower cannot give: refused in one line, nothing changes.
    code, out, err = cli("index", folder, "--pdf-route", "ocr", "--out", index)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "built with page_route 'reader', not 'ocr'" in err

    # Other globs, given: the shots they no longer name are embedded again, as images.
    code, out, err = cli("index", folder, "--pages", str(shots / "skis.png"), "--out", index)
    assert code == 0, err
    assert summary(out) == "0 added, 0 updated, 0 removed, 5 unchanged; embedded 1"
    assert rows_by_name(index)["kayak.png"] == ("image", None)
    assert rows_by_name(index)["skis.png"] == ("page", "reader")


def test_index_build_reuses_the_recorded_route(mini, tmp_path):
    folder = tmp_path / "docs"
    folder.mkdir()
    shutil.copy(GUIDE, folder / "guide.pdf")
    first = Index.build([folder], mini, tmp_path / "index", pdf_route="text", num_workers=0)
    assert len(first) == 2 and first.info["pdf_route"] == "text"
    again = Index.build([folder], mini, tmp_path / "index", num_workers=0)
    assert (again.last_update.added, again.last_update.embedded, len(again)) == (0, 0, 2)
    assert again.info["pdf_route"] == "text"


def test_index_add_joins_page_globs_to_the_recorded_ones(mini, tmp_path):
    shots = tmp_path / "shots"
    shots.mkdir()
    mmembed.Page.render("Oil the chain after a wet ride.").source.save(shots / "chain.png")
    mmembed.Page.render("Check the brake pads each month.").source.save(shots / "brakes.png")
    index = Index.build([], mini, tmp_path / "index", pages=[shots / "chain.png"], num_workers=0)
    index.add([], pages=[shots / "brakes.png"], num_workers=0)
    assert index.info["pages"] == [str(shots / "chain.png"), str(shots / "brakes.png")]
    assert {row["modality"] for row in index.generation.all_rows()} == {"page"} and len(index) == 2

    # A recorded glob whose files are gone matches nothing and is no error; a new one must match.
    (shots / "chain.png").unlink()
    mmembed.Page.render("Pump the tyres to the pressure on the wall.").source.save(
        shots / "tyres.png"
    )
    report = index.add([], pages=[shots / "tyres.png"], num_workers=0)
    assert (report.added, len(index)) == (1, 3)  # add keeps what it is not given
    with pytest.raises(UsageError, match="--pages '.*missing.png' matches no file"):
        index.add([], pages=[shots / "missing.png"], num_workers=0)
