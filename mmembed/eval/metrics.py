"""Ranking metrics, and the one ranking function every evaluation in mmembed uses.

``ranking(scores, relevance, ties=...)`` orders candidates; ``ranked_relevance`` gives their
grades in that order; the metric functions (hit@k, recall@k, precision@k, nDCG@k, MRR) take that
ranked list; ``mean_metrics`` does it for a whole score matrix. Scripts, benchmarks, training
evaluations and the MMEB harness all call these, each naming its tie rule.

Tie rules (NaN scores, items that failed to embed, rank last in all of them):

* ``"stable"``: equal scores keep the candidates' order. This is VLM2Vec-V2's ranking,
  ``np.argsort(-scores)`` over the candidate list or corpus (``eval.py`` lines 302-343 on
  ``main``), read as a stable sort. With the correct candidate first, as in MMEB (V1), it is V1's
  ``np.argmax(scores) == 0`` (``eval.py`` line 167 on ``v1``): the first maximum wins.
* ``"optimistic"``: equal scores rank the more relevant candidate first (a tie counts for the
  query).
* ``"pessimistic"``: equal scores rank the less relevant candidate first, so a tie never helps;
  a model that gives every candidate the same score gets 0.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike

TieRule = Literal["stable", "optimistic", "pessimistic"]

TIE_RULES: dict[str, str] = {
    "stable": "stable: equal scores keep the candidates' order (VLM2Vec-V2's argsort; with the "
    "correct candidate first, VLM2Vec V1's argmax(scores) == 0); NaN ranks last",
    "optimistic": "optimistic: equal scores rank the more relevant candidate first; NaN ranks last",
    "pessimistic": "pessimistic: equal scores rank the less relevant candidate first, so a query "
    "counts as correct only when the correct candidate scores strictly higher than every other; "
    "NaN ranks last",
}
"""How each tie rule is described in a report."""

_METRIC_NAME = re.compile(r"^(hit|recall|precision|ndcg|mrr)(?:@(\d+))?$")


def _clean_scores(scores: ArrayLike) -> np.ndarray:
    values = np.asarray(scores, dtype=np.float64).reshape(-1)
    return np.where(np.isnan(values), -np.inf, values)


def ranking(scores: ArrayLike, relevance: ArrayLike | None = None, *, ties: TieRule) -> np.ndarray:
    """Candidate indices from best to worst.

    Args:
        scores: one score per candidate (higher is better; NaN counts as lowest).
        relevance: grades per candidate; "optimistic" and "pessimistic" break ties with them.
        ties: the tie rule (see the module docstring); always named by the caller.
    """
    if ties not in TIE_RULES:
        raise ValueError(f"unknown tie rule {ties!r}; use one of {sorted(TIE_RULES)}")
    values = _clean_scores(scores)
    grades = np.zeros_like(values) if relevance is None else np.asarray(relevance, np.float64)
    if grades.shape != values.shape:
        raise ValueError(f"{values.size} scores but {grades.size} relevance grades")
    if ties == "stable":
        return np.argsort(-values, kind="stable")
    tie_key = grades if ties == "pessimistic" else -grades
    # np.lexsort sorts by the last key first: score descending, then the tie key, then index.
    return np.lexsort((np.arange(values.size), tie_key, -values))


def ranked_relevance(scores: ArrayLike, relevance: ArrayLike, *, ties: TieRule) -> np.ndarray:
    """The relevance grades of the candidates in ranked order."""
    grades = np.asarray(relevance, dtype=np.float64).reshape(-1)
    return grades[ranking(scores, grades, ties=ties)]


def one_hot_relevance(num_candidates: int, positive: int = 0) -> np.ndarray:
    """Relevance with a single correct candidate, MMEB's layout (``positive=0``)."""
    grades = np.zeros(num_candidates, dtype=np.float64)
    grades[positive] = 1.0
    return grades


def mean_metrics(
    scores: ArrayLike,
    relevance: ArrayLike,
    metrics: Sequence[str],
    *,
    ties: TieRule,
) -> dict[str, float]:
    """Mean of each metric over the rows of a query-by-candidate score matrix.

    Args:
        scores: ``(Q, N)`` scores, higher is better.
        relevance: ``(Q, N)`` grades (> 0 is relevant), e.g. ``np.eye(Q)`` when query ``i``
            owns candidate ``i``.
        metrics: names understood by ``metric_value`` ("recall@5", "ndcg@10", "mrr", ...).
        ties: the tie rule.
    """
    matrix = np.asarray(scores, dtype=np.float64)
    grades = np.asarray(relevance, dtype=np.float64)
    if matrix.ndim != 2 or matrix.shape != grades.shape:
        raise ValueError(f"scores {matrix.shape} and relevance {grades.shape} must be (Q, N)")
    totals = dict.fromkeys(metrics, 0.0)
    for row, grade in zip(matrix, grades, strict=True):
        ranked = ranked_relevance(row, grade, ties=ties)
        for name in metrics:
            totals[name] += metric_value(name, ranked)
    return {name: total / max(len(matrix), 1) for name, total in totals.items()}


