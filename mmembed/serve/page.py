"""The search page: a query box, an upload form and a results grid, rendered by the server.

No script and nothing fetched from elsewhere: the forms submit to the server, thumbnails are
inlined, so the page works offline and in any browser.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence

from ..retrieval.html import STYLE, results_section
from ..retrieval.results import Hit

_FORMS_STYLE = """
form { display: inline-flex; gap: 0.5em; margin: 0 1.5em 1em 0; align-items: center; }
input[type=search] { width: 28em; padding: 0.4em; font-size: 1em; }
.empty { color: #a00; }
"""


def render(
    service,
    label: str,
    hits: Sequence[Hit],
    thumbnails: Mapping[int, bytes | None],
    query: str = "",
) -> str:
    """The whole page; ``label`` is empty before the first search."""
    count = len(service)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>mmembed search{html.escape(' · ' + label if label else '')}</title>",
        f"<style>{STYLE}{_FORMS_STYLE}</style></head><body>",
        "<h1>mmembed search</h1>",
        f'<p class="meta">{count} item{"" if count == 1 else "s"} indexed with '
        f"{html.escape(service.model)}: search them by text, or by an image or a video</p>",
        '<form method="get" action="/" role="search">',
        f'<input type="search" name="q" value="{html.escape(query)}" '
        'placeholder="describe what you are looking for" autofocus>',
        '<button type="submit">Search</button></form>',
        '<form method="post" action="/" enctype="multipart/form-data">',
        '<input type="file" name="file" accept="image/*,video/*" required>',
        '<button type="submit">Search by image</button></form>',
    ]
    if count == 0:
        parts.append('<p class="empty">This index is empty: index some files first.</p>')
    if label:
        parts.append(results_section(label, hits, thumbnails, query=query or None))
    parts.append("</body></html>")
    return "\n".join(parts)
