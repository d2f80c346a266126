"""Ranking metrics against values computed by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mmembed.eval.metrics import (
    dcg_at_k,
    hit_at_k,
    is_hit_at_1,
    metric_value,
    ndcg_at_k,
    parse_metric,
    precision_at_k,
    ranked_relevance,
    ranking,
    recall_at_k,
    reciprocal_rank,
    retrieval_metrics,
    top_tie,
)

LOG2_3, LOG2_5 = math.log2(3), math.log2(5)


def test_hit_at_1_needs_a_strictly_higher_score():
    assert is_hit_at_1([0.9, 0.5, 0.1])
    assert not is_hit_at_1([0.5, 0.9, 0.1])
    assert not is_hit_at_1([0.5, 0.5, 0.1])  # tie with a wrong candidate: pessimistic
    assert not is_hit_at_1([0.3, 0.3, 0.3])  # a constant model scores 0
    assert is_hit_at_1([0.7])  # a single candidate is trivially first


def test_nan_scores_rank_last():
    assert is_hit_at_1([0.2, math.nan, 0.1])
    assert not is_hit_at_1([math.nan, 0.1, 0.0])
    assert list(ranking([math.nan, 0.1, 0.3])) == [2, 1, 0]


def test_ranking_puts_less_relevant_first_on_ties():
    assert list(ranking([0.5, 0.5, 0.1], relevance=[1, 0, 0])) == [1, 0, 2]
    assert list(ranked_relevance([0.5, 0.5, 0.1], [1, 0, 0])) == [0, 1, 0]
    # equal grades keep index order, so the ranking is deterministic
    assert list(ranking([0.2, 0.2, 0.2])) == [0, 1, 2]
    assert top_tie([0.5, 0.5, 0.1], [1, 0, 0])
    assert not top_tie([0.5, 0.5, 0.1], [1, 1, 0])  # two relevant tie: the rule changes nothing
    assert not top_tie([0.6, 0.5, 0.1], [1, 0, 0])


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


def test_retrieval_metrics_over_a_run():
    run = {"q1": ["d1", "d2", "d3"], "q2": ["d5", "d4"]}
    qrels = {
        "q1": {"d2": 1},
        "q2": {"d4": 1, "d9": 1},  # d9 is relevant but never retrieved
        "q3": {"d7": 0},  # no relevant document: not counted
    }
    scores = retrieval_metrics(run, qrels, ["recall@1", "recall@5", "mrr@10", "ndcg@10"])
    assert scores["recall@1"] == 0.0
    assert scores["recall@5"] == pytest.approx((1.0 + 0.5) / 2)
    assert scores["mrr@10"] == pytest.approx(0.5)
    q1_ndcg = 1 / LOG2_3
    q2_ndcg = (1 / LOG2_3) / (1 + 1 / LOG2_3)
    assert scores["ndcg@10"] == pytest.approx((q1_ndcg + q2_ndcg) / 2)


def test_retrieval_metrics_missing_query_scores_zero():
    scores = retrieval_metrics(
        {"q1": ["a"]}, {"q1": {"a": 1}, "q2": {"b": 2}}, ["recall@1", "ndcg@5"]
    )
    assert scores == {"recall@1": 0.5, "ndcg@5": 0.5}
    assert all(math.isnan(v) for v in retrieval_metrics({}, {}, ["mrr"]).values())
