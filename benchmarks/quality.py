"""A held-out text retrieval set, and the R@1 / nDCG@10 a text encoder reaches on it.

Queries are the summaries (first paragraphs) of standard-library functions and classes; each one's
relevant document is the rest of its docstring (at least 20 words), and every other docstring
is a distractor. The modules are not the ones ``benchmarks.data`` builds its timing texts
from, and neither the runtimes' check sentences nor their calibration texts come from Python's
docs, so the set is held out from everything a quantised copy saw. Ranking goes through
``mmembed.eval.metrics`` (pessimistic ties: a tie with a distractor counts against the query).
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable

import numpy as np

MODULES = (
    "os", "shutil", "itertools", "functools", "string", "re", "textwrap", "datetime",
    "random", "statistics", "zipfile", "tarfile", "csv", "urllib.parse", "socket", "heapq",
    "bisect", "fractions", "decimal", "tempfile", "glob", "fnmatch", "difflib", "calendar",
    "base64", "hashlib", "gzip", "configparser", "sqlite3", "http.client", "ftplib", "queue",
)  # fmt: skip
MIN_WORDS = 20  # words a document must have beyond its summary line


def docstring_pairs(limit: int = 400) -> list[tuple[str, str]]:
    """(summary, rest of the docstring) per documented function or class, in a fixed order."""
    pairs, seen = [], set()
    for name in MODULES:
        module = importlib.import_module(name)
        for _, obj in sorted(inspect.getmembers(module), key=lambda item: item[0]):
            if getattr(obj, "__module__", None) not in (name, f"_{name}"):
                continue  # builtins and names imported from elsewhere
            doc = inspect.getdoc(obj) or ""
            summary, _, rest = doc.partition("\n\n")  # the first paragraph is the summary
            summary, rest = " ".join(summary.split()), " ".join(rest.split())
            if len(summary.split()) < 4 or len(rest.split()) < MIN_WORDS:
                continue
            if summary in seen or rest in seen:
                continue  # aliases share a docstring
            seen |= {summary, rest}
            pairs.append((summary.strip(), rest))
    step = max(len(pairs) // limit, 1)
    return pairs[::step][:limit]


def retrieval_quality(
    encode: Callable[[list[str]], np.ndarray], pairs: list[tuple[str, str]] | None = None
) -> dict[str, float]:
    """Mean R@1 and nDCG@10 of ``encode`` (texts -> unit rows) on the docstring set (ties
    counted against the query: ``ties="pessimistic"``)."""
    from mmembed.eval.metrics import ndcg_at_k, one_hot_relevance, ranked_relevance

    pairs = pairs or docstring_pairs()
    queries = np.asarray(encode([q for q, _ in pairs]), dtype=np.float32)
    documents = np.asarray(encode([d for _, d in pairs]), dtype=np.float32)
    scores = queries @ documents.T  # (Q, D): query i's relevant document is document i
    hits, ndcgs = [], []
    for i, row in enumerate(scores):
        ranked = ranked_relevance(row, one_hot_relevance(len(row), i), ties="pessimistic")
        hits.append(float(ranked[0] > 0))
        ndcgs.append(ndcg_at_k(ranked, 10))
    return {"recall_at_1": float(np.mean(hits)), "ndcg_at_10": float(np.mean(ndcgs))}
