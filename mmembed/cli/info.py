"""``mmembed info NAME``: everything the zoo records about a model."""

from __future__ import annotations

import argparse
import sys
from dataclasses import fields

from ..hub import HubSource, LocalSource, PackageSource, UrlSource, WeightSource


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("info", help="show a named model's source, pin and settings")
    parser.add_argument("name", help="a name from `mmembed models`")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..models import zoo

    entry = zoo.get_pretrained(args.name)
    if entry is None:
        names = ", ".join(e.name for e in zoo.list_pretrained())
        print(f"mmembed info: unknown model {args.name!r}; known: {names}", file=sys.stderr)
        return 2
    print(entry.name)
    print(f"  {entry.description}")
    for field in fields(entry):
        value = getattr(entry, field.name)
        if field.name in ("name", "description", "source", "base_source") or value is None:
            continue
        if field.name == "modalities":
            value = ", ".join(m.value for m in value)
        print(f"  {field.name + ':':22s}{value}")
    print(f"  {'weights:':22s}{describe_source(entry.source)}")
    if entry.base_source is not None:
        print(f"  {'base weights:':22s}{describe_source(entry.base_source)}")
    cached = zoo.is_cached(entry)
    print(f"  {'cached:':22s}{'yes' if cached else 'no'}")
    if not cached:
        print(f"  {'fetch with:':22s}mmembed download {entry.name}")
    return 0


def describe_source(source: WeightSource) -> str:
    """One line saying where the weights come from and how they are pinned."""
    if isinstance(source, HubSource):
        files = f" files={','.join(source.files)}" if source.files else ""
        return f"hf://{source.repo_id}@{source.revision}{files}"
    if isinstance(source, UrlSource):
        return f"{source.url} sha256={source.sha256}"
    if isinstance(source, PackageSource):
        return f"pip package {source.pip_name} ({source.package}/{source.relative_path})"
    if isinstance(source, LocalSource):
        return f"local {source.path}"
    return repr(source)
