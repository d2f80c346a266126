"""LoRA on a VLM backbone (instruction_tuning_vlm) on a tiny random Qwen2-VL: only adapters
train, the loss drops below chance, and the exported PEFT adapter, merged by mmembed's VLM
loader (no peft at inference), gives the embeddings the trained model gave."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from tiny_vlm import build_tiny_qwen2_vl

import mmembed
from mmembed.embedder import EmbedderCfg
from mmembed.encoders.vlm import VLMCfg
from mmembed.models.families.vlm import vlm_embedder
from mmembed.train import Trainer, load_config
from mmembed.train.config import LossConfig, OptimConfig
from mmembed.train.logs import read_metrics
from mmembed.train.tasks.instruction_tuning import as_mmembed_input
from mmembed.train.tasks.instruction_tuning_vlm import pad_processed

pytest.importorskip("peft")

CONFIG = Path(__file__).parents[1] / "configs" / "instruction_tuning_vlm.yaml"
CHANCE = (np.log(16) + np.log(8)) / 2  # batch 8 + 8 hard negatives; documents score 8 queries


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("vlm_lora")
    model = build_tiny_qwen2_vl(root / "tiny-qwen2-vl")
    config = load_config(CONFIG)
    config.init = str(model)
    config.task_options.update(min_pixels=None, max_pixels=None)
    config.data.path = str(root / "data")
    config = dataclasses.replace(
        config,
        output_dir=str(root / "run"),
        loss=LossConfig(temperature=0.05, learn_temperature=False),
        optim=OptimConfig(lr=0.003, weight_decay=0.0, warmup_steps=3, max_grad_norm=1.0),
        steps=100,
        batch_size=8,
        chunk_size=4,
        precision="fp32",
        save_every=100,
        progress_bar=False,
        tensorboard=False,
    )
    trainer = Trainer(config)
    before = {k: v.clone() for k, v in trainer.module.state_dict().items()}
    after, expected = {}, {}
    merge = trainer.task.final_model

    def final_model(towers):  # the trained adapters and embeddings, before they are merged
        after.update({k: v.clone() for k, v in trainer.module.state_dict().items()})
        expected["trainable"] = [n for n, p in trainer.module.named_parameters() if p.requires_grad]
        expected["rows"] = _trained_embeddings(trainer)
        return merge(towers)

    trainer.task.final_model = final_model
    trainer.fit()
    after["trainable"] = expected["trainable"]
    return trainer, before, after, expected["rows"], model, Path(config.output_dir)


def _items(trainer) -> list:
    return [item for r in list(trainer.dataset)[:6] for item in (r.query, r.positive)]


def _trained_embeddings(trainer) -> np.ndarray:
    """The training tower's eval-mode embeddings of the first rows' queries and positives."""
    tower = trainer.module.towers["vlm"].eval()
    processed = [trainer.task._process(i) for i in _items(trainer)]
    with torch.no_grad():
        rows = tower(pad_processed(processed, pad_id(trainer)))
    return torch.nn.functional.normalize(rows, dim=-1).numpy()


def test_only_the_adapters_train_and_the_loss_drops_below_chance(trained):
    trainer, before, after, _, _, out = trained
    changed = {k for k in before if not torch.equal(before[k], after[k])}  # before merging
    assert changed == {k for k in before if "lora_" in k}  # every adapter, nothing else
    trainable = after.pop("trainable")
    assert trainable and all("lora_" in name for name in trainable)
    records = read_metrics(out / "metrics.jsonl")
    first = np.mean([r["loss"] for r in records[:5]])
    last = np.mean([r["loss"] for r in records[-10:]])
    assert last < CHANCE - 0.3 and last < 0.3 * first, (first, last)


def test_the_saved_model_is_the_trained_model_with_adapters_merged(trained):
    trainer, _, _, expected, model, out = trained
    tuned = mmembed.load(out / "final")  # a plain VLM: no adapter, no peft needed
    assert not any("lora_" in name for name, _ in tuned.named_parameters())
    vectors = tuned.encode([as_mmembed_input(i, "in_place") for i in _items(trainer)], batch_size=4)
    assert np.abs(vectors - expected).max() <= 1e-5
    base = vlm_embedder(VLMCfg(path=str(model)), EmbedderCfg("base"))
    assert not np.allclose(
        base.encode([as_mmembed_input(i, "in_place") for i in _items(trainer)]), expected, atol=1e-2
    )


def pad_id(trainer) -> int:
    return int(trainer.task.tower.processor.tokenizer.pad_token_id)