def chance_level(name: str, relevance: ArrayLike) -> float:
    """The expected value of metric ``name`` when the candidates are ranked at random (every
    order equally likely); a score near it means the model ranks no better than chance."""
    grades = np.asarray(relevance, dtype=np.float64).reshape(-1)
    total, relevant = grades.size, int(np.sum(grades > 0))
    kind, k = parse_metric(name)
    cut = min(k if k is not None else total, total)
    if relevant == 0 or total == 0:
        return 0.0
    if kind == "hit":
        return 1.0 - math.comb(total - relevant, cut) / math.comb(total, cut)
    if kind == "recall":
        return cut / total
    if kind == "precision":
        return relevant / total * cut / (k or 1)
    if kind == "ndcg":
        positions = np.log2(np.arange(2, cut + 2))
        ideal = dcg_at_k(np.sort(grades)[::-1], k or total)
        return float(grades.sum() / total * np.sum(1.0 / positions) / ideal)
    first = [
        math.comb(total - r, relevant - 1) / math.comb(total, relevant) for r in range(1, cut + 1)
    ]
    return float(sum(p / r for r, p in enumerate(first, start=1)))


def tie_changes(scores: ArrayLike, relevance: ArrayLike, name: str) -> bool:
    """Whether the tie rule can change metric ``name`` for this query: its value differs between
    the optimistic and the pessimistic ranking."""
    grades = np.asarray(relevance, dtype=np.float64).reshape(-1)
    best = metric_value(name, ranked_relevance(scores, grades, ties="optimistic"))
    worst = metric_value(name, ranked_relevance(scores, grades, ties="pessimistic"))
    return best != worst


def hit_at_k(ranked: ArrayLike, k: int) -> float:
    """1.0 when a relevant item (grade > 0) is in the top ``k``, else 0.0."""
    return float(np.any(np.asarray(ranked)[:k] > 0))


def precision_at_k(ranked: ArrayLike, k: int) -> float:
    """Fraction of the top ``k`` positions holding a relevant item (grade > 0)."""
    _check_k(k)
    return float(np.sum(np.asarray(ranked)[:k] > 0)) / k


def recall_at_k(ranked: ArrayLike, k: int, num_relevant: int | None = None) -> float:
    """Fraction of all relevant items found in the top ``k``.

    Args:
        ranked: relevance grades in ranked order.
        k: cut-off.
        num_relevant: relevant items for the query, including any not retrieved at all;
            defaults to the relevant items present in ``ranked``. Zero relevant gives 0.0.
    """
    _check_k(k)
    grades = np.asarray(ranked)
    total = int(np.sum(grades > 0)) if num_relevant is None else num_relevant
    if total == 0:
        return 0.0
    return float(np.sum(grades[:k] > 0)) / total


def dcg_at_k(ranked: ArrayLike, k: int) -> float:
    """Discounted cumulative gain with linear gain: ``sum(rel_i / log2(i + 1))`` over the top k."""
    _check_k(k)
    grades = np.asarray(ranked, dtype=np.float64)[:k]
    discounts = np.log2(np.arange(2, grades.size + 2))
    return float(np.sum(grades / discounts))


def ndcg_at_k(ranked: ArrayLike, k: int, ideal: ArrayLike | None = None) -> float:
    """Normalised DCG (linear gain, as in MMEB-V2's ``ndcg_linear@k``).

    Args:
        ranked: relevance grades in ranked order.
        k: cut-off.
        ideal: all relevance grades of the query (order irrelevant), including relevant items
            that were not retrieved; defaults to ``ranked``. No relevant item gives 0.0.
    """
    grades = np.asarray(ranked if ideal is None else ideal, dtype=np.float64)
    best = dcg_at_k(np.sort(grades)[::-1], k)
    return dcg_at_k(ranked, k) / best if best > 0 else 0.0


def reciprocal_rank(ranked: ArrayLike, k: int | None = None) -> float:
    """1 / rank of the first relevant item (0.0 if none within the top ``k``)."""
    grades = np.asarray(ranked)[: k if k is not None else None]
    hits = np.flatnonzero(grades > 0)
    return 1.0 / (int(hits[0]) + 1) if hits.size else 0.0


def metric_value(name: str, ranked: ArrayLike, num_relevant: int | None = None) -> float:
    """One metric by name ("hit@1", "recall@5", "precision@3", "ndcg@10", "mrr", "mrr@10").

    Args:
        name: metric name; ``ndcg`` and ``recall`` without ``@k`` use the whole list.
        ranked: relevance grades in ranked order (all candidates of the query).
        num_relevant: relevant items including unretrieved ones (recall only).
    """
    kind, k = parse_metric(name)
    cut = k if k is not None else max(len(ranked), 1)
    if kind == "hit":
        return hit_at_k(ranked, cut)
    if kind == "recall":
        return recall_at_k(ranked, cut, num_relevant)
    if kind == "precision":
        return precision_at_k(ranked, cut)
    if kind == "ndcg":
        return ndcg_at_k(ranked, cut)
    return reciprocal_rank(ranked, k)


def parse_metric(name: str) -> tuple[str, int | None]:
    """Split a metric name into its kind and cut-off, e.g. ``"ndcg@5" -> ("ndcg", 5)``."""
    match = _METRIC_NAME.match(name.strip().lower())
    if match is None:
        raise ValueError(
            f"unknown metric {name!r}; use hit@k, recall@k, precision@k, ndcg@k or mrr"
        )
    k = int(match.group(2)) if match.group(2) else None
    if k is not None:
        _check_k(k)
    if match.group(1) in ("hit", "precision") and k is None:
        raise ValueError(f"metric {name!r} needs a cut-off, e.g. {match.group(1)}@1")
    return match.group(1), k


def _check_k(k: int) -> None:
    if k < 1:
        raise ValueError(f"cut-off k must be >= 1, got {k}")
