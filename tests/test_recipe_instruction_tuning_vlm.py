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

from mmembed.embedder import EmbedderCfg
from mmembed.encoders.vlm import VLMCfg
from mmembed.models.builders import vlm_embedder
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
    config.task_options.update(model_path=str(model), min_pixels=None, max_pixels=None)
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
    trainer.fit()
    return trainer, before, model, Path(config.output_dir)


def test_only_the_adapters_train_and_the_loss_drops_below_chance(trained):
    trainer, before, _, out = trained
    after = trainer.module.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed == {k for k in before if "lora_" in k}  # every adapter, nothing else
    assert all("lora_" in n for n, p in trainer.module.named_parameters() if p.requires_grad)
    records = read_metrics(out / "metrics.jsonl")
    first = np.mean([r["loss"] for r in records[:5]])
    last = np.mean([r["loss"] for r in records[-10:]])
    assert last < CHANCE - 0.3 and last < 0.3 * first, (first, last)


def test_the_merged_adapter_reproduces_the_trained_model(trained):
    trainer, _, model, out = trained
    rows = list(trainer.dataset)[:6]
    items = [item for r in rows for item in (r.query, r.positive)]
    tower = trainer.module.towers["vlm"].eval()
    with torch.no_grad():
        expected = tower(pad_processed([trainer.task._process(i) for i in items], pad_id(trainer)))
    expected = torch.nn.functional.normalize(expected, dim=-1).numpy()
    embedder = vlm_embedder(
        VLMCfg(path=str(model), adapter_path=str(out / "adapter")), EmbedderCfg("tuned")
    )
    vectors = embedder.encode([as_mmembed_input(i) for i in items], batch_size=4)
    assert np.allclose(vectors, expected, atol=1e-4)
    base = vlm_embedder(VLMCfg(path=str(model)), EmbedderCfg("base"))
    assert not np.allclose(base.encode([as_mmembed_input(i) for i in items]), expected, atol=1e-2)


def pad_id(trainer) -> int:
    return int(trainer.task.tower.processor.tokenizer.pad_token_id)
