"""``mmembed train CONFIG [--output DIR] [--set KEY=VALUE ...] [--resume]``: run a recipe.

The trained model is written to ``DIR/final`` (``mmembed.load`` reads it); the command ends by
printing the commands that evaluate, index and search with it.
Multi-process: ``torchrun --nproc_per_node N -m mmembed.cli.train CONFIG.yaml``.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from ..errors import TrainingDivergedError
from .terminal import safe

if TYPE_CHECKING:
    from ..train.config import TrainConfig


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "train",
        help="train a model from a YAML recipe config",
        description="Train a model from a YAML recipe config (see configs/); "
        "the model is written to OUTPUT/final.",
    )
    parser.add_argument("config", type=Path, help="recipe config (YAML)")
    parser.add_argument(
        "--output", type=Path, help="output folder (default: the config's output_dir)"
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config field, e.g. --set steps=20 --set optim.lr=1e-4 (repeatable)",
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue from the latest checkpoint in the output folder",
    )
    parser.set_defaults(func=run)
    return parser


logger = logging.getLogger(__name__)


def run(args: argparse.Namespace) -> int:
    try:  # every config mistake is refused here, before any model or data is loaded
        config = check_config(args)  # YAML and dataclasses only: no torch yet
        from ..train import build_task, train  # torch loads only when training

        build_task(config)  # the task's own options (its module imports torch)
    except (ValueError, OSError) as error:
        print(f"mmembed train: {args.config}: {safe(str(error))}", file=sys.stderr)
        return 2
    try:
        summary = train(config, resume=args.resume)
    except (FileExistsError, ValueError, TrainingDivergedError) as error:
        print(f"mmembed train: {error}", file=sys.stderr)
        return 2
    if os.environ.get("RANK", "0") != "0":  # under torchrun, one process reports
        return 0
    final = summary.output_dir / "final"
    print(
        f"trained {config.task} to step {summary.steps} "
        f"(loss {_loss(summary.first_loss)} -> {_loss(summary.last_loss)})\n"
        f"model: {final}   (mmembed.load({str(final)!r}); model card: {final / 'README.md'})\n"
        "next:\n"
        f"  mmembed eval mmeb --model {final} --data data/MMEB-eval --out {summary.output_dir}/mmeb\n"
        f"  mmembed index FOLDER --model {final} --out {summary.output_dir}/index\n"
        f'  mmembed search {summary.output_dir}/index "a query"'
    )
    return 0


def check_config(args: argparse.Namespace) -> TrainConfig:
    """The run's config, checked before torch loads: file, YAML, ``--set``, every field of the
    top level and its sections, the task's name, a built-in task's ``task_options`` and the
    ``init`` model.

    Raises:
        ValueError, OSError: naming the field at fault (one line).
    """
    from ..models.reference import check_model
    from ..train.config import BUILTIN_TASKS, TINY, from_dict, load_config
    from ..train.options import TASK_OPTIONS

    overrides = list(args.overrides)
    if args.output is not None:
        overrides.append(f"output_dir={args.output}")
    try:
        config = load_config(args.config, overrides)
    except yaml.YAMLError as error:  # its message spans lines: the first names the problem
        raise ValueError(
            f"not valid YAML: {str(error).splitlines()[0]} ({_where(error)})"
        ) from None
    if ":" not in config.task and config.task not in BUILTIN_TASKS:
        raise ValueError(f"unknown task {config.task!r}; registered: {sorted(BUILTIN_TASKS)}")
    if config.task in TASK_OPTIONS:  # the recipe's own options, typed as the recipe types them
        from_dict(TASK_OPTIONS[config.task], config.task_options, "task_options")
    if config.init is not None and config.init != TINY:
        check_model(config.init, what="init")
    return config


def _where(error: Exception) -> str:
    mark = getattr(error, "problem_mark", None)
    return f"line {mark.line + 1}, column {mark.column + 1}" if mark else "see the file"


def _loss(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def main(argv: list[str] | None = None) -> int:
    """Stand-alone entry point (``python -m mmembed.cli.train``), e.g. for torchrun."""
    parser = argparse.ArgumentParser(prog="mmembed")
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["train", *(sys.argv[1:] if argv is None else argv)])
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
