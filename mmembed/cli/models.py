"""``mmembed models``: the names ``mmembed.load`` accepts."""

from __future__ import annotations

import argparse


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("models", help="list the named models")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..models.registry import describe_models

    for name, description in describe_models():
        print(f"{name:24s} {description}")
    print("open_clip:ARCH[/TAG]     any open_clip architecture and pretrained tag")
    return 0
