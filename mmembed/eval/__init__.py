"""Evaluation: the MMEB benchmark harness and standard retrieval metrics.

    from mmembed.eval import evaluate_mmeb
    report = evaluate_mmeb("mmembed-mini", "data/MMEB-eval", out_dir="reports/mini")
    print(report.to_markdown())

Only the Embedder API is used (``name``, ``dim``, ``encode``), so any object following
docs/CONTRACT.md can be evaluated.
"""

from __future__ import annotations

from .data import DataError
from .datasets import (
    DATASETS,
    Benchmark,
    DatasetSpec,
    MetaTask,
    Split,
    get_dataset,
    list_datasets,
    resolve_datasets,
)
from .download import MMEB_EVAL_REPO, MMEB_EVAL_REVISION, download_mmeb
from .metrics import (
    TIE_RULES,
    TieRule,
    dcg_at_k,
    hit_at_k,
    mean_metrics,
    metric_value,
    ndcg_at_k,
    precision_at_k,
    ranked_relevance,
    ranking,
    recall_at_k,
    reciprocal_rank,
    tie_changes,
)
from .mmeb import EmbedderLike, MMEBOptions, evaluate_dataset, evaluate_mmeb
from .report import DatasetResult, MMEBReport

__all__ = [
    "DATASETS",
    "MMEB_EVAL_REPO",
    "MMEB_EVAL_REVISION",
    "TIE_RULES",
    "DataError",
    "TieRule",
    "Benchmark",
    "DatasetResult",
    "DatasetSpec",
    "EmbedderLike",
    "MMEBOptions",
    "MMEBReport",
    "MetaTask",
    "Split",
    "dcg_at_k",
    "download_mmeb",
    "evaluate_dataset",
    "evaluate_mmeb",
    "get_dataset",
    "hit_at_k",
    "mean_metrics",
    "list_datasets",
    "metric_value",
    "ndcg_at_k",
    "precision_at_k",
    "ranked_relevance",
    "ranking",
    "recall_at_k",
    "reciprocal_rank",
    "resolve_datasets",
    "tie_changes",
]
