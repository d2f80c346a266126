"""The tiny_clip recipe end to end in-process: the loss falls; options and outputs work."""

from __future__ import annotations

import pandas as pd
import pytest
import torch
from PIL import Image

import mmembed
from mmembed.train import PairSide, TrainConfig, Trainer
from mmembed.train.config import DataConfig, LossConfig, OptimConfig
from mmembed.train.logs import read_metrics

pytestmark = pytest.mark.usefixtures("one_torch_thread")

OPTIONS = {"tiny": {"width": 32, "layers": 1, "heads": 2, "embed_dim": 32, "context_length": 12}}


@pytest.fixture(scope="module")
def demo_pairs(tmp_path_factory):
    from mmembed.train.demo_data import write_demo_photos

    return write_demo_photos(tmp_path_factory.mktemp("photos"))


def _config(out, data, **overrides) -> TrainConfig:
    config = TrainConfig(
        task="tiny_clip",
        output_dir=str(out),
        task_options=dict(OPTIONS),
        data=DataConfig(format="image_caption", path=str(data)),
        loss=LossConfig(matryoshka_dims=[32, 8]),
        optim=OptimConfig(lr=2e-3, warmup_steps=3, max_grad_norm=1.0),
        steps=40,
        batch_size=16,
        chunk_size=8,
        save_every=10,
        progress_bar=False,
    )
    for name, value in overrides.items():
        setattr(config, name, value)
    return config


def test_loss_falls_on_real_photos(tmp_path, demo_pairs):
    trainer = Trainer(_config(tmp_path, demo_pairs))
    summary = trainer.fit()
    records = read_metrics(tmp_path / "metrics.jsonl")
    assert [r["step"] for r in records] == list(range(1, 41))
    first = sum(r["loss"] for r in records[:5]) / 5
    last = sum(r["loss"] for r in records[-5:]) / 5
    assert last < 0.5 * first, (first, last)
    assert summary.steps == 40 and summary.first_loss == records[0]["loss"]
    keys = set(records[0])
    assert {
        "contrastive_d32_loss",
        "contrastive_d8_loss",
        "accuracy_d32",
        "lr",
        "grad_norm",
    } <= keys
    assert {"samples_per_s", "epoch", "skipped_samples", "logit_scale_d32"} <= keys
    assert records[-1]["loss"] == pytest.approx(
        records[-1]["contrastive_d32_loss"] + records[-1]["contrastive_d8_loss"], rel=1e-6
    )
    saved = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert saved == ["step_00000030.pt", "step_00000040.pt"]  # keep_checkpoints = 2
    # The trained model is a model: mmembed.load gives the training module's eval embeddings.
    model = mmembed.load(tmp_path / "final")
    photos = [Image.open(demo_pairs.parent / name) for name in pd.read_csv(demo_pairs)["image"]]
    captions = ["a cat", "a cup of coffee on a saucer"]
    task, towers = trainer.task, trainer.module.towers.eval()
    with torch.no_grad():
        images = towers["image"](torch.stack([task.preprocess(p) for p in photos]))
        texts = towers["text"](torch.stack([task._tokens(PairSide(text=t)) for t in captions]))
    unit = torch.nn.functional.normalize
    assert (model.encode(photos, convert_to="torch") - unit(images)).abs().max() <= 1e-5
    assert (model.encode(captions, convert_to="torch") - unit(texts)).abs().max() <= 1e-5
    card = (tmp_path / "final" / "README.md").read_text()
    assert "`tiny_clip` recipe from `tiny`" in card and "steps: 40 (batch 16)" in card


def test_bf16_checkpointing_and_frozen_tower(tmp_path, demo_pairs):
    config = _config(
        tmp_path,
        demo_pairs,
        steps=2,
        precision="bf16",
        gradient_checkpointing=True,
        freeze=["towers.image."],
        tensorboard=False,
    )
    trainer = Trainer(config)
    before = {k: v.clone() for k, v in trainer.module.state_dict().items()}
    trainer.fit()
    after = trainer.module.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(k.startswith(("towers.text.", "loss.")) for k in changed)
    assert trainer.module.towers["text"].transformer.grad_checkpointing
    assert all(
        map(
            torch.isfinite,
            (torch.tensor(r["loss"]) for r in read_metrics(tmp_path / "metrics.jsonl")),
        )
    )


def test_bad_samples_are_counted_and_reruns_refused(tmp_path, demo_pairs):
    table = pd.read_csv(demo_pairs)
    table["image"] = [str(demo_pairs.parent / name) for name in table["image"]]
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG broken")
    table.loc[len(table)] = [str(broken), "a broken file"]
    table.to_csv(tmp_path / "pairs.csv", index=False)
    config = _config(
        tmp_path / "run", tmp_path / "pairs.csv", steps=6, batch_size=17, chunk_size=None
    )
    summary = Trainer(config).fit()
    records = read_metrics(tmp_path / "run" / "metrics.jsonl")
    assert summary.skipped_samples == 6 == records[-1]["skipped_samples"]  # one per epoch
    with pytest.raises(FileExistsError):
        Trainer(config).fit()
