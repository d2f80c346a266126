"""Embed a few items with a real VLM2Vec checkpoint from local folders and print similarities.

Usage (weights already on disk; nothing is downloaded)::

    python scripts/vlm2vec_embed.py \\
        --base ~/models/Qwen2-VL-2B-Instruct --adapter ~/models/VLM2Vec-Qwen2VL-2B

``--base`` is the Qwen2-VL Instruct checkpoint, ``--adapter`` the VLM2Vec LoRA folder (its
adapter and processor files). Without ``--adapter``, ``--base`` must be a merged checkpoint.
Runs in bf16 on a GPU when one is present, in fp32 on the CPU otherwise. ``mmembed download
VLM2Vec-Qwen2VL-2B`` fetches both folders into the cache; ``mmembed.load("VLM2Vec-Qwen2VL-2B")``
then does all of this in one call.
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

import numpy as np
import torch

import mmembed
from mmembed.embedder import EmbedderCfg
from mmembed.encoders.vlm import VLMCfg
from mmembed.models.families.vlm import vlm_embedder

ASSETS = Path(__file__).resolve().parent.parent / "assets"
QUERY = "Find me an everyday image that matches the given caption:"
DOCUMENT = "Represent the given image."
CAPTIONS = ["a cat", "a cup of coffee", "a rocket on the launch pad", "a motorcycle on a road"]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", type=Path, required=True, help="Qwen2-VL Instruct folder")
    parser.add_argument("--adapter", type=Path, default=None, help="VLM2Vec LoRA folder")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument(
        "--dtype",
        default=None,
        choices=("bfloat16", "float16", "float32"),
        help="weights (default: bfloat16 on a GPU, float32 on the CPU)",
    )
    parser.add_argument("--max-pixels", type=int, default=1280 * 28 * 28)
    parser.add_argument("--batch-size", type=int, default=8)
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    dtype = args.dtype or ("bfloat16" if args.device.startswith("cuda") else "float32")
    cfg = VLMCfg(
        path=str(args.base),
        processor_path=str(args.adapter) if args.adapter else None,
        adapter_path=str(args.adapter) if args.adapter else None,
        dtype=dtype,
        min_pixels=56 * 56,
        max_pixels=args.max_pixels,
    )
    start = time.perf_counter()
    embedder = vlm_embedder(
        cfg, EmbedderCfg("VLM2Vec", query_instruction=QUERY, document_instruction=DOCUMENT)
    ).to(args.device)
    print(f"loaded {embedder} in {dtype} on {args.device} in {time.perf_counter() - start:.1f}s")

    documents = [
        mmembed.Image(ASSETS / "images" / "cat.jpg"),
        mmembed.Image(ASSETS / "images" / "coffee.jpg"),
        mmembed.Image(ASSETS / "images" / "rocket.jpg"),
        mmembed.Video(ASSETS / "videos" / "motorcycle_zoom.mp4", num_frames=8),
    ]
    start = time.perf_counter()
    queries = embedder.encode_query(CAPTIONS, batch_size=args.batch_size)
    docs = embedder.encode_document(documents, batch_size=args.batch_size)
    print(f"embedded {len(CAPTIONS) + len(documents)} items in {time.perf_counter() - start:.1f}s")

    scores = embedder.similarity(queries, docs)
    names = ["cat.jpg", "coffee.jpg", "rocket.jpg", "motorcycle.mp4"]
    print(f"{'':28s}" + "".join(f"{name:>16s}" for name in names))
    for caption, row in zip(CAPTIONS, scores, strict=True):
        print(f"{caption:28s}" + "".join(f"{value:16.3f}" for value in row))
    hits = int((scores.argmax(axis=1) == np.arange(len(CAPTIONS))).sum())
    print(f"{hits}/{len(CAPTIONS)} captions rank their own item first")


if __name__ == "__main__":
    main()
