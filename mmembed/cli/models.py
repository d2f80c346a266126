"""``mmembed models``: the named models, their modalities, width, size and cache state."""

from __future__ import annotations

import argparse

_SHORT = {"document": "doc"}


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("models", help="list the named models")
    parser.add_argument(
        "--no-cache-check", action="store_true", help="do not look in the cache (faster)"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..models import zoo
    from ..models.registry import describe_models

    entries = zoo.list_pretrained()
    print(f"{'NAME':28s} {'MODALITIES':34s} {'DIM':>5s} {'SIZE':>8s}  CACHED")
    for entry in entries:
        modalities = ",".join(_SHORT.get(m.value, m.value) for m in entry.modalities)
        cached = "?" if args.no_cache_check else ("yes" if zoo.is_cached(entry) else "no")
        print(
            f"{entry.name:28s} {modalities:34s} {entry.dim:5d} {_size(entry.size_mb):>8s}  {cached}"
        )
    zoo_names = {entry.name for entry in entries}
    for name, description in describe_models():
        if name not in zoo_names:
            print(f"{name:28s} {description}")
    print("open_clip:ARCH[/TAG]         any open_clip architecture and pretrained tag")
    print("DIR                          a folder written by Embedder.save, or a transformers model")
    return 0


def _size(megabytes: int) -> str:
    return f"{megabytes / 1000:.1f} GB" if megabytes >= 1000 else f"{megabytes} MB"
