"""``mmembed download NAME...``: fetch a model's pinned weights into the cache, verified."""

from __future__ import annotations

import argparse
import sys


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "download", help="download a named model's weights into the cache (for offline use)"
    )
    parser.add_argument("names", nargs="+", help="names from `mmembed models`")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..hub import WeightsError
    from ..models import zoo

    status = 0
    for name in args.names:
        entry = zoo.get_pretrained(name)
        if entry is None:
            print(f"mmembed download: unknown model {name!r}", file=sys.stderr)
            status = 2
            continue
        try:
            paths = zoo.download(entry, progress=not args.quiet)
        except WeightsError as error:
            print(f"mmembed download: {name}: {error}", file=sys.stderr)
            status = 1
            continue
        for path in paths:
            print(f"{name}\t{path}")
    return status
