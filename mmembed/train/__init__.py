"""Training: contrastive losses, GradCache, multi-process training, resumable checkpoints.

A recipe is a YAML config (:class:`TrainConfig`) plus a registered :class:`Task` that builds
the towers and batches; :func:`train` runs it. Nothing else in mmembed imports this package.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..lazy import lazy_getattr

if TYPE_CHECKING:
    from .config import DataConfig, LossConfig, OptimConfig, TrainConfig, load_config
    from .data import PairDataset, PairRecord, PairSide, Sample, open_dataset
    from .distributed import DistEnv, gather_pairs, gather_with_grad
    from .gradcache import contrastive_backward
    from .losses import InfoNCELoss, MatryoshkaLoss, PairEmbeddings, build_loss, total_loss
    from .tasks import TASKS, Task, TowerBatch, build_task, register_task
    from .trainer import Trainer, TrainModule, TrainSummary, train

# Names are imported on first use, so ``mmembed train`` reads and checks a config
# (``train.config``: YAML and dataclasses only) before torch loads.
_LAZY = {
    **dict.fromkeys(
        ["DataConfig", "LossConfig", "OptimConfig", "TrainConfig", "load_config"], ".config"
    ),
    **dict.fromkeys(["PairDataset", "PairRecord", "PairSide", "Sample", "open_dataset"], ".data"),
    **dict.fromkeys(["DistEnv", "gather_pairs", "gather_with_grad"], ".distributed"),
    "contrastive_backward": ".gradcache",
    **dict.fromkeys(
        ["InfoNCELoss", "MatryoshkaLoss", "PairEmbeddings", "build_loss", "total_loss"], ".losses"
    ),
    **dict.fromkeys(["TASKS", "Task", "TowerBatch", "build_task", "register_task"], ".tasks"),
    **dict.fromkeys(["Trainer", "TrainModule", "TrainSummary", "train"], ".trainer"),
}

__all__ = [
    "DataConfig",
    "DistEnv",
    "InfoNCELoss",
    "PairSide",
    "LossConfig",
    "MatryoshkaLoss",
    "OptimConfig",
    "PairDataset",
    "PairEmbeddings",
    "PairRecord",
    "Sample",
    "TASKS",
    "Task",
    "TowerBatch",
    "TrainConfig",
    "TrainModule",
    "TrainSummary",
    "Trainer",
    "build_loss",
    "build_task",
    "contrastive_backward",
    "gather_pairs",
    "gather_with_grad",
    "load_config",
    "open_dataset",
    "register_task",
    "total_loss",
    "train",
]

__getattr__ = lazy_getattr(__name__, _LAZY, globals())
