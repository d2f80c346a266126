"""The clip_realign recipe end to end from its configs: image retrieval up, text retrieval held.

A tiny_clip run stands in for a pretrained CLIP (as the configs say); stage 1 tunes its image
tower on crops of real photos, stage 2 realigns its text tower. Image->image R@1 is measured
on photos no stage trains on, text->image R@5 on the captioned photos.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path

import pytest
import torch

import mmembed
from mmembed.train import PairSide, TrainConfig, Trainer, load_config
from mmembed.train.config import DataConfig
from mmembed.train.logs import read_metrics
from mmembed.train.tasks import build_task
from mmembed.train.tasks.clip_realign import _embed

logger = logging.getLogger(__name__)

CONFIGS = Path(__file__).parents[1] / "configs"


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _config(name: str, root: Path, **overrides) -> TrainConfig:
    """A shipped config with every path moved under ``root``."""
    config = load_config(CONFIGS / name)
    config.output_dir = str(root / Path(config.output_dir).relative_to("runs"))
    config.data.path = str(root / Path(config.data.path).relative_to("runs"))
    if config.init and config.init.startswith("runs/"):
        config.init = str(root / Path(config.init).relative_to("runs"))
    options = config.task_options
    for key in ("eval_images", "eval_captions"):
        if key in options:
            source = DataConfig(**options[key])
            options[key] = {
                **options[key],
                "path": str(root / Path(source.path).relative_to("runs")),
            }
    config.progress_bar, config.tensorboard = False, False
    return dataclasses.replace(config, **overrides)


def _mean_loss(records: list[dict], first: bool, count: int = 5) -> float:
    chosen = records[:count] if first else records[-count:]
    return sum(r["loss"] for r in chosen) / len(chosen)


@pytest.fixture(scope="module")
def trainers(tmp_path_factory) -> dict[str, Trainer]:
    root = tmp_path_factory.mktemp("runs")
    trained = {}
    for name in ("tiny_clip.yaml", "clip_realign_stage1.yaml", "clip_realign_stage2.yaml"):
        trained[name] = Trainer(_config(name, root))
        trained[name].fit()
    return trained


@pytest.fixture(scope="module")
def runs(trainers) -> Path:
    return Path(trainers["tiny_clip.yaml"].config.output_dir).parent


def _weights(run: Path) -> dict[str, torch.Tensor]:
    """The image and text tower weights of a run's saved model, by tower."""
    model = mmembed.load(run / "final").towers["image"].model
    return {
        **{f"image.{k}": v for k, v in model.visual.state_dict().items()},
        **{f"text.{k}": v for k, v in model.text.state_dict().items()},
    }


@pytest.mark.parametrize("stage", ["clip_realign_stage1.yaml", "clip_realign_stage2.yaml"])
def test_the_saved_model_embeds_as_training_evaluated(trainers, stage):
    trainer = trainers[stage]
    task, towers = trainer.task, trainer.module.towers.eval()
    model = mmembed.load(Path(trainer.config.output_dir) / "final")
    photos = [image for image, _ in task._eval_table(task.options.eval_captions)]
    captions = [caption for _, caption in task._eval_table(task.options.eval_captions)]
    with torch.no_grad():  # the task's own evaluation path
        images = _embed(towers["image"], [task.eval_transform(p) for p in photos], "cpu")
        texts = _embed(towers["text"], [task._tokens(PairSide(text=c)) for c in captions], "cpu")
    assert (model.encode(photos, convert_to="torch") - images).abs().max() <= 1e-5
    assert (model.encode(captions, convert_to="torch") - texts).abs().max() <= 1e-5


def test_image_retrieval_improves_and_text_retrieval_holds(runs):
    stage1 = json.loads((runs / "clip_realign/stage1/eval.json").read_text())
    stage2 = json.loads((runs / "clip_realign/stage2/eval.json").read_text())
    base, tuned, realigned = stage1["before"], stage1["after"], stage2["after"]
    logger.info("base CLIP: %s", base)
    logger.info("after stage 1 (image tower tuned): %s", tuned)
    logger.info("after stage 2 (text tower realigned): %s", realigned)
    assert tuned["image_to_image_r1"] > base["image_to_image_r1"] + 0.05
    assert tuned["text_to_image_r1"] < base["text_to_image_r1"] - 0.2  # stage 1 breaks text
    assert stage2["before"] == {**tuned, "step": 0}
    assert realigned["image_to_image_r1"] == tuned["image_to_image_r1"]  # image tower frozen
    assert realigned["text_to_image_r5"] >= base["text_to_image_r5"]  # held
    assert realigned["text_to_image_r1"] > tuned["text_to_image_r1"] + 0.2  # realigned


def test_each_stage_trains_only_its_tower_and_its_loss_falls(runs):
    def towers(name: str) -> dict[str, torch.Tensor]:
        return _weights(runs / name)

    base, tuned, realigned = (
        towers("tiny_clip"),
        towers("clip_realign/stage1"),
        towers("clip_realign/stage2"),
    )
    for before, after, trained in ((base, tuned, "image."), (tuned, realigned, "text.")):
        changed = {k for k in before if not torch.equal(before[k], after[k])}
        assert changed and all(k.startswith(trained) for k in changed)
    for stage in ("stage1", "stage2"):
        records = read_metrics(runs / "clip_realign" / stage / "metrics.jsonl")
        assert _mean_loss(records, first=False) < 0.7 * _mean_loss(records, first=True)


def test_pseudo_caption_variant_adds_an_image_text_term(runs, tmp_path):
    config = _config("clip_realign_pseudo.yaml", runs, steps=12, output_dir=str(tmp_path))
    config.task_options = {
        k: v for k, v in config.task_options.items() if k not in ("eval_images", "eval_captions")
    }
    Trainer(config).fit()
    records = read_metrics(tmp_path / "metrics.jsonl")
    assert {"contrastive_loss", "caption_contrastive_loss", "caption_accuracy"} <= set(records[0])
    assert records[0]["loss"] == pytest.approx(
        records[0]["contrastive_loss"] + records[0]["caption_contrastive_loss"], rel=1e-5
    )
    assert _mean_loss(records, first=False, count=3) < _mean_loss(records, first=True, count=3)
    before, after = _weights(runs / "tiny_clip"), _weights(tmp_path)
    assert any(not torch.equal(before[k], after[k]) for k in before if k.startswith("text."))
    assert not (tmp_path / "eval.json").exists()  # no evaluation data: nothing to report


def test_class_positives_are_other_photos_with_the_same_label(runs):
    config = _config("clip_realign_stage1.yaml", runs)
    config.task_options["positive"] = "class"
    task = build_task(config)
    dataset = task.build_dataset()
    assert len(dataset) == 64
    for index, mates in task.classmates.items():
        assert len(mates) == 3 and index not in mates
        assert {dataset[m].positive.text for m in mates} == {dataset[index].positive.text}


@pytest.mark.parametrize(
    "options, message",
    [
        ({"stage": "both"}, "stage"),
        ({"positive": "crop"}, "positive"),
        ({"stage": "text", "pseudo_captions": True}, "pseudo_captions"),
    ],
)
def test_bad_options_name_the_field(options, message):
    config = TrainConfig(task="clip_realign", output_dir="o", task_options=options)
    with pytest.raises(ValueError, match=message):
        build_task(config)
