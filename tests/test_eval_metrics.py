"""Ranking metrics against values computed by hand, and the one ranking function against
pytrec_eval where their rules coincide (no ties)."""

from __future__ import annotations

import math
from itertools import permutations

import numpy as np
import pytest
import pytrec_eval

from mmembed.eval.metrics import (
    chance_level,
    dcg_at_k,
    hit_at_k,
    mean_metrics,
    metric_value,
    ndcg_at_k,
    parse_metric,
    precision_at_k,
    ranked_relevance,
    ranking,
    recall_at_k,
    reciprocal_rank,
    tie_changes,
)

LOG2_3, LOG2_5 = math.log2(3), math.log2(5)


def test_tie_rules():
    scores, relevance = [0.5, 0.5, 0.1], [0, 1, 0]
    assert list(ranking(scores, relevance, ties="stable")) == [0, 1, 2]  # V2's argsort
    assert list(ranking(scores, relevance, ties="optimistic")) == [1, 0, 2]
    assert list(ranking(scores, relevance, ties="pessimistic")) == [0, 1, 2]
    # V1's argmax == 0: with the positive first, the stable rule wins its ties
    assert ranked_relevance([0.3, 0.3, 0.3], [1, 0, 0], ties="stable")[0] == 1
    assert ranked_relevance([0.3, 0.3, 0.3], [1, 0, 0], ties="pessimistic")[0] == 0
    assert list(ranking([0.2, 0.2, 0.2], ties="pessimistic")) == [0, 1, 2]  # deterministic
    with pytest.raises(TypeError):
        ranking([0.1, 0.2])  # the rule is always named
    with pytest.raises(ValueError, match="unknown tie rule"):
        ranking([0.1], ties="official")


def test_stable_rule_is_numpys_stable_argsort():
    rng = np.random.default_rng(0)
    for _ in range(50):
        scores = rng.integers(0, 4, size=40).astype(float)  # many ties
        expected = np.argsort(-scores, kind="stable")
        assert list(ranking(scores, ties="stable")) == list(expected)


def test_nan_scores_rank_last():
    for rule in ("stable", "optimistic", "pessimistic"):
        assert list(ranking([math.nan, 0.1, 0.3], ties=rule)) == [2, 1, 0]


def test_tie_changes_looks_at_every_cutoff():
    scores, relevance = [0.9, 0.5, 0.5, 0.5], [0, 0, 0, 1]
    assert not tie_changes(scores, relevance, "hit@1")  # rank 1 is decided
    assert tie_changes(scores, relevance, "hit@2") and tie_changes(scores, relevance, "ndcg@5")
    assert not tie_changes([0.9, 0.5, 0.5], [1, 1, 0], "hit@1")


def test_chance_level_is_the_mean_over_all_orders():
    grades = [2.0, 1.0, 0.0, 0.0]
    orders = list(permutations(range(4)))
    for name in ["hit@1", "hit@2", "recall@2", "precision@3", "ndcg@2", "ndcg@5", "mrr"]:
        values = [metric_value(name, np.asarray(grades)[list(o)]) for o in orders]
        assert chance_level(name, grades) == pytest.approx(np.mean(values)), name
    assert chance_level("hit@1", [1, 0, 0]) == pytest.approx(1 / 3)


