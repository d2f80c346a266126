"""``mmembed embed INPUT...``: embed files or strings and write the vectors."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

import numpy as np

from ..errors import UsageError
from ..hub.atomic import write_atomic
from ..inputs import Document, Image, Table, Video, as_input
from ..modality import IMAGE_EXTENSIONS, TABLE_EXTENSIONS, VIDEO_EXTENSIONS
from .terminal import safe

logger = logging.getLogger(__name__)

MEDIA_KINDS = {
    **{ext: Image for ext in IMAGE_EXTENSIONS},
    **{ext: Video for ext in VIDEO_EXTENSIONS},
    **{ext: Table for ext in TABLE_EXTENSIONS},
}


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("embed", help="embed images, videos, tables, documents or text")
    parser.add_argument(
        "inputs", nargs="+", help="file paths (image, video, CSV/Parquet, document .json) or text"
    )
    parser.add_argument("--model", default="mmembed-mini", help="model name or directory")
    parser.add_argument(
        "--instruction", default=None, help="task instruction embedded with each input"
    )
    parser.add_argument("--out", type=Path, default=None, help="write vectors to .npy or .parquet")
    parser.add_argument("--dim", type=int, default=None, help="Matryoshka truncation")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--num-frames", type=int, default=8, help="frames sampled per video")
    parser.add_argument("--device", default=None, help="cpu, cuda, ... (default cpu)")
    parser.add_argument(
        "--on-error",
        choices=("raise", "skip"),
        default="skip",
        help="skip bad inputs (default) or stop",
    )
    parser.set_defaults(func=run)


def parse_input(value: str, num_frames: int, index: int | None = None):
    """A CLI argument as a typed input: document JSON, media file, or text."""
    if value.endswith(".json") and os.path.isfile(value):
        return Document.from_json(value, index)
    kind = MEDIA_KINDS.get(Path(value).suffix.lower())
    # On the command line a media file name that does not exist is a mistake, not text.
    item = kind(value) if kind is not None and " " not in value else as_input(value)
    if hasattr(item, "num_frames"):
        item = type(item)(item.source, num_frames=num_frames)
    return item


def validate(args: argparse.Namespace) -> None:
    """Check the arguments before the model loads.

    Raises:
        UsageError: naming the argument at fault.
    """
    for name in ("dim", "batch_size", "num_frames"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise UsageError(f"--{name.replace('_', '-')} must be at least 1, got {value}")
    if args.out is not None and args.out.suffix not in (".npy", ".parquet"):
        raise UsageError(f"--out must end in .npy or .parquet, got {safe(args.out.name)}")
    if args.out is not None and args.out.is_dir():
        raise UsageError(f"--out {safe(str(args.out))} is a folder, not a file")


def run(args: argparse.Namespace) -> int:
    validate(args)
    items = [  # before the model loads: a typo fails at once
        parse_input(value, args.num_frames, number) for number, value in enumerate(args.inputs)
    ]
    from ..models.registry import load  # torch: only once the arguments are good

    embedder = load(args.model, device=args.device)
    # Each skipped input gets its own line below; the Embedder's summary would repeat them.
    embedder_logger = logging.getLogger("mmembed.embedder")
    level = embedder_logger.level
    embedder_logger.setLevel(logging.ERROR)
    try:
        vectors = embedder.encode(
            items,
            instruction=args.instruction,
            batch_size=args.batch_size,
            dim=args.dim,
            on_error=args.on_error,
            show_progress_bar=len(items) > args.batch_size,
        )
    finally:
        embedder_logger.setLevel(level)
    for index, error in sorted(vectors.errors.items()):
        print(f"skipped {safe(repr(args.inputs[index]))}: {safe(error.reason)}", file=sys.stderr)
    if args.out is None:
        for value, item, row in zip(args.inputs, items, vectors, strict=True):
            head = " ".join(f"{x:+.4f}" for x in row[:4])
            print(
                f"{type(item).__name__.lower():9s} {safe(value[:48]):48s} [{head} ...] "
                f"({row.shape[0]}-d)"
            )
    else:
        write_vectors(args.out, np.asarray(vectors), args.inputs, items)
        print(f"wrote {len(items)} x {vectors.shape[1]} vectors to {safe(str(args.out))}")
    return 1 if vectors.errors and len(vectors.errors) == len(items) else 0


def write_vectors(path: Path, vectors: np.ndarray, names: list[str], items: list) -> None:
    """Write atomically (``hub.atomic.write_atomic``), as ``.npy`` or ``.parquet``."""
    if path.suffix == ".npy":
        write_atomic(path, lambda temporary: _save_npy(temporary, vectors))
    elif path.suffix == ".parquet":
        import pandas as pd

        frame = pd.DataFrame(
            {
                "input": names,
                "modality": [type(item).__name__.lower() for item in items],
                "embedding": list(vectors.astype(np.float32)),
            }
        )
        write_atomic(path, lambda temporary: frame.to_parquet(temporary, index=False))
    else:
        raise ValueError(f"--out must end in .npy or .parquet, got {path.name}")


def _save_npy(path: Path, vectors: np.ndarray) -> None:
    with open(path, "wb") as stream:  # a path not ending in .npy would get one appended
        np.save(stream, np.asarray(vectors))
