"""mmembed-mini on real photos, a video, a table and a document: each caption finds its item."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

import mmembed

ASSETS = Path(__file__).resolve().parent.parent / "assets"


def load_manifest() -> tuple[list, list[str]]:
    entries = json.loads((ASSETS / "manifest.json").read_text())
    items = []
    for entry in entries:
        path = ASSETS / entry["path"]
        kinds = {"image": mmembed.Image, "video": mmembed.Video, "table": mmembed.Table}
        if entry["modality"] == "document":
            items.append(mmembed.Document.from_json(path))
        else:
            items.append(kinds[entry["modality"]](str(path)))
    return items, [entry["caption"] for entry in entries]


def test_every_caption_ranks_its_own_item_first(mini):
    items, captions = load_manifest()
    assert {type(item).__name__ for item in items} == {"Image", "Video", "Table", "Document"}
    scores = mini.similarity(mini.encode(captions), mini.encode(items))  # (captions, items)
    ranks = [int((row > row[i]).sum()) for i, row in enumerate(scores)]
    wrong = {captions[i]: captions[int(scores[i].argmax())] for i, r in enumerate(ranks) if r}
    assert not wrong, f"caption -> item it ranked first instead: {wrong}"
    assert np.all(np.diag(scores) > 0.2)
