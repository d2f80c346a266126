"""Cross-modal retrieval Recall@K on COCO / Flickr30k (Karpathy split) and MSR-VTT.

Examples::

    python scripts/retrieval_eval.py karpathy --annotations dataset_coco.json \\
        --images /data/coco --split test --model mmembed-mini --out coco.json
    python scripts/retrieval_eval.py msrvtt --annotations MSRVTT_JSFUSION_test.csv \\
        --videos /data/msrvtt/videos --out msrvtt.json
    python scripts/retrieval_eval.py captions --annotations photos/pairs.csv --views 8 \\
        --model runs/clip_realign/stage1/final

Captions table (``captions``): CSV/TSV/Parquet with ``image`` and ``caption`` columns, image
paths relative to the table (the training recipes' ``image_caption`` format).
``--views N`` adds image->image Recall@K: N augmented views of each image (random crop of at
least 35% of the area, flip, colour jitter; seeded) search the original images, as the
clip_realign recipe measures image retrieval.

Karpathy JSON: ``{"images": [{"filename", "filepath"?, "split", "sentences": [{"raw"}]}]}``;
image files are ``IMAGES/filepath/filename`` (or ``IMAGES/filename``).
MSR-VTT: the ``{"videos": [{"video_id", "split"}], "sentences": [{"video_id", "caption"}]}``
JSON, or the 1k-A CSV with ``video_id`` and ``sentence`` columns; files are
``VIDEOS/<video_id>.mp4``.

Recall@K as the papers report it: text->image (text->video) counts a caption as found when
its image is in the top K; image->text counts an image as found when any of its captions is
in the top K. Ranking uses ``mmembed.eval.metrics`` (equal scores rank the wrong candidate
first; items that fail to embed rank last).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

logger = logging.getLogger("retrieval_eval")

KS = (1, 5, 10)
VIEW_SEED = 1_000_003  # first seed of the augmented views (--views)


@dataclass
class RetrievalSet:
    """Captions and the items (images or videos) they describe.

    Attributes:
        captions: caption texts.
        owner: for each caption, the index of its item in ``items``.
        items: item file paths.
        modality: "image" or "video".
    """

    captions: list[str]
    owner: np.ndarray
    items: list[Path]
    modality: str


def load_karpathy(annotations: Path, images: Path, split: str = "test") -> RetrievalSet:
    """Read a Karpathy-split JSON (COCO, Flickr30k, Flickr8k) for one split."""
    data = json.loads(annotations.read_text(encoding="utf-8"))
    captions, owner, items = [], [], []
    for entry in data["images"]:
        if split != "all" and entry.get("split") != split:
            continue
        nested = images / entry.get("filepath", "") / entry["filename"]
        items.append(nested if nested.exists() else images / entry["filename"])
        for sentence in entry["sentences"]:
            captions.append(sentence["raw"].strip())
            owner.append(len(items) - 1)
    return RetrievalSet(captions, np.array(owner, dtype=np.int64), items, "image")


def load_msrvtt(annotations: Path, videos: Path, split: str = "test") -> RetrievalSet:
    """Read MSR-VTT annotations: the videodatainfo JSON or the 1k-A test CSV."""
    if annotations.suffix == ".csv":
        import pandas as pd

        frame = pd.read_csv(annotations)
        pairs = list(zip(frame["video_id"], frame["sentence"], strict=True))
        video_ids = list(dict.fromkeys(frame["video_id"]))
    else:
        data = json.loads(annotations.read_text(encoding="utf-8"))
        video_ids = [
            video["video_id"]
            for video in data["videos"]
            if split == "all" or video.get("split") == split
        ]
        pairs = [(sentence["video_id"], sentence["caption"]) for sentence in data["sentences"]]
    position = {video_id: number for number, video_id in enumerate(video_ids)}
    kept = [(position[video], text.strip()) for video, text in pairs if video in position]
    return RetrievalSet(
        [text for _, text in kept],
        np.array([number for number, _ in kept], dtype=np.int64),
        [videos / f"{video_id}.mp4" for video_id in video_ids],
        "video",
    )


def load_caption_table(table: Path) -> RetrievalSet:
    """Read an ``image,caption`` table; image paths are relative to the table's folder."""
    import pandas as pd

    frame = (
        pd.read_parquet(table)
        if table.suffix == ".parquet"
        else pd.read_csv(table, sep="\t" if table.suffix == ".tsv" else ",")
    )
    items = list(dict.fromkeys(frame["image"]))
    position = {name: number for number, name in enumerate(items)}
    return RetrievalSet(
        [str(text).strip() for text in frame["caption"]],
        np.array([position[name] for name in frame["image"]], dtype=np.int64),
        [table.parent / name for name in items],
        "image",
    )


def image_views(path: Path, count: int, seed: int) -> list[Any]:
    """``count`` augmented views of one image, each from its own seed (reproducible)."""
    import torch
    from PIL import Image
    from torchvision import transforms

    image = Image.open(path).convert("RGB")
    augment = transforms.Compose(
        [
            transforms.RandomResizedCrop((image.height, image.width), scale=(0.35, 1.0)),
            transforms.RandomHorizontalFlip(),
            transforms.ColorJitter(0.3, 0.3, 0.3),
        ]
    )
    views = []
    for number in range(count):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed + number)
            views.append(augment(image))
    return views


