"""The line reader's training loop: CTC steps on drawn pages (accented ones in fonts that have
their letters), checkpoints of train/checkpoint that a resumed run continues from exactly, and a
``final`` reader that mmembed loads and reads with."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import torch
from debian import CORPORA, HELD_OUT_FONTS, TRAINING_FONTS, needs
from PIL import Image

from mmembed.encoders.reader import ASCII, LineReader, ReaderCfg, load_reader
from mmembed.pages.styles import font_glyphs
from mmembed.pages.unseen import accented_set, unseen_set
from mmembed.train.checkpoint import list_checkpoints
from mmembed.train.page_reader import (
    PageLines,
    corpus,
    load_train_cfg,
    train_reader,
    warm_start,
)

ROOT = Path(__file__).resolve().parent.parent
CONFIG = load_train_cfg(ROOT / "configs" / "reader" / "page_reader.yaml")
# what configs/reader/page_reader.yaml draws: its corpora, training and held-out fonts
needs_pages = needs(*CORPORA, *TRAINING_FONTS, *HELD_OUT_FONTS)


def tiny(tmp_path: Path, steps: int):
    return dataclasses.replace(
        CONFIG,
        output_dir=str(tmp_path / "run"),
        steps=steps,
        batch_lines=6,
        save_every=2,
        eval_lines=6,
        init=None,
        optim=dataclasses.replace(CONFIG.optim, warmup_steps=1),
        reader={"channels": [4, 8, 8, 8], "hidden": 8},
    )


@needs_pages
def test_training_pairs_each_found_line_with_the_drawn_text():
    texts, held = corpus(CONFIG.held_out_permille)
    seen = {" ".join(t.split()) for t in texts.english}
    assert held.english and not set(held.english) & seen  # held-out fortunes are never drawn
    evaluation = unseen_set(CONFIG.held_out_fonts, CONFIG.held_out_permille)
    assert len(evaluation.texts) == 250 and not set(evaluation.texts) & seen
    data = PageLines(CONFIG, ReaderCfg(), texts, seed=3)
    pairs = data.batch(40)
    assert len(pairs) == 40 and all(crop.shape[0] == 32 for crop, _ in pairs)
    assert data.skipped <= 0.2 * data.pages  # the line finder agrees with the drawing
    assert all(text and len(text) <= crop.shape[1] // LineReader.STRIDE for crop, text in pairs)


NEEDS_CATALOGS = needs("coreutils", *CORPORA, *TRAINING_FONTS, *HELD_OUT_FONTS)  # accented text


@NEEDS_CATALOGS
def test_the_accented_set_is_held_out_of_training():
    texts, _ = corpus(CONFIG.held_out_permille)
    accented = accented_set(CONFIG.held_out_fonts, CONFIG.held_out_permille)
    assert len(accented.texts) == 250 and not set(accented.texts) & set(texts.accented)


@NEEDS_CATALOGS
def test_accented_pages_are_drawn_in_fonts_that_have_their_letters():
    texts, _ = corpus(CONFIG.held_out_permille)
    data = PageLines(CONFIG, ReaderCfg(), texts, seed=5)
    inconsolata = [f for f in data.fonts if "nconsolata" in f]
    assert inconsolata and "ĉ" not in font_glyphs(inconsolata[0])  # a font without the letter
    for _ in range(30):  # Esperanto: Latin Extended-A letters that some training fonts lack
        page, lines = data.page("Ĉiu ĵaŭdo ŝi manĝas ĉe la ĝardeno.")
        assert " ".join(lines) == "Ĉiu ĵaŭdo ŝi manĝas ĉe la ĝardeno."


@needs_pages
def test_train_checkpoint_resume_and_load(tmp_path):
    first = train_reader(tiny(tmp_path, steps=2))
    run = tmp_path / "run"
    assert [p.name for p in list_checkpoints(run)] == ["step_00000002.pt"]
    assert not list(run.glob(".*tmp"))
    assert [row["step"] for row in first["training"]["history"]] == [2]
    resumed = train_reader(tiny(tmp_path, steps=4), resume=True)
    assert [row["step"] for row in resumed["training"]["history"]] == [2, 4]
    assert [p.name for p in list_checkpoints(run)] == ["step_00000002.pt", "step_00000004.pt"]
    reader = load_reader("reader", run / "final")
    state = torch.load(run / "step_00000004.pt", weights_only=True)["model"]
    for key, value in reader.state_dict().items():  # fp16 on disk
        np.testing.assert_allclose(value, state[key].half().float(), atol=0)
    record = json.loads((run / "final" / "reader.json").read_text())
    assert record["reader"]["channels"] == [4, 8, 8, 8] and record["training"]["history"]
    assert record["reader"]["alphabet"] == "latin"
    assert reader.read_page(Image.new("RGB", (60, 30), "white")) == ""  # a blank page
    # A run resumed at step 2 ends where an uninterrupted one does.
    straight = train_reader(
        dataclasses.replace(tiny(tmp_path, steps=4), output_dir=str(tmp_path / "b"))
    )
    assert straight["training"]["history"] == resumed["training"]["history"]


def test_a_warm_start_keeps_what_the_first_reader_knew():
    cfg = ReaderCfg(channels=(4, 8, 8, 8), hidden=8)
    old = LineReader(dataclasses.replace(cfg, alphabet="ascii"))
    new = LineReader(cfg)
    warm_start(new, old)
    torch.testing.assert_close(new.rnn.weight_ih_l0, old.rnn.weight_ih_l0)
    rows = [0] + [new.alphabet.index(c) + 1 for c in ASCII]
    torch.testing.assert_close(new.classify.weight[rows], old.classify.weight)
    lines = torch.rand(2, 1, 32, 64)
    ascii_logits = new.eval()(lines)[..., rows]
    torch.testing.assert_close(ascii_logits, old.eval()(lines))
