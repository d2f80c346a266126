"""``mmembed search INDEX_DIR "a cat on a sofa"``: query an index by text, image, video or table."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from ..errors import InputError, UsageError
from ..modality import Modality
from . import plural
from .index import index_target
from .terminal import quiet_broken_pipe, safe

logger = logging.getLogger(__name__)

QUERY_FLAGS = {
    "image": Modality.IMAGE,
    "video": Modality.VIDEO,
    "table": Modality.TABLE,
    "document": Modality.DOCUMENT,
}


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("search", help="search an index built by 'mmembed index'")
    parser.add_argument(
        "index",
        type=index_target,
        help="index folder, or a vector engine URI (milvus-lite:///PATH/db.db?collection=NAME, "
        "milvus://HOST:PORT/NAME)",
    )
    parser.add_argument("text", nargs="?", default=None, help="text query")
    for flag in QUERY_FLAGS:
        parser.add_argument(f"--{flag}", type=Path, default=None, help=f"{flag} file as the query")
    parser.add_argument("-k", "--top-k", type=int, default=10, help="results to show")
    parser.add_argument(
        "--modality", default=None, help="only these result modalities, e.g. image,video"
    )
    parser.add_argument("--instruction", default=None, help="query instruction")
    parser.add_argument("--model", default=None, help="override the index's model")
    parser.add_argument("--device", default=None, help="cpu, cuda, ... (default cpu)")
    parser.add_argument("--json", action="store_true", help="print results as a JSON list")
    parser.add_argument("--html", type=Path, default=None, help="write a results page")
    parser.add_argument(
        "--verify",
        action="store_true",
        help="compare every index file and the ONNX exports its queries use with their "
        "checksums, and check every vector, first",
    )
    parser.set_defaults(func=run)


def validate(args: argparse.Namespace) -> list[str] | None:
    """Check the arguments before anything loads; returns the modality filter.

    Raises:
        UsageError: naming the argument at fault.
    """
    if args.top_k < 1:
        raise UsageError(f"--top-k must be at least 1, got {args.top_k}")
    from ..retrieval.remote.uri import parse

    if parse(args.index) is None and not args.index.is_dir():  # a URI is checked when opened
        raise FileNotFoundError(f"no index at {safe(str(args.index))}")
    if args.html is not None and args.html.is_dir():
        raise UsageError(f"--html {safe(str(args.html))} is a folder, not a file")
    if not args.modality:
        return None
    modalities = [name.strip() for name in args.modality.split(",") if name.strip()]
    unknown = set(modalities) - {modality.value for modality in Modality}
    if unknown or not modalities:
        raise UsageError(f"unknown modality {safe(', '.join(sorted(unknown)) or args.modality)}")
    return modalities


def run(args: argparse.Namespace) -> int:
    # Everything the user typed is checked before a model loads (seconds), so typos fail fast.
    from ..retrieval import Index

    modalities = validate(args)
    label, query, query_thumbnail = parse_query(args)
    index = Index.open(args.index, verify=args.verify)
    if args.verify:
        from ..retrieval.fast_query import verify_exports

        for folder in verify_exports(index.path):
            print(
                f"mmembed search: deleted the damaged ONNX export {safe(folder)}; this search "
                "uses the torch model (`mmembed index` exports it again)",
                file=sys.stderr,
            )
    if len(index) == 0:
        print(
            f"mmembed search: the index {safe(str(args.index))} is empty: nothing to search "
            f"(add files with 'mmembed index PATH --out {safe(str(args.index))}')",
            file=sys.stderr,
        )
        if args.json:
            with quiet_broken_pipe():
                print("[]")
        return 0
    hits = search_hits(index, args, query, modalities)
    if args.html is not None:
        from ..retrieval.html import render_page, write_page

        subtitle = f"{plural(len(index), 'item')} in {args.index} · model {index.info['model']}"
        sections = [(label, query_thumbnail, hits)]  # the query is the section's heading
        page = render_page("mmembed search", sections, index.thumbnails(hits), subtitle, args.text)
        write_page(args.html, page)
    with quiet_broken_pipe():
        if args.json:
            print(json.dumps([hit.to_dict() for hit in hits], indent=2))
        elif args.html is None or hits:
            for hit in hits:
                print_hit(hit, args.text)
        if args.html is not None and not args.json:
            print(f"wrote {safe(str(args.html))}")
    return 0


def print_hit(hit, query: str | None) -> None:
    """One result line; a page shows ``file.pdf#page=N`` (or its image file), its route and,
    indented, the line of its text (text layer, or what the reader or OCR read) that best
    matches the query."""
    from ..retrieval.results import page_line

    if hit.modality != "page":
        print(f"{hit.rank:3d}  {hit.score:.4f}  {hit.modality:8s}  {safe(hit.path or hit.id)}")
        return
    name = hit.id if hit.page is not None else hit.path or hit.id
    print(f"{hit.rank:3d}  {hit.score:.4f}  page      {safe(name)}  ({safe(hit.route or '')})")
    print(f"{'':23s}{safe(page_line(hit, query))}")


def search_hits(index, args: argparse.Namespace, query: object, modalities: list[str] | None):
    """The hits of one query, embedded as ``retrieval.fast_query.QueryRouter`` routes it (the
    index's ONNX exports need no torch import); ``--model`` or ``--device`` use the model."""
    from ..retrieval import Index
    from ..retrieval.fast_query import QueryRouter

    custom = bool(args.model or args.device)
    router = QueryRouter(
        index.path, index.info["model"], use_onnx=not custom
    )  # an engine's: its ledger

    def model_vectors(query: object, instruction: str | None, dim: int | None):
        if not args.model:
            check_recorded_model(args.index, index.info["model"])
        searched = index
        if custom:
            from ..models.registry import load

            embedder = load(args.model or index.info["model"], device=args.device)
            if hasattr(index, "use_model"):  # an engine's collection refuses another model
                index.use_model(embedder)
            else:
                searched = Index(index.path, index.generation, embedder)
        return searched.query_vectors([query], instruction)

    dim = index.info.get("matryoshka_dim")
    vectors = router.vectors(query, args.instruction, dim, model_vectors)
    return index.search_vectors(vectors, args.top_k, modalities)[0]


def check_recorded_model(index_dir: Path, model: str) -> None:
    """The index's model must still be reachable (a folder recorded by an older mmembed as a
    path relative to where it was built is not, from elsewhere).

    Raises:
        UsageError: naming the model and the way out (--model).
    """
    from ..models.reference import check_model

    try:
        check_model(model, what=f"index {index_dir} was built with the model")
    except UsageError as error:
        raise UsageError(f"{error}; give --model with that model's folder") from None


def parse_query(args: argparse.Namespace) -> tuple[str, object, bytes | None]:
    """The query input from the arguments: ``(label, input, thumbnail)``.

    Raises:
        InputError: no query or more than one, or the query file cannot be read.
    """
    from ..inputs import Text
    from ..retrieval.decode import decode_item
    from ..retrieval.walk import Item

    given = [(flag, getattr(args, flag)) for flag in QUERY_FLAGS if getattr(args, flag)]
    if (args.text is not None) + len(given) != 1:
        raise InputError('give exactly one query: "text", --image, --video, --table or --document')
    if args.text is not None:
        return f"“{args.text}”", Text(args.text), None
    flag, path = given[0]
    if not path.is_file():
        raise InputError(f"query {flag} file not found: {safe(str(path))}")
    item = Item(str(path.resolve()), QUERY_FLAGS[flag], path=str(path.resolve()))
    decoded = decode_item(item)
    return f"{flag}: {path.name}", decoded.input, decoded.thumbnail