def image_to_image_recall(
    embedder: Any, dataset: RetrievalSet, views: int, batch_size: int = 32
) -> dict[str, float]:
    """Recall@K (percent) of ``views`` augmented views of each image finding the original."""
    from mmembed.eval.metrics import mean_metrics

    items = np.asarray(
        embedder.encode([str(p) for p in dataset.items], batch_size=batch_size), dtype=np.float64
    )
    queries = [
        view
        for number, path in enumerate(dataset.items)
        for view in image_views(path, views, VIEW_SEED + number * views)
    ]
    scores = np.asarray(embedder.encode(queries, batch_size=batch_size), np.float64) @ items.T
    owners = np.repeat(np.arange(len(dataset.items)), views)
    relevance = np.eye(len(dataset.items))[owners]
    found = mean_metrics(scores, relevance, [f"hit@{k}" for k in KS], ties="pessimistic")
    return {f"i2i_R@{k}": 100 * found[f"hit@{k}"] for k in KS}


def recall_at_k(
    scores: np.ndarray, owner: np.ndarray, ks: tuple[int, ...] = KS
) -> dict[str, float]:
    """Recall@K both ways from caption-by-item ``scores`` ``(C, I)``.

    Returns ``{"t2x_R@k": ..., "x2t_R@k": ...}`` as fractions in [0, 1]; a tie is a miss
    (``ties="pessimistic"``).
    """
    from mmembed.eval.metrics import mean_metrics

    num_items = scores.shape[1]
    names = [f"hit@{k}" for k in ks]
    text_side = mean_metrics(scores, np.eye(num_items)[owner], names, ties="pessimistic")
    owned = [item for item in range(num_items) if np.any(owner == item)]
    item_relevance = (owner[None, :] == np.asarray(owned)[:, None]).astype(float)
    item_side = mean_metrics(scores.T[owned], item_relevance, names, ties="pessimistic")
    results: dict[str, float] = {}
    for k in ks:
        results[f"t2x_R@{k}"] = text_side[f"hit@{k}"]
        results[f"x2t_R@{k}"] = item_side[f"hit@{k}"]
    return results


def evaluate(embedder: Any, dataset: RetrievalSet, batch_size: int = 32) -> dict[str, Any]:
    """Embed captions and items, then compute Recall@K both ways (in percent)."""
    import mmembed

    kind = mmembed.Image if dataset.modality == "image" else mmembed.Video
    texts = embedder.encode(
        dataset.captions,
        instruction=embedder.query_instruction,
        batch_size=batch_size,
        on_error="skip",
        show_progress_bar=True,
    )
    items = embedder.encode(
        [kind(str(path)) for path in dataset.items],
        instruction=embedder.document_instruction,
        batch_size=batch_size,
        on_error="skip",
        show_progress_bar=True,
    )
    failed = sorted(getattr(items, "errors", {}) or {})
    for index in failed[:10]:
        logger.warning("%s failed: %s", dataset.items[index], items.errors[index])
    scores = np.asarray(texts, dtype=np.float64) @ np.asarray(items, dtype=np.float64).T  # (C, I)
    short = "i" if dataset.modality == "image" else "v"
    recalls = {
        name.replace("x", short, 1): 100 * value
        for name, value in recall_at_k(scores, dataset.owner).items()
    }
    return {
        "model": getattr(embedder, "name", str(embedder)),
        "captions": len(dataset.captions),
        "items": len(dataset.items),
        "failed_items": len(failed),
        "recall": recalls,
    }


def format_table(result: dict[str, Any]) -> str:
    """Recall@K as a small text table (percent)."""
    directions: dict[str, dict[int, float]] = {}
    for name, value in result["recall"].items():
        direction, k = name.split("_R@")
        directions.setdefault(direction, {})[int(k)] = value
    names = {
        "t2i": "text->image",
        "i2t": "image->text",
        "i2i": "image->image",
        "t2v": "text->video",
        "v2t": "video->text",
    }
    lines = ["direction    " + "".join(f"R@{k:<6d}" for k in KS)]
    for direction, values in directions.items():
        lines.append(f"{names[direction]:12s} " + "".join(f"{values[k]:<8.1f}" for k in KS))
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "format", choices=("karpathy", "msrvtt", "captions"), help="annotation format"
    )
    parser.add_argument(
        "--annotations", type=Path, required=True, help="JSON, MSR-VTT CSV or captions table"
    )
    parser.add_argument(
        "--views", type=int, default=0, help="image->image: augmented views per image (0: off)"
    )
    parser.add_argument("--images", type=Path, default=None, help="image root (karpathy)")
    parser.add_argument("--videos", type=Path, default=None, help="video folder (msrvtt)")
    parser.add_argument("--split", default="test", help="split to evaluate ('all' for every one)")
    parser.add_argument("--model", default="mmembed-mini", help="model name or directory")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    import mmembed

    if args.format == "karpathy":
        dataset = load_karpathy(
            args.annotations, args.images or args.annotations.parent, args.split
        )
    elif args.format == "captions":
        dataset = load_caption_table(args.annotations)
    else:
        dataset = load_msrvtt(args.annotations, args.videos or args.annotations.parent, args.split)
    if not dataset.captions:
        raise SystemExit(f"no captions for split {args.split!r} in {args.annotations}")
    embedder = mmembed.load(args.model)
    result = evaluate(embedder, dataset, args.batch_size)
    if args.views:
        if dataset.modality != "image":
            raise SystemExit("--views needs images")
        result["recall"].update(image_to_image_recall(embedder, dataset, args.views))
        result["views"] = args.views
    result.update(annotations=str(args.annotations), split=args.split)
    print(format_table(result))
    if args.out is not None:
        temporary = args.out.with_name(f".{args.out.name}.tmp")
        temporary.write_text(json.dumps(result, indent=2))
        os.replace(temporary, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
