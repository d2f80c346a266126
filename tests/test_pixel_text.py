"""pixel_text recipe end to end, its perturbations, and the shipped pixel tower in mmembed-mini."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

import mmembed
from mmembed.encoders.pixel import PixelCfg, PixelTower, fit_page, read_pixel_config
from mmembed.pages import corpora
from mmembed.train import Trainer, load_config
from mmembed.train.logs import read_metrics
from mmembed.train.tasks import build_task

ROOT = Path(__file__).resolve().parent.parent
TINY = {"model_kwargs": {"channels": [8, 16, 32, 64], "stem_width": 8}}
# Measured through mmembed-mini: 0.72 (36 of the 50 held-out glosses shipped in the JSON);
# over the 20 groups of 50 of the 1,000-gloss evaluation it ranged 0.64-0.78. Chance: 0.02.
MIN_RECALL_AT_1 = 0.5


def _tiny_config(out: Path, **task_options):
    config = load_config(ROOT / "configs" / "pixel_text_tiny.yaml")
    config.output_dir = str(out)
    config.task_options.update(task_options)
    return config


def _trainer(config, mini) -> Trainer:
    """The session's mmembed-mini as the init model (the recipe leaves it unchanged)."""
    task = build_task(config)
    task.model = mini
    return Trainer(config, task=task)


def test_tiny_recipe_distils_and_the_loss_falls(tmp_path, mini):
    trainer = _trainer(_tiny_config(tmp_path), mini)
    summary = trainer.fit()
    records = read_metrics(tmp_path / "metrics.jsonl")
    assert len(records) == summary.steps == 20
    assert {"contrastive_loss", "distill_loss", "perturb_contrastive_loss"} <= set(records[0])
    assert {"teacher_cosine", "perturb_accuracy", "logit_scale"} <= set(records[0])
    first = np.mean([r["loss"] for r in records[:3]])
    last = np.mean([r["loss"] for r in records[-3:]])
    assert last < 0.85 * first, (first, last)
    assert records[-1]["teacher_cosine"] > records[0]["teacher_cosine"] + 0.05
    evaluation = summary.evaluation
    assert evaluation["before"]["step"] == 0 and evaluation["after"]["step"] == 20
    assert evaluation["after"]["texts"] >= 16
    assert evaluation["after"]["mean_cosine"] > evaluation["before"]["mean_cosine"]
    assert (tmp_path / "teacher_targets.pt").is_file()  # computed once, reused on resume
    # final/ is mmembed-mini with the trained page tower: pages embed as training embedded them
    model = mmembed.load(tmp_path / "final")
    task, tower = trainer.task, trainer.module.towers["pixel"].eval()
    texts = ["A tuple is an immutable sequence.", "| word | gloss |\n|---|---|\n| cat | feline |"]
    pages = [task.page(text) for text in texts]  # (3, H, W) as the recipe draws them
    images = [
        Image.fromarray((p.permute(1, 2, 0).numpy() * 255).round().astype("uint8")) for p in pages
    ]
    with torch.no_grad():
        trained = torch.nn.functional.normalize(tower(torch.stack(pages)), dim=-1)
    saved = model.encode([mmembed.Page(image) for image in images], convert_to="torch")
    assert (saved - trained).abs().max() <= 1e-5
    assert "page" not in mini.towers or mini.towers["page"] is not tower  # init left as it was
    assert torch.equal(
        model.encode("a cat", convert_to="torch"), mini.encode("a cat", convert_to="torch")
    )


@pytest.mark.parametrize("positive", ["perturbed", "paired"])
def test_unsupervised_and_supervised_pairs(tmp_path, positive, mini):
    pairs = tmp_path / "pairs.csv"
    texts = [g.text for g in corpora.dedupe(corpora.read_python_docs(), 10, 80)]
    pd.DataFrame({"query": texts[:8], "positive": texts[:8][::-1]}).to_csv(pairs, index=False)
    config = _tiny_config(tmp_path / "run", positive=positive, eval_texts=0, max_texts=16)
    config.data.format, config.data.path = "text_pairs", str(pairs)
    config.steps, config.batch_size = 2, 8
    _trainer(config, mini).fit()
    records = read_metrics(tmp_path / "run" / "metrics.jsonl")
    assert "contrastive_loss" in records[-1] and "distill_loss" not in records[-1]
    assert not (tmp_path / "run" / "teacher_targets.pt").exists()  # no teacher needed


