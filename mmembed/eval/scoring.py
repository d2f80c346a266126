"""Scoring one MMEB dataset from its vectors, as each version of VLM2Vec's code scores it.

* MMEB (V1) datasets: each query is ranked among its own candidates; hit@1 is VLM2Vec V1's
  ``np.argmax(scores) == 0`` (``eval.py`` lines 160-169 on ``v1``), the stable ranking.
* MMEB-V2 datasets: ranked among the row's candidates (``eval_type: local``) or against the
  whole candidate corpus (``eval_type: global``; ``eval.py`` lines 302-334 on ``main``), with
  V2's stable ``argsort(-scores)`` and hits counted by candidate name
  (``src/utils/eval_utils/metrics.py`` lines 24-83).

The corpus of a global dataset is every row's candidates in order of first appearance, then the
dataset's extra corpus, without repeats (``generate_cand_dataset``, ``base_eval_dataset.py``
lines 121-152). For every metric it reports, the scorer also counts the queries whose value the
tie rule decides, and the value under the pessimistic and optimistic rules.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .data import Example, RowItem
from .metrics import TieRule, chance_level, metric_value, ranking


@dataclass
class Scored:
    """A dataset's scores: the means over queries, tie counts, bounds and predictions."""

    metrics: dict[str, float]  # metric -> mean under the run's tie rule
    bounds: dict[str, tuple[float, float]]  # metric -> (pessimistic, optimistic) means
    tied: dict[str, int]  # metric -> queries whose value the tie rule decides
    chance: dict[str, float]  # metric -> mean value of a random ranking
    failed_rows: int = 0  # rows with an item that failed to embed
    duplicated: int = 0  # queries whose positive repeats among the candidates
    predictions: list[dict[str, Any]] = field(default_factory=list)  # one per query


def candidate_name(item: RowItem) -> str:
    """The name VLM2Vec-V2 keys a candidate by: its video, else its image path, else its text
    (``cand_names`` in ``src/data/eval_dataset/*``)."""
    return item.name or item.video or item.image or item.text


def score_rows(
    vectors: np.ndarray,
    row_of: dict[RowItem, int],
    examples: list[Example],
    metrics: tuple[str, ...],
    ties: TieRule,
    corpus: list[RowItem] | None = None,
    skipped_rows: int = 0,
) -> Scored:
    """Rank and score every row.

    Args:
        vectors: one unit vector per item (NaN rows: failed items, ranked last).
        row_of: item -> its row in ``vectors``.
        examples: the dataset's rows.
        metrics: metric names; the first is the headline.
        ties: the run's tie rule ("stable" is the official one).
        corpus: for a globally ranked dataset, the candidate corpus in V2's order; None ranks
            each row among its own candidates.
        skipped_rows: malformed rows left out; each scores 0 (a lower bound).
    """
    names = tuple(metrics)
    sums = {rule: dict.fromkeys(names, 0.0) for rule in (ties, "pessimistic", "optimistic")}
    tied = dict.fromkeys(names, 0)
    chance = dict.fromkeys(names, 0.0)
    scored = Scored({}, {}, tied, chance)
    corpus_rows = [row_of[item] for item in corpus] if corpus is not None else None
    for example in examples:
        pool = corpus if corpus is not None else list(example.candidates)
        rows = corpus_rows if corpus_rows is not None else [row_of[c] for c in pool]
        scores = score_candidates(vectors, row_of[example.query], rows)
        grades = _grades(example, pool, ties, corpus is not None)
        scored.duplicated += corpus is None and grades != example.relevance
        scored.failed_rows += bool(np.isnan(vectors[[row_of[example.query], *rows]]).any())
        ranked = {}
        for rule in sums:
            order = ranking(scores, grades, ties=rule)
            ranked[rule] = np.asarray(grades)[order]
            if rule == ties:
                scored.predictions.append(_prediction(example, pool, order, grades))
        for name in names:
            values = {rule: metric_value(name, ranked[rule]) for rule in sums}
            for rule, value in values.items():
                sums[rule][name] += value
            tied[name] += int(values["pessimistic"] != values["optimistic"])
            chance[name] += chance_level(name, grades)
    count = max(len(examples) + skipped_rows, 1)
    scored.metrics = {name: sums[ties][name] / count for name in names}
    scored.bounds = {
        name: (sums["pessimistic"][name] / count, sums["optimistic"][name] / count)
        for name in names
    }
    scored.chance = {name: value / count for name, value in chance.items()}
    return scored


def global_corpus(examples: list[Example], extra: list[RowItem]) -> list[RowItem]:
    """Every row's candidates in order of first appearance, then ``extra``, without repeats
    (V2's ``generate_cand_dataset``; repeats are found by candidate name)."""
    seen: dict[str, RowItem] = {}
    for item in [c for example in examples for c in example.candidates] + list(extra):
        seen.setdefault(candidate_name(item), item)
    return list(seen.values())


def _grades(
    example: Example, pool: list[RowItem], ties: TieRule, corpus_wide: bool
) -> tuple[float, ...]:
    """Relevance of each candidate of ``pool`` for this query.

    Corpus-wide, a corpus item is relevant with the grade its row gives it, matched by name (V2
    scores hits by name: ``eval.py`` lines 338-343 and ``src/utils/eval_utils/metrics.py``
    lines 63-83 on ``main``). Among the row's own candidates, the official rule lets a repeat of
    a relevant candidate share its grade (V2 matches names; V1 gives the repeat the same vector,
    ``eval.py`` lines 148-163 on ``v1``, it ties, and argmax picks the positive); the
    pessimistic rule does not.
    """
    if corpus_wide:
        labels: dict[str, float] = {}
        for item, grade in zip(example.candidates, example.relevance, strict=True):
            if grade > 0:
                labels[candidate_name(item)] = max(grade, labels.get(candidate_name(item), 0.0))
        return tuple(labels.get(candidate_name(item), 0.0) for item in pool)
    if ties == "pessimistic":
        return example.relevance
    best: dict[RowItem, float] = {}
    for candidate, grade in zip(example.candidates, example.relevance, strict=True):
        best[candidate] = max(grade, best.get(candidate, grade))
    return tuple(best[candidate] for candidate in example.candidates)


def _prediction(
    example: Example, pool: list[RowItem], order: np.ndarray, grades: tuple[float, ...]
) -> dict[str, Any]:
    labels = [
        (candidate_name(item), grade)
        for item, grade in zip(example.candidates, example.relevance, strict=True)
        if grade > 0
    ]
    graded = any(grade != 1.0 for grade in example.relevance if grade > 0)
    top = pool[int(order[0])]
    return {
        "prediction": [candidate_name(pool[int(i)]) for i in order],
        "label": [name for name, _ in labels],
        "rel_scores": [grade for _, grade in labels] if graded else None,
        "top": (top.text, top.image),  # V1's *_pred.txt line
    }


def score_candidates(vectors: np.ndarray, query: int, candidates: list[int]) -> np.ndarray:
    """Dot products of one query row with its candidate rows, in float64.

    Each distinct row is scored once and the score copied to its repeats, and each product is
    a row-wise sum, so equal vectors give bit-identical scores (ties are exact, not noise).
    """
    rows, inverse = np.unique(np.asarray(candidates), return_inverse=True)
    query_vector = vectors[query].astype(np.float64)
    scores = (vectors[rows].astype(np.float64) * query_vector).sum(axis=1)
    return scores[inverse]
