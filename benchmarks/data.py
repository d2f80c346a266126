"""Benchmark inputs built from what ships offline: the repo's assets and stdlib docstrings."""

from __future__ import annotations

import inspect
import json
import shutil
from pathlib import Path

from PIL import Image

ASSETS = Path(__file__).resolve().parent.parent / "assets"


def manifest() -> list[dict]:
    return json.loads((ASSETS / "manifest.json").read_text())


def image_paths() -> list[Path]:
    return [ASSETS / e["path"] for e in manifest() if e["modality"] == "image"]


def photos(count: int) -> list[Image.Image]:
    """``count`` decoded RGB photos (the assets, repeated)."""
    decoded = [Image.open(path).convert("RGB") for path in image_paths()]
    return [decoded[i % len(decoded)] for i in range(count)]


def photo_files(count: int, folder: Path) -> list[str]:
    """``count`` JPEG files on disk (copies of the assets), for decode-included runs."""
    folder.mkdir(parents=True, exist_ok=True)
    sources = image_paths()
    paths = []
    for i in range(count):
        target = folder / f"{i:05d}{sources[i % len(sources)].suffix}"
        shutil.copyfile(sources[i % len(sources)], target)
        paths.append(str(target))
    return paths


# Colour photos scikit-image ships (offline), for checks that need real pictures.
SKIMAGE_PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "immunohistochemistry", "retina")


def short_queries(count: int) -> list[str]:
    """Search-style queries: captions of the assets and their nouns."""
    captions = [e["caption"] for e in manifest()]
    nouns = [word for c in captions for word in c.split() if len(word) > 4]
    pool = captions + [f"a photo of a {noun}" for noun in nouns]
    return [pool[i % len(pool)] for i in range(count)]


def _docstring_sentences() -> list[str]:
    """Every sentence of some standard-library docstrings, sorted, duplicates removed."""
    import argparse
    import collections
    import email
    import json as json_module
    import logging
    import pathlib
    import subprocess
    import threading
    import unittest

    modules = [argparse, collections, email, json_module, logging, pathlib, subprocess]
    modules += [threading, unittest]
    pool = []
    for module in modules:
        for _, obj in inspect.getmembers(module):
            doc = inspect.getdoc(obj) or ""
            pool += [s.strip() + "." for s in " ".join(doc.split()).split(". ") if s.strip()]
    return sorted(set(pool))


def sentences(count: int, min_words: int = 10, max_words: int = 40) -> list[str]:
    """Real English sentences of ``min_words``..``max_words`` words (standard-library docs)."""
    pool = [s for s in _docstring_sentences() if min_words <= len(s.split()) <= max_words]
    return [pool[(i * 7919) % len(pool)] for i in range(count)]


def paragraphs(count: int, min_words: int = 200, max_words: int = 400) -> list[str]:
    """Paragraphs of ``min_words``..``max_words`` words: consecutive docstring sentences."""
    pool = [s for s in _docstring_sentences() if len(s.split()) >= 4]
    out, start = [], 0
    while len(out) < count:
        target = min_words + (len(out) * 37) % (max_words - min_words + 1)
        words: list[str] = []
        while len(words) < target:
            words += pool[start % len(pool)].split()
            start += 1
        out.append(" ".join(words[:target]))
    return out


def mixed_texts(count: int) -> list[str]:
    """Half short queries, 35% sentences, 15% paragraphs, interleaved."""
    queries, sents, paras = short_queries(count), sentences(count), paragraphs(count)
    kinds = [queries] * 10 + [sents] * 7 + [paras] * 3
    return [kinds[i % len(kinds)][i] for i in range(count)]


TEXT_SETS = {  # name -> builder of that many texts
    "short queries": short_queries,
    "sentences 10-40 words": sentences,
    "paragraphs 200-400 words": paragraphs,
    "mixed": mixed_texts,
}


def write_mmeb_fixture(folder: Path) -> tuple[Path, int]:
    """Two MMEB-format datasets from the asset photos: image->caption and caption->image.

    Returns the data folder and the number of queries.
    """
    photos = [e for e in manifest() if e["modality"] == "image"]
    images = folder / "images"
    images.mkdir(parents=True, exist_ok=True)  # the README one-liner can run again
    for entry in photos:
        shutil.copyfile(ASSETS / entry["path"], images / Path(entry["path"]).name)
    names = [Path(e["path"]).name for e in photos]
    captions = [e["caption"] for e in photos]
    rotate = lambda items, i: items[i:] + items[:i]  # noqa: E731  (correct candidate first)
    classify = [
        {
            "qry_text": "<|image_1|> Represent the given image for classification",
            "qry_img_path": names[i],
            "tgt_text": rotate(captions, i),
            "tgt_img_path": [""] * len(captions),
        }
        for i in range(len(photos))
    ]
    retrieve = [
        {
            "qry_text": captions[i],
            "qry_img_path": "",
            "tgt_text": [""] * len(names),
            "tgt_img_path": rotate(names, i),
        }
        for i in range(len(photos))
    ]
    for name, rows in (("ImageNet-1K", classify), ("MSCOCO_t2i", retrieve)):
        with open(folder / f"{name}.jsonl", "w", encoding="utf-8") as handle:
            handle.writelines(json.dumps(r) + "\n" for r in rows)
    return folder, len(classify) + len(retrieve)
