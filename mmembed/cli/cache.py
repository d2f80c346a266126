"""``mmembed cache verify|clear``: check or empty what mmembed caches under ``$MMEMBED_HOME``."""

from __future__ import annotations

import argparse
import time

from . import plural
from .terminal import safe


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "cache", help="verify or clear the cache (ONNX exports, class tables, downloads)"
    )
    actions = parser.add_subparsers(dest="action", required=True)
    actions.add_parser(
        "verify",
        help="hash every cached file against its record; delete damaged ones (made again on use)",
    )
    actions.add_parser("clear", help="delete every cached file (made again on use)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..hub import mmembed_home, verified

    home = mmembed_home()
    if args.action == "clear":
        removed = 0
        for name in verified.CACHE_FOLDERS:
            folder = home / name
            if folder.exists():
                removed += sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
                verified.remove(folder)
        verified.forget()
        print(f"cleared {safe(str(home))} ({removed / 1e6:.1f} MB)")
        return 0
    start = time.perf_counter()
    checked, damaged = verified.verify_tree(home)
    seconds = time.perf_counter() - start
    for path, problem in damaged:
        print(f"damaged {safe(str(path))}: {problem}; deleted (made again on next use)")
    print(
        f"{plural(checked, 'cached file')} in {safe(str(home))} checked in {seconds * 1e3:.0f} ms: "
        f"{'all intact' if not damaged else plural(len(damaged), 'damaged file') + ' deleted'}"
    )
    return 1 if damaged else 0
