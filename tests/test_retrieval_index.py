"""Index.build / open / add / remove / search with mmembed-mini on the shipped assets."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import mmembed
from mmembed.embedder import Embedder, EmbedderCfg
from mmembed.retrieval import Index, Item

ASSETS = Path(__file__).resolve().parents[1] / "assets"
MANIFEST = json.loads((ASSETS / "manifest.json").read_text())
CAPTIONS = {entry["path"]: entry["caption"] for entry in MANIFEST}
BY_MODALITY = {entry["modality"]: entry["path"] for entry in MANIFEST}
# Every file is an item, the photo and table a document embeds too, and each page of a PDF;
# manifest.json gives the captions as metadata. assets/photos/ holds captions of photos other
# packages ship, not items.
NOT_ITEMS = shutil.ignore_patterns("photos")
FILES = sorted(
    p.relative_to(ASSETS).as_posix()
    for p in ASSETS.rglob("*")
    if p.is_file() and p.relative_to(ASSETS).parts[0] != "photos"
)
FILES.remove("manifest.json")
PDF_PAGES = {"documents/field_guide.pdf": 3}
ITEMS = sorted(
    f"{name}#page={page}" for name, pages in PDF_PAGES.items() for page in range(1, pages + 1)
) + [name for name in FILES if name not in PDF_PAGES]
ITEMS.sort()
N_ITEMS = len(ITEMS)
ASSETS_MIN_HITS_AT_1 = 8  # as in tests/test_assets_retrieval.py (measured: 9 of 12)
# Files with the same bytes are embedded once (images/astronaut.jpg is also the document's
# photo); the pages of a PDF are distinct content.
N_DISTINCT = len({(ASSETS / item).read_bytes() for item in FILES if item not in PDF_PAGES}) + sum(
    PDF_PAGES.values()
)


def copy_assets(target: Path) -> Path:
    shutil.copytree(ASSETS, target, ignore=NOT_ITEMS)
    return target


@pytest.fixture(scope="module")
def built(tmp_path_factory, mini):
    root = tmp_path_factory.mktemp("retrieval")
    assets = copy_assets(root / "assets")
    return assets, Index.build([assets], mini, root / "index")


def test_build_indexes_every_asset_with_manifest_metadata(built):
    assets, index = built
    assert len(index) == N_ITEMS
    assert index.skipped() == []
    rows = {
        Path(row["id"]).relative_to(assets).as_posix(): row for row in index.generation.all_rows()
    }
    assert sorted(rows) == ITEMS
    for path, caption in CAPTIONS.items():
        assert rows[path]["metadata"]["caption"] == caption
    for entry in MANIFEST:
        assert rows[entry["path"]]["modality"] == entry["modality"]
    assert index.info["vectors"]["kind"] == "flat" and index.info["dim"] == 384


def test_vectors_equal_direct_encode(built, mini):
    assets, index = built
    rows = {row["path"]: row["pos"] for row in index.generation.all_rows()}
    kinds = {"image": mmembed.Image, "video": mmembed.Video, "table": mmembed.Table}
    for modality, kind in kinds.items():
        path = str(assets / BY_MODALITY[modality])
        direct = mini.encode(kind(path))
        np.testing.assert_allclose(index.generation.vectors[rows[path]], direct, atol=1e-5)
    path = str(assets / BY_MODALITY["document"])
    document = mini.encode(mmembed.Document.from_json(path))
    np.testing.assert_allclose(index.generation.vectors[rows[path]], document, atol=1e-5)


def test_text_and_image_queries_find_their_item(built, mini):
    assets, index = built
    results = index.search(list(CAPTIONS.values()), k=3)
    # The index returns what brute force over its vectors returns ...
    paths = {row["pos"]: row["path"] for row in index.generation.all_rows()}
    brute = mini.encode(list(CAPTIONS.values())) @ np.asarray(index.generation.vectors).T
    for query, hits in enumerate(results):
        assert hits[0].path == paths[int(brute[query].argmax())]
    # ... and captions find their item as often as tests/test_assets_retrieval.py requires of
    # mmembed-mini (the astronaut and galaxies have no ImageNet class; the video ranks 2nd).
    found = [
        path
        for path, hits in zip(CAPTIONS, results, strict=True)
        if hits[0].path == str(assets / path)
    ]
    assert len(found) >= ASSETS_MIN_HITS_AT_1, sorted(set(CAPTIONS) - set(found))


def test_search_results_shape_and_modality_filter(built):
    _, index = built
    results = index.search(["a rocket", "a cat"], k=4, modalities={"video", "table"})
    assert len(results) == 2
    assert [len(ids) for ids in results.ids] == [3, 3]  # a video and two tables
    assert {hit.modality for hits in results for hit in hits} == {"video", "table"}
    assert all(scores == sorted(scores, reverse=True) for scores in results.scores)
    assert results.metadata[0][0]["caption"]
    assert len(index.search("a rocket", k=50)[0]) == N_ITEMS


def test_query_modality_the_model_cannot_embed_is_a_clear_error(built, mini):
    _, index = built
    # mmembed-mini reads pages; the same towers without its page tower cannot.
    no_pages = Embedder(
        EmbedderCfg(name=mini.name),
        towers={"text": mini.towers["text"], "image": mini.towers["image"]},
        temporal=mini.temporal,
    )
    with pytest.raises(mmembed.InputError, match="cannot embed page queries"):
        Index.open(index.path, no_pages).search(mmembed.Page(ASSETS / "images/cat.jpg"))


def test_incremental_rerun_embeds_only_changes(tmp_path, mini):
    assets = copy_assets(tmp_path / "assets")
    (assets / "manifest.json").unlink()
    first = Index.build([assets], mini, tmp_path / "index")
    assert first.last_update.added == N_ITEMS and first.last_update.embedded == N_DISTINCT
    assert first.last_update.reused == N_ITEMS - N_DISTINCT  # the counts add up in the summary

    again = Index.build([assets], mini, tmp_path / "index")
    assert (again.last_update.embedded, again.last_update.unchanged) == (0, N_ITEMS)
    assert again.generation.name == first.generation.name  # nothing to write

    (assets / "images/flower.jpg").unlink()
    (assets / "notes.md").write_text("# Sofa\nA cat sleeping on a sofa.")
    (assets / "tables/planets.csv").write_text("planet,moons\nEarth,1\nMars,2\n")
    (assets / "images/cat.jpg").touch()  # new mtime, same content: not re-embedded
    update = Index.build([assets], mini, tmp_path / "index").last_update
    assert (update.added, update.updated, update.removed, update.embedded) == (1, 1, 1, 2)
    index = Index.open(tmp_path / "index", mini)
    assert len(index) == N_ITEMS
    assert index.search("a cat sleeping on a sofa", k=1)[0][0].path == str(assets / "notes.md")


def test_bad_files_are_skipped_with_a_reason(tmp_path, mini):
    assets = copy_assets(tmp_path / "assets")
    (assets / "broken.jpg").write_bytes(b"not a jpeg")
    (assets / "clip.mp4").write_bytes(b"\x00" * 64)
    (assets / "empty.md").write_text("   ")
    (assets / "archive.zip").write_bytes(b"PK")
    (assets / "documents/bad.json").write_text('{"segments": [{"image": "missing.jpg"}]}')
    index = Index.build([assets], mini, tmp_path / "index")
    reasons = {Path(row["path"]).name: row["reason"] for row in index.skipped()}
    assert set(reasons) == {"broken.jpg", "clip.mp4", "empty.md", "archive.zip", "bad.json"}
    assert "unsupported file type .zip" in reasons["archive.zip"]
    assert "cannot decode image" in reasons["broken.jpg"]
    assert "empty" in reasons["empty.md"]
    assert len(index) == N_ITEMS


def test_manifests_add_and_remove(tmp_path, mini):
    rows = pd.DataFrame(
        {
            "id": ["q1", "q2", "q3"],
            "text": ["a cat on a sofa", "rocket launch at dusk", "espresso"],
            "lang": ["en", "en", "it"],
        }
    )
    rows.to_csv(tmp_path / "texts.csv", index=False)
    pd.DataFrame(
        {"path": ["images/cat.jpg", "images/rocket.jpg"], "year": [2001, 2015]}
    ).to_parquet(tmp_path / "images.parquet")
    shutil.copytree(ASSETS / "images", tmp_path / "images")
    index = Index.build(
        [tmp_path / "texts.csv", tmp_path / "images.parquet"], mini, tmp_path / "ix"
    )
    assert len(index) == 5
    hit = index.search("a cat on a sofa", k=1, modalities=["text"])[0][0]
    assert (hit.id, hit.path, hit.metadata) == ("q1", None, {"lang": "en"})
    assert index.search(mmembed.Image(tmp_path / "images/rocket.jpg"), k=1)[0][0].metadata == {
        "year": 2015
    }

    report = index.add([Item.from_text("a tabby cat", id="q4"), tmp_path / "images/coffee.jpg"])
    assert (report.added, report.embedded, len(index)) == (2, 2, 7)
    report = index.remove(["q2", str(tmp_path / "images/cat.jpg")])
    assert (report.removed, len(index)) == (2, 5)
    assert "q2" not in {row["id"] for row in index.generation.all_rows()}


def test_matryoshka_binary_index(tmp_path, mini):
    assets = copy_assets(tmp_path / "assets")
    index = Index.build([assets], mini, tmp_path / "index", dim=128, index_type="binary")
    assert index.info["dim"] == 128 and index.info["vectors"]["kind"] == "binary"
    assert (index.generation.folder / "codes.faiss").is_file()
    reopened = Index.open(tmp_path / "index", mini)
    hits = reopened.search(mmembed.Image(assets / "images/officer.jpg"), k=3)[0]
    assert hits[0].path == str(assets / "images/officer.jpg")
    exact = mini.encode(mmembed.Image(assets / "images/officer.jpg"), dim=128)
    assert hits[0].score == pytest.approx(float(exact @ exact), abs=1e-4)
    with pytest.raises(ValueError, match="built with"):
        Index.build([assets], mini, tmp_path / "index", dim=64)
