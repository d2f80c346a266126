"""The ``mmembed`` command: one entry point, one small module per subcommand.

Each subcommand module defines ``add_parser(subparsers)`` (which sets ``func`` on its
parser) so this file only lists them.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from ..errors import (
    CorruptIndexError,
    InputError,
    MissingDependencyError,
    StoreError,
    UsageError,
)
from ..models.reference import check_model
from .terminal import safe

SUBCOMMANDS = [
    "embed",
    "models",
    "eval",
    "train",
    "index",
    "search",
    "serve",
    "download",
    "info",
    "cache",
]

# Optional packages by import name -> (what pip installs, the extra of pyproject.toml that
# brings it); a command needing a missing one ends with the pip command, not a traceback.
EXTRAS = {
    "skimage": ("scikit-image", "train"),
    "peft": ("peft", "train"),
    "tensorboard": ("tensorboard", "train"),
    "rapidfuzz": ("rapidfuzz", "train"),
    "ray": ("ray[data]", "ray"),
    "pytesseract": ("pytesseract", "ocr"),
    "sklearn": ("scikit-learn", "assets"),
    "matplotlib": ("matplotlib", "assets"),
}


def plural(count: int, noun: str) -> str:
    """``1 item``, ``2 items``: counts people read."""
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mmembed", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for name in SUBCOMMANDS:
        importlib.import_module(f"{__name__}.{name}").add_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        if isinstance(getattr(args, "model", None), str):
            check_model(args.model)  # a mistyped name or folder: one line, before torch
        return int(args.func(args) or 0)
    except (InputError, FileNotFoundError, UsageError, CorruptIndexError, StoreError) as error:
        # safe(): newlines and controls escaped, so every error is one line of the terminal
        print(f"mmembed {args.command}: {safe(str(error))}", file=sys.stderr)
        return 2
    except ModuleNotFoundError as error:
        package, extra = EXTRAS.get((error.name or "").partition(".")[0], (None, None))
        if package is None:
            raise
        print(
            f"mmembed {args.command}: needs {package}, which is not installed: "
            f'pip install "mmembed[{extra}]" (in a checkout: pip install -e ".[{extra}]")',
            file=sys.stderr,
        )
        return 2
    except MissingDependencyError as error:
        print(f"mmembed {args.command}: {safe(str(error))}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
