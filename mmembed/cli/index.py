"""``mmembed index PATH... --out INDEX_DIR``: embed folders and manifests into an index."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from ..retrieval.fast_query import has_query_encoder
from ..retrieval.vectors import KINDS
from . import plural

logger = logging.getLogger(__name__)


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "index",
        help="build or update a search index of folders and manifests",
        description=(
            "Embed images, videos, text/Markdown/HTML files, CSV/Parquet tables and JSON "
            "documents found in folders (or listed in a CSV/Parquet/JSON manifest with a "
            "'path' or 'text' column) into an index. Re-running embeds only new or changed "
            "files and drops deleted ones."
        ),
    )
    parser.add_argument("paths", nargs="*", type=Path, help="folders, manifests or files")
    parser.add_argument("--out", type=Path, required=True, help="index folder")
    parser.add_argument("--model", default="mmembed-mini", help="model name or directory")
    parser.add_argument("--instruction", default=None, help="instruction for indexed items")
    parser.add_argument("--dim", type=int, default=None, help="Matryoshka truncation")
    parser.add_argument(
        "--index-type",
        choices=KINDS,
        default=None,
        help="vector search structure (default: auto = exact below 100k items, else IVF)",
    )
    parser.add_argument(
        "--binary",
        action="store_true",
        help="binary sign codes + Hamming search + float rescoring (same as --index-type binary)",
    )
    parser.add_argument("--batch-size", type=int, default=32, help="items per encode call")
    parser.add_argument(
        "--workers", type=int, default=2, help="decoding threads (local) or embedding actors (ray)"
    )
    parser.add_argument("--engine", choices=("local", "ray"), default="local")
    parser.add_argument("--ray-address", default=None, help="Ray cluster (default: start one)")
    parser.add_argument(
        "--no-sync",
        action="store_true",
        help="only add: keep indexed items of these folders even if their files are gone",
    )
    parser.add_argument("--report", action="store_true", help="list skipped items with the reason")
    parser.add_argument("--device", default=None, help="cpu, cuda, ... (default cpu)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..retrieval import Index

    if not args.paths:
        if not args.report:
            print(
                "mmembed index: give PATHs to index, or --report to list skipped items",
                file=sys.stderr,
            )
            return 2
        print_report(Index.open(args.out).skipped())
        return 0
    if args.engine == "ray":
        import ray

        if not ray.is_initialized():
            ray.init(address=args.ray_address, log_to_driver=False)
    from ..models.lazy import LazyEmbedder

    # The model loads only if something needs embedding: a no-op re-run stays fast.
    embedder = LazyEmbedder(args.model, device=args.device)
    index = Index.build(
        args.paths,
        embedder,
        args.out,
        instruction=args.instruction,
        dim=args.dim,
        index_type="binary" if args.binary else args.index_type,
        engine=args.engine,
        batch_size=args.batch_size,
        num_workers=args.workers,
        sync=not args.no_sync,
    )
    report = index.last_update
    spec = index.info["vectors"]
    failed = f", {report.failed} failed" if report.failed else ""
    print(
        f"{plural(len(index), 'item')} in {args.out} ({report.added} added, "
        f"{report.updated} updated, {report.removed} removed, {report.unchanged} unchanged; "
        f"embedded {report.embedded}{failed}, {report.resumed} resumed from a checkpoint)"
    )
    print(f"search: {describe_structure(spec)}")
    if report.skipped:
        hint = "" if args.report else " (list them with --report)"
        print(f"skipped {plural(len(report.skipped), 'item')}{hint}")
    if args.report:
        print_report(report.skipped)
    if len(index) == 0:
        reason = "every file was skipped" if report.skipped else "no files were found"
        print(f"mmembed index: warning: the index is empty: {reason}", file=sys.stderr)
    if embedder.loaded or not has_query_encoder(args.out, index.info["model"]):
        export_query_tower(embedder.load(), args.out)
    return 0


def export_query_tower(embedder, index_dir: Path) -> None:
    """Export the text query tower for torch-free text search (see retrieval.fast_query)."""
    from ..retrieval.fast_query import export_query_encoder

    try:
        export_query_encoder(embedder, index_dir)
    except (ImportError, RuntimeError, OSError) as error:
        logger.warning("text queries will load the torch model: ONNX export failed: %s", error)


def describe_structure(spec: dict) -> str:
    """One line on how the index searches and the recall@10 it was measured to give."""
    kind = spec["kind"]
    recall = f"recall@10 {spec['recall_at_10']:.3f} vs exact"
    if kind == "flat":
        return "exact inner product (recall 1.0)"
    if kind == "ivf":
        return f"IVF{spec['nlist']} nprobe={spec['nprobe']}, {recall}"
    if kind == "hnsw":
        return f"HNSW M={spec['hnsw_m']} efSearch={spec['ef_search']}, {recall}"
    return f"binary codes, {spec['rescore_factor']}x candidates rescored, {recall}"


def print_report(skipped: list[dict]) -> None:
    """Print one line per skipped item: its path (or id) and the reason."""
    if not skipped:
        print("no skipped items")
    for row in skipped:
        print(f"skipped {row.get('path') or row['id']}: {row['reason']}")