def test_mean_metrics_matches_pytrec_eval_without_ties():
    """pytrec_eval (trec_eval) breaks ties by document id; on scores without ties every rule
    gives the same ranking, so the values must agree."""
    rng = np.random.default_rng(1)
    scores = rng.normal(size=(6, 9))
    relevance = (rng.random((6, 9)) < 0.3).astype(float)
    relevance[:, 0] = 1.0  # every query has a relevant document
    relevance[2, 3] = 2.0  # a graded one
    qrels = {
        f"q{q}": {f"d{d}": int(relevance[q, d]) for d in range(9) if relevance[q, d] > 0}
        for q in range(6)
    }
    run = {f"q{q}": {f"d{d}": float(scores[q, d]) for d in range(9)} for q in range(6)}
    measures = {"ndcg_cut.5", "ndcg_cut.10", "recall.5", "P.5", "recip_rank"}
    trec = pytrec_eval.RelevanceEvaluator(qrels, measures).evaluate(run)
    ours = {
        rule: mean_metrics(
            scores, relevance, ["ndcg@5", "ndcg@10", "recall@5", "precision@5", "mrr"], ties=rule
        )
        for rule in ("stable", "optimistic", "pessimistic")
    }
    for rule, values in ours.items():
        for mine, theirs in [
            ("ndcg@5", "ndcg_cut_5"),
            ("ndcg@10", "ndcg_cut_10"),
            ("recall@5", "recall_5"),
            ("precision@5", "P_5"),
            ("mrr", "recip_rank"),
        ]:
            expected = np.mean([trec[f"q{q}"][theirs] for q in range(6)])
            assert values[mine] == pytest.approx(expected, abs=1e-12), (rule, mine)


def test_recall_precision_hit():
    ranked = [0, 1, 0, 1, 0]
    assert recall_at_k(ranked, 2) == 0.5
    assert recall_at_k(ranked, 4) == 1.0
    assert recall_at_k(ranked, 4, num_relevant=4) == 0.5  # two relevant were never retrieved
    assert recall_at_k([0, 0], 2) == 0.0  # nothing relevant
    assert precision_at_k([1, 0, 1], 2) == 0.5
    assert precision_at_k([1, 0, 1], 3) == pytest.approx(2 / 3)
    assert hit_at_k(ranked, 1) == 0.0 and hit_at_k(ranked, 2) == 1.0


def test_ndcg_binary_by_hand():
    # DCG = 1/log2(3) + 1/log2(5); ideal = 1 + 1/log2(3)
    expected = (1 / LOG2_3 + 1 / LOG2_5) / (1 + 1 / LOG2_3)
    assert ndcg_at_k([0, 1, 0, 1], 4) == pytest.approx(expected)
    assert ndcg_at_k([0, 1, 0, 1], 4) == pytest.approx(0.6509, abs=1e-4)
    assert ndcg_at_k([1, 1, 0, 0], 4) == pytest.approx(1.0)
    assert ndcg_at_k([0, 0, 0], 3) == 0.0


def test_ndcg_graded_matches_the_textbook_example():
    # Wikipedia's DCG example (linear gain): DCG6 = 6.861, IDCG6 = 7.141, nDCG6 = 0.961
    ranked = [3, 2, 3, 0, 1, 2]
    assert dcg_at_k(ranked, 6) == pytest.approx(6.861, abs=1e-3)
    assert ndcg_at_k(ranked, 6, ideal=[3, 3, 2, 2, 1, 0]) == pytest.approx(0.961, abs=1e-3)
    # a relevant item outside the list lowers nDCG through the ideal ranking
    assert ndcg_at_k([1, 0], 2, ideal=[1, 1]) == pytest.approx(1 / (1 + 1 / LOG2_3))


def test_reciprocal_rank():
    assert reciprocal_rank([0, 0, 1]) == pytest.approx(1 / 3)
    assert reciprocal_rank([0, 0, 1], k=2) == 0.0
    assert reciprocal_rank([1, 1]) == 1.0
    assert reciprocal_rank([]) == 0.0


def test_metric_names():
    assert parse_metric("nDCG@5") == ("ndcg", 5)
    assert parse_metric("mrr") == ("mrr", None)
    for bad in ["hit", "precision", "foo@1", "recall@0"]:
        with pytest.raises(ValueError):
            parse_metric(bad)
    ranked = np.array([0.0, 1.0, 0.0])
    assert metric_value("hit@1", ranked) == 0.0
    assert metric_value("recall@2", ranked) == 1.0
    assert metric_value("mrr@10", ranked) == 0.5
    assert metric_value("ndcg@5", ranked) == pytest.approx(1 / LOG2_3)
