"""``mmembed index PATH... --out INDEX_DIR``: embed folders and manifests into an index."""

from __future__ import annotations

import argparse
import logging
import shlex
import sys
from pathlib import Path

from ..errors import UsageError
from ..retrieval.fast_query import has_query_encoder
from ..retrieval.pages import MODEL_ROUTES, PAGE_ROUTES, PageOptions
from ..retrieval.vectors import KINDS
from . import plural
from .terminal import quiet_broken_pipe, safe

DEFAULT_MODEL = "mmembed-mini"

logger = logging.getLogger(__name__)


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "index",
        help="build or update a search index of folders and manifests",
        description=(
            "Embed images, videos, text/Markdown/HTML files, CSV/Parquet tables, JSON "
            "documents and PDFs (page by page) found in folders (or listed in a CSV/Parquet/JSON manifest with a "
            "'path' or 'text' column) into an index. Re-running embeds only new or changed "
            "files and drops deleted ones."
        ),
    )
    parser.add_argument("paths", nargs="*", type=Path, help="folders, manifests or files")
    parser.add_argument(
        "--out",
        type=index_target,
        required=True,
        help="index folder, or a vector engine: milvus-lite:///PATH/db.db?collection=NAME, "
        "milvus://HOST:PORT/NAME",
    )
    parser.add_argument(
        "--model",
        default=None,
        help=f"model name or directory (default: the index's, else {DEFAULT_MODEL})",
    )
    parser.add_argument(
        "--instruction", default=None, help="instruction for indexed items (default: the index's)"
    )
    parser.add_argument(
        "--dim", type=int, default=None, help="Matryoshka truncation (default: the index's)"
    )
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
        "--workers",
        type=int,
        default=None,
        help="decoding processes (local; default: the CPUs, at most 16; 0: inline) "
        "or embedding actors (ray; default 2)",
    )
    parser.add_argument("--engine", choices=("local", "ray"), default="local")
    parser.add_argument("--ray-address", default=None, help="Ray cluster (default: start one)")
    parser.add_argument(
        "--no-sync",
        action="store_true",
        help="only add: keep indexed items of these folders even if their files are gone",
    )
    parser.add_argument("--report", action="store_true", help="list skipped items with the reason")
    parser.add_argument(
        "--repair",
        action="store_true",
        help="re-index the folders the index was built from, rebuilding damaged files "
        "(a plain run repairs too)",
    )
    parser.add_argument(
        "--rehash", action="store_true", help="hash every file, trusting no size/time stamp"
    )
    parser.add_argument(
        "--follow-symlinks",
        action="store_true",
        help="follow symlinks in folders that lead outside the given folders",
    )
    parser.add_argument(
        "--pdf-route",
        choices=PAGE_ROUTES,
        default=None,
        help="how PDF pages are read: auto (the text layer where it has real text, else the "
        "model's page route), text (the text layer only), or the model's page route by name: "
        "reader, ocr (Tesseract) or pixel (default: the index's, else auto)",
    )
    parser.add_argument(
        "--pages",
        action="append",
        default=None,
        metavar="GLOB",
        help="index the images this glob matches as pages (screenshots, scans), read by the "
        "model's page route; repeatable (default: the index's globs)",
    )
    engine = parser.add_argument_group("vector engine (--out URI)")
    engine.add_argument(
        "--store-index",
        default=None,
        help="index a new collection builds: HNSW (default), IVF_FLAT, IVF_SQ8, IVF_PQ, FLAT",
    )
    engine.add_argument(
        "--store-param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="index parameter, repeatable: M, efConstruction, ef (HNSW); nlist, nprobe, m, "
        "nbits (IVF); ef and nprobe are search-time",
    )
    engine.add_argument("--shards", type=int, default=None, help="shards of a new collection")
    engine.add_argument("--replicas", type=int, default=None, help="in-memory replicas (search)")
    engine.add_argument(
        "--verify",
        action="store_true",
        help="read every stored vector back and compare it with the ledger (a plain run "
        "compares a sample and the counts)",
    )
    parser.add_argument("--device", default=None, help="cpu, cuda, ... (default cpu)")
    parser.add_argument(
        "--devices",
        default=None,
        help="embed on several devices at once, e.g. cuda:0,cuda:1 (one model copy each)",
    )
    parser.set_defaults(func=run)


def index_target(text: str) -> Path | str:
    """An index argument: a folder (``Path``) or an engine URI, kept as written (``str``;
    a ``Path`` would fold ``milvus://host`` into ``milvus:/host``)."""
    from ..retrieval.remote.uri import is_uri

    return text if is_uri(text) else Path(text)


