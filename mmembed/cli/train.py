"""``mmembed train CONFIG.yaml [--resume]``: run a training recipe.

Multi-process: ``torchrun --nproc_per_node N -m mmembed.cli.train CONFIG.yaml``.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "train",
        help="train towers from a YAML recipe config",
        description="Train towers from a YAML recipe config (see configs/).",
    )
    parser.add_argument("config", type=Path, help="recipe config (YAML)")
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue from the latest checkpoint in the config's output_dir",
    )
    parser.set_defaults(func=run)
    return parser


logger = logging.getLogger(__name__)


def run(args: argparse.Namespace) -> int:
    from ..train import load_config, train  # torch loads only when training

    try:
        config = load_config(args.config)
    except ValueError as error:  # a config mistake: say which, without a traceback
        logger.error("%s: %s", args.config, error)
        return 2
    try:
        summary = train(config, resume=args.resume)
    except FileExistsError as error:
        logger.error("%s", error)
        return 2
    if int(os.environ.get("RANK", "0")) == 0:  # one line per run, not one per process
        outputs = ", ".join(
            path.name + ("/" if path.is_dir() else "")
            for path in sorted(Path(summary.output_dir).iterdir())
        )
        print(
            f"trained to step {summary.steps} (loss {summary.first_loss} -> {summary.last_loss}); "
            f"outputs in {summary.output_dir}: {outputs}"
        )
    return 0


def main(argv: list[str] | None = None) -> int:
    """Stand-alone entry point (``python -m mmembed.cli.train``), e.g. for torchrun."""
    parser = argparse.ArgumentParser(prog="mmembed")
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["train", *(sys.argv[1:] if argv is None else argv)])
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
