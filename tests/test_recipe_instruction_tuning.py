"""The instruction_tuning recipe from its config, over frozen mmembed-mini towers: the learned
head starts as the weighted sum, trains on MMEB-train rows with hard negatives and GradCache,
and, loaded into the Embedder, changes (and improves) the ranking on the training task."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

import mmembed
from mmembed.heads.fusion import WeightedSumHead
from mmembed.heads.learned import LearnedFusionHead
from mmembed.train import TrainConfig, Trainer, load_config
from mmembed.train.logs import read_metrics
from mmembed.train.tasks import build_task
from mmembed.train.tasks.instruction_tuning import PartsTower, as_mmembed_input, pad_parts

CONFIG = Path(__file__).parents[1] / "configs" / "instruction_tuning.yaml"


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _config(root: Path) -> TrainConfig:
    config = load_config(CONFIG)
    config.data.path = str(root / "data")
    config.task_options["eval_data"]["path"] = str(root / "data")
    config.progress_bar, config.tensorboard = False, False
    return dataclasses.replace(config, output_dir=str(root / "run"))


@pytest.fixture(scope="module")
def trained(tmp_path_factory, mini):
    """(trainer, output dir, head at step 0) after running the shipped config once."""
    root = tmp_path_factory.mktemp("instruct")
    config = _config(root)
    assert config.chunk_size < config.batch_size and config.data.num_negatives == 1
    task = build_task(config)
    task.model = mini  # the session's mmembed-mini: its towers are frozen, its head unused
    trainer = Trainer(config, task=task)
    start = LearnedFusionHead(trainer.module.towers["head"].head.cfg)
    start.load_state_dict(trainer.module.towers["head"].head.state_dict())
    trainer.fit()
    return trainer, Path(config.output_dir), start


def test_the_head_starts_as_the_weighted_sum(trained):
    trainer, _, start = trained
    items = list(trainer.task.cache.values())
    padded = pad_parts(items)
    with torch.no_grad():
        learned = PartsTower(start)(padded)
        baseline = PartsTower(WeightedSumHead())(padded)
    assert torch.equal(learned, baseline)
    assert any(int(item["weight"].numel()) > 1 for item in items)  # documents with several parts


def test_rows_have_hard_negatives_and_the_loss_falls(trained):
    trainer, out, _ = trained
    assert len(trainer.dataset) == 48 and all(len(r.negatives) == 1 for r in trainer.dataset)
    records = read_metrics(out / "metrics.jsonl")
    first = sum(r["loss"] for r in records[:5]) / 5
    last = sum(r["loss"] for r in records[-5:]) / 5
    assert last < 0.3 * first, (first, last)
    evaluation = json.loads((out / "eval.json").read_text())
    assert evaluation["after"]["hit_at_1"] > evaluation["before"]["hit_at_1"] + 0.3


def test_the_saved_model_has_the_trained_head(trained, mini):
    trainer, out, _ = trained
    rows = [r for r in trainer.dataset if not r.positive.image]  # image(+instruction) -> caption
    queries = [as_mmembed_input(r.query) for r in rows]
    captions = [r.positive.text for r in rows]
    baseline = mini.similarity(mini.encode(queries), mini.encode(captions))
    assert isinstance(mini.head, WeightedSumHead)  # training left the init model as it was
    tuned_model = mmembed.load(out / "final")
    assert isinstance(tuned_model.head, LearnedFusionHead)
    vectors = tuned_model.encode(queries)
    tuned = tuned_model.similarity(vectors, tuned_model.encode(captions))
    alone = np.stack([tuned_model.encode(query) for query in queries[::-1]])[::-1]
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert np.allclose(vectors, alone, atol=1e-5)  # one row per item, in input order
    with torch.no_grad():  # the inference path gives what the training path saw
        trained_rows = trainer.task._embed(trainer.module.towers, [r.query for r in rows])
    assert np.allclose(vectors, trained_rows.numpy(), atol=1e-5)
    hits = np.arange(len(rows))
    assert (tuned.argmax(1) != baseline.argmax(1)).any()
    assert (tuned.argmax(1) == hits).mean() > (baseline.argmax(1) == hits).mean()