def store_options(args: argparse.Namespace) -> dict:
    """The ``Index.build`` options for an engine URI (``{}`` for a folder).

    Raises:
        UsageError: an engine option with a folder, or a malformed one.
    """
    from ..retrieval.remote.milvus import CollectionOptions
    from ..retrieval.remote.uri import parse

    given = [
        flag
        for flag, value in (
            ("--store-index", args.store_index),
            ("--store-param", args.store_param),
            ("--shards", args.shards),
            ("--replicas", args.replicas),
            ("--verify", args.verify),
        )
        if value
    ]
    if parse(args.out) is None:
        if given:
            raise UsageError(f"{given[0]} needs --out URI (a vector engine), not a folder")
        return {}
    params = {}
    for text in args.store_param:
        key, _, value = text.partition("=")
        if not key or not value.strip().isdigit():
            raise UsageError(f"--store-param {safe(text)}: write KEY=NUMBER, e.g. ef=128")
        params[key.strip()] = int(value)
    options = CollectionOptions.make(args.store_index, params, args.shards, args.replicas)
    return {"options": options, "verify": args.verify}


def validate(args: argparse.Namespace) -> dict:
    """Check every argument before anything loads; returns the existing index's info ({}).

    Raises:
        UsageError: naming the argument at fault.
    """
    from ..retrieval.repair import recorded_info

    if not args.paths and not (args.report or args.repair or args.pages):
        raise UsageError(
            "give PATHs or --pages GLOB to index, --repair, or --report to list skipped items"
        )
    for name in ("batch_size", "dim"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise UsageError(f"--{name.replace('_', '-')} must be at least 1, got {value}")
    if args.workers is not None and args.workers < (1 if args.engine == "ray" else 0):
        raise UsageError(
            f"--workers must be at least {int(args.engine == 'ray')}, got {args.workers}"
        )
    if args.devices is not None:
        if args.device is not None:
            raise UsageError("give --device or --devices, not both")
        args.devices = [name.strip() for name in args.devices.split(",") if name.strip()]
        if not args.devices:
            raise UsageError("--devices needs at least one device, e.g. cuda:0,cuda:1")
    for path in args.paths:
        if not path.exists():
            raise UsageError(f"no such file or folder: {safe(str(path))}")
    args.store = store_options(args)  # parses a URI: a bad one fails here
    if args.store:
        if args.repair:
            raise UsageError(
                f"--repair is for index folders; rerun `mmembed index PATH... --out {safe(args.out)}`"
            )
        if args.binary or args.index_type:
            raise UsageError("--index-type and --binary are for index folders; use --store-index")
        from ..retrieval.remote.ledger import recorded_settings
        from ..retrieval.remote.uri import parse

        recorded = recorded_settings(parse(args.out).ledger)
    elif args.out.exists() and not args.out.is_dir():
        raise UsageError(f"--out {safe(str(args.out))} is a file, not an index folder")
    else:
        recorded = recorded_info(args.out) if args.out.is_dir() else {}
    if (args.report or args.repair) and not args.paths and not recorded:
        raise FileNotFoundError(f"no index at {args.out}")
    if recorded and args.dim is not None and args.dim != recorded.get("matryoshka_dim"):
        raise UsageError(
            f"{args.out} was built with --dim {recorded.get('matryoshka_dim') or 'full'}, "
            f"not {args.dim}; index into a new {'collection' if args.store else 'folder'} "
            "to change it"
        )
    if (
        recorded
        and args.instruction is not None
        and args.instruction != recorded.get("instruction")
    ):
        raise UsageError(
            f"{args.out} was built with another --instruction; index into a new "
            f"{'collection' if args.store else 'folder'} to change it"
        )
    return recorded


def run(args: argparse.Namespace) -> int:
    from ..retrieval import Index

    recorded = validate(args)
    if not args.paths and not args.pages and args.report:
        skipped = Index.open(args.out).skipped()
        with quiet_broken_pipe():
            print_report(skipped)
        return 0
    if args.engine == "ray":
        import ray

        if not ray.is_initialized():
            ray.init(address=args.ray_address, log_to_driver=False)
    from ..models.lazy import LazyEmbedder

    # The model loads only if something needs embedding: a no-op re-run stays fast.
    from ..models.zoo import get_pretrained

    model = args.model or recorded.get("model") or DEFAULT_MODEL
    device = args.devices[0] if args.devices else args.device
    given_pages = args.pages is not None
    pages = PageOptions.resolve(recorded, args.pdf_route, args.pages)
    notes = page_notes(args, pages, recorded)  # said once the run succeeded
    args.pdf_route = pages.pdf_route
    # A page route by name is the zoo model's page tower: mmembed-mini(page="ocr")...; else
    # the tower the index was built with, so a re-run reads new pages as the old ones were.
    page = args.pdf_route if args.pdf_route in MODEL_ROUTES else recorded.get("page_route")
    same_model = args.pdf_route in MODEL_ROUTES or model == recorded.get("model")
    named_route = page in MODEL_ROUTES and same_model and get_pretrained(model) is not None
    embedder = LazyEmbedder(model, device=device, **({"page": page} if named_route else {}))
    if args.dim is not None and args.dim > embedder.dim:
        raise UsageError(f"--dim {args.dim} is more than {embedder.name}'s {embedder.dim} dims")
    options = {
        "instruction": args.instruction
        if args.instruction is not None
        else recorded.get("instruction"),
        "dim": args.dim if args.dim is not None else recorded.get("matryoshka_dim"),
        "index_type": "binary" if args.binary else args.index_type,
        "engine": args.engine,
        "batch_size": args.batch_size,
        "num_workers": args.workers,
        "devices": args.devices,
        "sync": not args.no_sync,
        "rehash": args.rehash,
        "follow_symlinks": args.follow_symlinks,
        "pdf_route": args.pdf_route,
        "pages": args.pages,  # None: the index's globs, matched again
    }
    if args.paths or given_pages:
        index = Index.build(args.paths, embedder, args.out, **options, **args.store)
    else:
        index = Index.repair(args.out, embedder, **options)
    for note in notes:
        print(f"mmembed index: {safe(note)}", file=sys.stderr)
    with quiet_broken_pipe():
        print_summary(args, index)
    if len(index) == 0:
        reason = "every file was skipped" if index.last_update.skipped else "no files were found"
        print(f"mmembed index: warning: the index is empty: {reason}", file=sys.stderr)
    if embedder.loaded or not has_query_encoder(index.path, index.info["model"]):
        export_query_tower(embedder.load(), index.path)  # an engine's: into its ledger folder
    return 0


def page_notes(args: argparse.Namespace, options: PageOptions, recorded: dict) -> list[str]:
    """What a re-run says about pages: the options it takes from the index because it did not
    give them (not the defaults), and the options given that differ from the index's."""
    reused = []
    if args.pdf_route is None and options.pdf_route != "auto":
        reused.append(f"--pdf-route {options.pdf_route}")
    if args.pages is None:
        reused.extend(f"--pages {shlex.quote(pattern)}" for pattern in options.pages)
    notes = [f"as {args.out} was built: {' '.join(reused)}"] if reused else []
    before = PageOptions.recorded(recorded)
    changed = options.changes(before) if recorded else {}
    what = {
        "--pdf-route": "pages read another way",
        "--pages": "images newly or no longer marked as pages",
    }
    notes.extend(
        f"{flag} {change}: {what[flag]} were indexed again" for flag, change in changed.items()
    )
    return notes


def export_query_tower(embedder, index_dir: Path) -> None:
    """Export the query towers for torch-free search (see retrieval.fast_query)."""
    from ..retrieval.fast_query import export_query_encoder

    try:
        export_query_encoder(embedder, index_dir)
    except (ImportError, RuntimeError, OSError) as error:
        logger.warning("queries will load the torch model: ONNX export failed: %s", error)


def print_summary(args: argparse.Namespace, index) -> None:
    """What the run did: counts, repairs, the search structure, skipped items."""
    report = index.last_update
    spec = index.info["vectors"]
    failed = f", {report.failed} failed" if report.failed else ""
    reused = f", {report.reused} reused from identical content" if report.reused else ""
    print(
        f"{plural(len(index), 'item')} in {safe(str(args.out))} ({report.added} added, "
        f"{report.updated} updated, {report.removed} removed, {report.unchanged} unchanged; "
        f"embedded {report.embedded}{failed}{reused}, {report.resumed} resumed from a checkpoint)"
    )
    print(f"search: {describe_structure(spec)}")
    if report.skipped:
        hint = "" if args.report else " (list them with --report)"
        print(f"skipped {plural(len(report.skipped), 'item')}{hint}")
    if report.repaired:
        print(f"repaired {safe(str(args.out))}: {safe(report.repaired)}")
    if args.report:
        print_report(report.skipped)


def describe_structure(spec: dict) -> str:
    """One line on how the index searches and the recall@10 it was measured to give."""
    kind = spec["kind"]
    recall = f"recall@10 {spec['recall_at_10']:.3f} vs exact"
    if kind == "engine":
        params = {**spec["build_params"], **spec["search_params"]}
        settings = " ".join(f"{key}={value}" for key, value in params.items())
        return (
            f"{spec['engine']} collection {spec['collection']}: {spec['index_type']} {settings}, "
            f"{spec['shards']} shard(s), {spec['replicas']} replica(s)"
        )
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
        print(f"skipped {safe(row.get('path') or row['id'])}: {safe(row['reason'])}")
