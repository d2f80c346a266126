"""A self-contained HTML page of search results: thumbnails inlined as data URIs."""

from __future__ import annotations

import base64
import html
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from ..hub.atomic import write_atomic
from .names import shown
from .results import Hit, page_line

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; background: #fff; }
h1 { font-size: 1.3em; } h2 { font-size: 1.1em; margin-top: 2em; }
.meta { color: #666; font-size: 0.9em; }
.results { display: flex; flex-wrap: wrap; gap: 1em; }
.hit { width: 180px; border: 1px solid #ddd; border-radius: 6px; padding: 8px; }
.hit img { width: 160px; height: 160px; object-fit: contain; background: #f4f4f4; }
.score { font-weight: bold; } .modality { color: #0a6; text-transform: uppercase; font-size: 0.8em; }
.path, .snippet { font-size: 0.8em; overflow-wrap: anywhere; }
.snippet { color: #555; max-height: 6em; overflow: hidden; }
.noimg { width: 160px; height: 160px; background: #eee; display: flex; align-items: center;
         justify-content: center; color: #999; }
"""


def text(value: object) -> str:
    """Any value as HTML text: escaped for markup and for bytes or controls no page can show.
    Renderers never assume a type: a caption may be a number in an older index."""
    return html.escape(shown(value if isinstance(value, str) else str(value)))


def data_uri(jpeg: bytes) -> str:
    """A ``data:image/jpeg;base64,...`` URI for inline images."""
    return "data:image/jpeg;base64," + base64.b64encode(jpeg).decode("ascii")


def render_page(
    title: str,
    sections: Sequence[tuple[str, bytes | None, Sequence[Hit]]],
    thumbnails: Mapping[int, bytes | None],
    subtitle: str = "",
    query: str | None = None,
) -> str:
    """The HTML of a results page.

    Args:
        title: page heading.
        sections: one ``(query label, query thumbnail or None, hits)`` per query.
        thumbnails: JPEG bytes by hit position.
        subtitle: a line under the heading (index, model, recall).
        query: the text query, whose words pick the line a page result shows.
    """
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{text(title)}</title><style>{STYLE}</style></head><body>",
        f"<h1>{text(title)}</h1>",
        f'<p class="meta">{text(subtitle)}</p>',
    ]
    for label, query_thumbnail, hits in sections:
        parts.append(results_section(label, hits, thumbnails, query_thumbnail, query))
    parts.append("</body></html>")
    return "\n".join(parts)


def results_section(
    label: str,
    hits: Sequence[Hit],
    thumbnails: Mapping[int, bytes | None],
    query_thumbnail: bytes | None = None,
    query: str | None = None,
) -> str:
    """One query's results: its label (and picture), then a grid of hit cards; a page's card
    shows its number, the route that read it and the line of its text that best matches
    ``query``, and links to the page of the PDF."""
    parts = [f'<section class="query"><h2>{text(label)}</h2>']
    if query_thumbnail:
        parts.append(f'<img class="query-image" alt="query" src="{data_uri(query_thumbnail)}">')
    parts.append('<div class="results">')
    parts.extend(_hit_card(hit, thumbnails.get(hit.position), query) for hit in hits)
    parts.append("</div></section>")
    return "\n".join(parts)


def _hit_card(hit: Hit, thumbnail: bytes | None, query: str | None = None) -> str:
    if hit.modality == "page" and hit.path:
        return _page_card(hit, thumbnail, query)
    name = os.path.basename(hit.path) if hit.path else hit.id
    image = (
        f'<img alt="{text(name)}" src="{data_uri(thumbnail)}">'
        if thumbnail
        else '<div class="noimg">no preview</div>'
    )
    caption = hit.metadata.get("caption") if isinstance(hit.metadata, dict) else None
    snippet = caption if caption not in (None, "") else hit.snippet
    if snippet is not None and text(snippet) == text(name):
        snippet = None  # a photo without a caption: its snippet is the name shown above it
    return (
        f'<div class="hit" data-rank="{int(hit.rank)}">{image}'
        f'<div><span class="score">#{int(hit.rank)} &middot; {float(hit.score):.3f}</span> '
        f'<span class="modality">{text(hit.modality)}</span></div>'
        f'<div class="path" title="{text(hit.path or hit.id)}">{text(name)}</div>'
        f'<div class="snippet">{text(snippet if snippet is not None else "")}</div></div>'
    )


def _page_card(hit: Hit, thumbnail: bytes | None, query: str | None) -> str:
    """A page's card: thumbnail and name link to the page (``file.pdf#page=N``, or the page
    image); the line shown comes from its text layer or from what the reader or OCR read."""
    link = Path(hit.path).resolve().as_uri()
    name = os.path.basename(hit.path)
    if hit.page is not None:
        link, name = f"{link}#page={hit.page}", f"{name}, page {hit.page}"
    link = text(link)
    image = (
        f'<img alt="{text(name)}" src="{data_uri(thumbnail)}">'
        if thumbnail
        else '<div class="noimg">no preview</div>'
    )
    page = f' data-page="{int(hit.page)}"' if hit.page is not None else ""
    return (
        f'<div class="hit" data-rank="{int(hit.rank)}"{page}>'
        f'<a href="{link}">{image}</a>'
        f'<div><span class="score">#{int(hit.rank)} &middot; {float(hit.score):.3f}</span> '
        f'<span class="modality">page &middot; {text(hit.route or "")}</span></div>'
        f'<div class="path" title="{text(hit.id)}"><a href="{link}">{text(name)}</a></div>'
        f'<div class="snippet">{text(page_line(hit, query))}</div></div>'
    )


def write_page(path: str | os.PathLike, page: str) -> None:
    """Write the page atomically (``hub.atomic.write_atomic``)."""
    write_atomic(Path(path), lambda temporary: temporary.write_text(page, encoding="utf-8"))