def test_perturbations_keep_the_text_readable():
    rng = random.Random(0)
    text = "a small domesticated carnivorous mammal with soft fur, a short snout and claws"
    typos = corpora.add_typos(text, rng)
    assert typos != text and abs(len(typos) - len(text)) <= 3
    shuffled = corpora.shuffle_words(text, rng, conditional=True)
    assert sorted(shuffled.split()) == sorted(text.split()) and shuffled != text
    assert shuffled.split()[0] == "a" and shuffled.split()[-1] == "claws"
    again = corpora.add_typos(text, random.Random(0))
    assert again == typos  # seeded: a resumed run draws the same pages


def test_table_markdown_round_trip():
    glosses = [
        corpora.Gloss("cat", "noun", "a feline | pet"),
        corpora.Gloss("run", "verb", "move fast"),
    ]
    markdown = corpora.table_markdown(corpora.gloss_table(glosses))
    frame = corpora.markdown_table(markdown)
    assert frame is not None and frame["meaning"].tolist() == ["a feline | pet", "move fast"]
    assert corpora.markdown_table("plain text | not a table") is None


def test_pages_are_fitted_and_batching_does_not_change_vectors():
    cfg = PixelCfg(model_kwargs=TINY["model_kwargs"], page_width=224, page_height=112)
    wide = Image.new("RGB", (896, 100), "white")
    assert fit_page(wide, cfg).size == (224, 112)  # shrunk to 224 x 25, padded
    torch.manual_seed(0)
    tower = PixelTower(cfg).eval()
    pages = [
        mmembed.Page.render(t, width=224, height=112, font_size=12).source for t in ("a", "b c")
    ]
    blank = Image.new("RGB", (224, 112), "white")
    pixels = torch.stack([tower.preprocess(p) for p in [*pages, blank]])
    with torch.no_grad():
        together = tower(pixels)
        alone = torch.cat([tower(pixels[i : i + 1]) for i in range(3)])
    assert together.shape == (3, cfg.dim) and torch.isfinite(together).all()
    torch.testing.assert_close(together, alone, atol=1e-5, rtol=1e-5)


@pytest.fixture(scope="module")
def shipped():
    return read_pixel_config()


@pytest.fixture(scope="module")
def pixel_mini():
    return mmembed.load("mmembed-mini", page="pixel")


def test_shipped_tower_is_small_and_documented(shipped):
    weights = ROOT / "mmembed" / "weights" / "pixel_resnet10t.wordnet_minilm.safetensors"
    assert weights.stat().st_size <= 20e6
    evaluation = shipped["evaluation"]
    assert evaluation["held_out_texts"] >= 500 and evaluation["recall_at_1"] >= 0.2  # 0.271
    assert shipped["training"]["trainer_eval"]["before"]["recall_at_1"] <= 0.01  # step 0: chance
    assert shipped["training"]["command"] == "nice -n 10 mmembed train configs/pixel_text.yaml"
    assert len(shipped["held_out_sample"]) == 50


def test_mini_finds_rendered_pages_by_text(pixel_mini, shipped):
    """Held-out glosses: each text query should rank its own rendered page first."""
    mini = pixel_mini
    assert isinstance(mini.towers["page"], PixelTower)
    assert mmembed.Modality.PAGE in mini.modalities
    texts = shipped["held_out_sample"]
    pages = mini.encode([mmembed.Page.render(t) for t in texts])
    queries = mini.encode(texts)
    assert pages.shape == (50, 384) and np.allclose(np.linalg.norm(pages, axis=1), 1, atol=1e-5)
    recall = float(np.mean(mini.similarity(queries, pages).argmax(axis=1) == np.arange(50)))
    assert recall >= MIN_RECALL_AT_1, recall  # chance is 0.02
    table = mmembed.Table(
        pd.DataFrame({"word": ["cat", "dog"], "meaning": ["a feline", "a canine"]})
    )
    one = mini.encode(mmembed.Page.render(table))
    assert one.shape == (384,) and np.isfinite(one).all()
