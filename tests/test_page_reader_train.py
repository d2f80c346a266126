"""The line reader's training loop: CTC steps on drawn pages, an atomic checkpoint that a resumed
run continues from, and a ``final`` reader that mmembed loads and reads with."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from mmembed.encoders.reader import LineReader, ReaderCfg, load_reader
from mmembed.pages.unseen import unseen_set
from mmembed.train.page_reader import PageLines, corpus, load_train_cfg, train_reader

ROOT = Path(__file__).resolve().parent.parent
CONFIG = load_train_cfg(ROOT / "configs" / "reader" / "page_reader.yaml")


def tiny(tmp_path: Path, steps: int):
    return dataclasses.replace(
        CONFIG,
        output_dir=str(tmp_path / "run"),
        steps=steps,
        batch_lines=6,
        save_every=2,
        eval_lines=6,
        warmup_steps=1,
        reader={"channels": [4, 8, 8, 8], "hidden": 8},
    )


def test_training_pairs_each_found_line_with_the_drawn_text():
    texts, held = corpus(CONFIG.held_out_permille)
    seen = {" ".join(t.split()) for t in texts}
    assert held and not set(held) & seen  # held-out fortunes are never drawn
    evaluation = unseen_set(CONFIG.held_out_fonts, CONFIG.held_out_permille)
    assert len(evaluation.texts) == 250 and not set(evaluation.texts) & seen
    data = PageLines(CONFIG, ReaderCfg(), texts, seed=3)
    pairs = data.batch(40)
    assert len(pairs) == 40 and all(crop.shape[0] == 32 for crop, _ in pairs)
    assert data.skipped <= 0.2 * data.pages  # the line finder agrees with the drawing
    assert all(text and len(text) <= crop.shape[1] // LineReader.STRIDE for crop, text in pairs)


def test_train_checkpoint_resume_and_load(tmp_path):
    first = train_reader(tiny(tmp_path, steps=2))
    run = tmp_path / "run"
    assert (run / "checkpoint.pt").is_file() and not (run / "checkpoint.partial").exists()
    assert [row["step"] for row in first["training"]["history"]] == [2]
    resumed = train_reader(tiny(tmp_path, steps=4), resume=True)
    assert [row["step"] for row in resumed["training"]["history"]] == [2, 4]
    reader = load_reader("reader", run / "final")
    state = torch.load(run / "checkpoint.pt", weights_only=False)["reader"]
    for key, value in reader.state_dict().items():  # fp16 on disk
        np.testing.assert_allclose(value, state[key].half().float(), atol=0)
    record = json.loads((run / "final" / "reader.json").read_text())
    assert record["reader"]["channels"] == [4, 8, 8, 8] and record["training"]["history"]
    assert reader.read_page(Image.new("RGB", (60, 30), "white")) == ""  # a blank page
