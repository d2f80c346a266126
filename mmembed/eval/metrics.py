"""Ranking metrics: hit@1 (MMEB's precision@1), recall@k, precision@k, nDCG@k and MRR.

Two entry points:

* per query, from scores: ``ranked_relevance(scores, relevance)`` sorts the relevance grades
  of the candidates by score; the metric functions then take that ranked list;
* per run, from ranked ids: ``retrieval_metrics(run, qrels, ...)`` averages over queries, for
  retrieval scripts that already hold ranked document ids.

Two tie rules, both deterministic; NaN scores (items that failed to embed) rank last in both:

* ``"official"`` (VLM2Vec's): equal scores rank the more relevant candidate first. VLM2Vec V1
  scores a query with ``np.argmax(scores) == 0`` (``evaluation/eval_utils.py`` line 16,
  ``eval.py`` line 167 on its ``v1`` branch); argmax returns the first maximum, and the correct
  candidate comes first, so a tie with it counts as correct. The MMEB harness uses this rule.
* ``"pessimistic"``: equal scores rank the less relevant candidate first, so a tie never helps a
  model; a model that gives every candidate the same score gets 0. The default of the
  functions below, which training code also calls.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike

TieRule = Literal["official", "pessimistic"]

TIE_RULES: dict[str, str] = {
    "official": "official (VLM2Vec): equal scores rank the more relevant candidate first (the "
    "correct candidate wins a tie, as argmax(scores) == 0 does), and a candidate identical to a "
    "correct one counts as correct (MMEB-V2 matches candidates by name); NaN ranks last",
    "pessimistic": "pessimistic: equal scores rank the less relevant candidate first, so a query "
    "counts as correct only when the correct candidate scores strictly higher than every other; "
    "NaN ranks last",
}
"""How each tie rule is described in a report."""

TIE_RULE = TIE_RULES["pessimistic"]
"""The rule of ``ranking``'s default (kept for callers that name it)."""

_METRIC_NAME = re.compile(r"^(hit|recall|precision|ndcg|mrr)(?:@(\d+))?$")


def _clean_scores(scores: ArrayLike) -> np.ndarray:
    values = np.asarray(scores, dtype=np.float64).reshape(-1)
    return np.where(np.isnan(values), -np.inf, values)


def ranking(
    scores: ArrayLike, relevance: ArrayLike | None = None, ties: TieRule = "pessimistic"
) -> np.ndarray:
    """Candidate indices from best to worst.

    Args:
        scores: one score per candidate (higher is better; NaN counts as lowest).
        relevance: grades per candidate used to break ties; None breaks ties by index only.
        ties: "pessimistic" ranks the less relevant of tied candidates first, "official" the
            more relevant (then the lower index, as ``np.argmax`` does).
    """
    if ties not in TIE_RULES:
        raise ValueError(f"unknown tie rule {ties!r}; use one of {sorted(TIE_RULES)}")
    values = _clean_scores(scores)
    grades = np.zeros_like(values) if relevance is None else np.asarray(relevance, np.float64)
    if grades.shape != values.shape:
        raise ValueError(f"{values.size} scores but {grades.size} relevance grades")
    tie_key = grades if ties == "pessimistic" else -grades
    # np.lexsort sorts by the last key first: score descending, then the tie key, then index.
    return np.lexsort((np.arange(values.size), tie_key, -values))


def ranked_relevance(
    scores: ArrayLike, relevance: ArrayLike, ties: TieRule = "pessimistic"
) -> np.ndarray:
    """The relevance grades of the candidates in ranked order."""
    grades = np.asarray(relevance, dtype=np.float64).reshape(-1)
    return grades[ranking(scores, grades, ties)]


def one_hot_relevance(num_candidates: int, positive: int = 0) -> np.ndarray:
    """Relevance with a single correct candidate, MMEB's layout (``positive=0``)."""
    grades = np.zeros(num_candidates, dtype=np.float64)
    grades[positive] = 1.0
    return grades


def is_hit_at_1(scores: ArrayLike, positive: int = 0, ties: TieRule = "pessimistic") -> bool:
    """Whether candidate ``positive`` ranks first: strictly above every other candidate
    ("pessimistic"), or at least as high ("official", VLM2Vec's ``argmax == 0`` for
    ``positive=0``)."""
    values = _clean_scores(scores)
    best = values[positive]
    others = np.delete(values, positive)
    if not np.isfinite(best) or others.size == 0:
        return bool(np.isfinite(best))
    return bool(best > others.max() if ties == "pessimistic" else best >= others.max())


def top_tie(scores: ArrayLike, relevance: ArrayLike) -> bool:
    """Whether a relevant and an irrelevant candidate share the top score (the tie rule decides)."""
    values = _clean_scores(scores)
    grades = np.asarray(relevance, dtype=np.float64).reshape(-1)
    at_top = values == values.max()
    return bool(np.any(at_top & (grades > 0)) and np.any(at_top & (grades <= 0)))


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
    return 1.0 / (hits[0] + 1) if hits.size else 0.0


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


def retrieval_metrics(
    run: Mapping[str, Sequence[str]],
    qrels: Mapping[str, Mapping[str, float]],
    metrics: Sequence[str] = ("ndcg@10", "recall@1", "recall@5", "recall@10", "mrr@10"),
) -> dict[str, float]:
    """Mean metrics over queries, from ranked document ids and relevance judgements.

    Queries are those in ``qrels`` with at least one relevant document (grade > 0); a query
    missing from ``run`` scores 0. Recall and nDCG count relevant documents that were not
    retrieved. The ranking in ``run`` is taken as given (no ties to break).

    Args:
        run: query id -> document ids, best first.
        qrels: query id -> {document id: relevance grade}.
        metrics: metric names understood by ``metric_value``.

    Returns:
        metric name -> mean value in [0, 1]; an empty ``qrels`` gives NaN for every metric.
    """
    totals = dict.fromkeys(metrics, 0.0)
    count = 0
    for query_id, judged in qrels.items():
        grades_all = [g for g in judged.values() if g > 0]
        if not grades_all:
            continue
        count += 1
        ranked = [float(judged.get(doc, 0.0)) for doc in run.get(query_id, ())]
        for name in metrics:
            totals[name] += _run_metric(name, ranked, grades_all)
    if count == 0:
        return dict.fromkeys(metrics, math.nan)
    return {name: total / count for name, total in totals.items()}


def _run_metric(name: str, ranked: list[float], relevant_grades: list[float]) -> float:
    kind, k = parse_metric(name)
    cut = k if k is not None else max(len(ranked), 1)
    if kind == "ndcg":
        return ndcg_at_k(ranked, cut, ideal=relevant_grades) if ranked else 0.0
    if kind == "recall":
        return recall_at_k(ranked, cut, len(relevant_grades)) if ranked else 0.0
    return metric_value(name, ranked) if ranked else 0.0


def _check_k(k: int) -> None:
    if k < 1:
        raise ValueError(f"cut-off k must be >= 1, got {k}")
