"""``mmembed eval mmeb``: evaluate a model on MMEB and write report.json / report.md."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

logger = logging.getLogger(__name__)


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``eval`` and its ``mmeb`` subcommand."""
    parser = subparsers.add_parser("eval", help="evaluate a model on a benchmark")
    benchmarks = parser.add_subparsers(dest="benchmark", required=True)
    mmeb = benchmarks.add_parser(
        "mmeb",
        help="MMEB: 36 image datasets (classification, VQA, retrieval, grounding)",
        description="Evaluate a model on MMEB (hit@1), resumably; reports go to --out.",
    )
    mmeb.add_argument("--model", required=True, help="model name or saved dir for mmembed.load")
    mmeb.add_argument("--data", required=True, type=Path, help="MMEB-eval folder (DATA_DIR)")
    mmeb.add_argument(
        "--datasets",
        nargs="+",
        metavar="NAME",
        help="dataset names, or mmeb / mmeb-v2-video / mmeb-v2-visdoc / mmeb-v2-visdoc-english / "
        "all (default: mmeb)",
    )
    mmeb.add_argument("--out", type=Path, default=Path("mmeb-report"), help="report folder")
    mmeb.add_argument(
        "--image-dir",
        type=Path,
        help="image root: where `unzip images.zip -d eval_images/` put the images "
        "(default: DATA_DIR/eval_images if it exists, else DATA_DIR/images)",
    )
    mmeb.add_argument("--video-dir", type=Path, help="video root (default: DATA_DIR/videos)")
    mmeb.add_argument("--batch-size", type=int, default=32, help="items per forward pass")
    mmeb.add_argument("--device", help="cpu, cuda, cuda:1, ... (default: cuda if present)")
    mmeb.add_argument(
        "--precision",
        choices=["fp32", "bf16", "fp16"],
        help="model weights (default: bf16 on a GPU, as the official runs; fp32 on a CPU)",
    )
    mmeb.add_argument(
        "--frame-resolution",
        choices=["low", "mid", "high"],
        help="MMEB-V2 video frames resized as VLM2Vec-V2's --image_resolution does "
        "(128, 672 or 1344 square; default: frames keep their size, as V2's eval scripts)",
    )
    mmeb.add_argument(
        "--allow-trivial",
        action="store_true",
        help="accept rows ranked among fewer than 2 candidates (free hits; refused by default)",
    )
    mmeb.add_argument(
        "--compare",
        type=Path,
        metavar="PRED_DIR",
        help="after the run, diff the prediction files against VLM2Vec's in PRED_DIR "
        "(its --encode_output_path) and print where the top predictions disagree",
    )
    mmeb.add_argument("--max-queries", type=int, help="first N queries per dataset (quick run)")
    mmeb.add_argument(
        "--skip-bad-items",
        action="store_true",
        help="rank unreadable items last and skip malformed rows, count them and mark the "
        "score a lower bound, instead of stopping at the first one",
    )
    mmeb.add_argument(
        "--ties",
        choices=["official", "pessimistic"],
        default="official",
        help="official: each version's own ranking, V1's argmax and V2's stable argsort, so "
        "the first of equal candidates wins and a repeat of the correct one counts (default); "
        "pessimistic: a tie is a miss",
    )
    mmeb.add_argument("--overwrite", action="store_true", help="recompute finished datasets")
    mmeb.add_argument("--data-revision", help="revision to record (default: from --download)")
    mmeb.add_argument(
        "--download",
        action="store_true",
        help="first fetch MMEB-eval from the Hugging Face hub (needs network)",
    )
    mmeb.add_argument("--revision", help="hub revision for --download (default: pinned)")
    mmeb.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    """Run the evaluation and print the Markdown report."""
    from ..eval import MMEBOptions, download_mmeb, evaluate_mmeb, resolve_datasets
    from ..eval.download import MMEB_EVAL_REVISION
    from ..eval.predictions import compare_predictions

    try:
        resolve_datasets(args.datasets)  # before anything loads
    except KeyError as error:
        print(f"mmembed eval mmeb: {error.args[0]}", file=sys.stderr)
        return 2
    if not args.download and not args.data.is_dir():
        print(
            f"mmembed eval mmeb: {args.data}: no such data folder (see --download)", file=sys.stderr
        )
        return 2
    if args.download:
        download_mmeb(args.data, args.datasets, revision=args.revision or MMEB_EVAL_REVISION)
    options = MMEBOptions(
        image_dir=args.image_dir,
        video_dir=args.video_dir,
        batch_size=args.batch_size,
        device=args.device,
        precision=args.precision,
        frame_resolution=args.frame_resolution,
        allow_trivial=args.allow_trivial,
        max_queries=args.max_queries,
        on_error="skip" if args.skip_bad_items else "raise",
        data_revision=args.data_revision,
        overwrite=args.overwrite,
        ties=args.ties,
    )
    try:
        report = evaluate_mmeb(args.model, args.data, args.datasets, args.out, options)
    except (KeyError, ValueError) as error:
        message = error.args[0] if error.args else str(error)
        print(f"mmembed eval mmeb: {message}", file=sys.stderr)
        return 2
    print(report.to_markdown())
    print(f"Reports written to {args.out / 'report.json'} and {args.out / 'report.md'}")
    if not report.datasets:
        logger.error("no MMEB data found in %s (see --download)", args.data)
        return 1
    if args.compare is not None:
        for comparison in compare_predictions(args.out, args.compare, list(report.datasets)):
            print("\n".join(comparison.describe()))
    return 0
