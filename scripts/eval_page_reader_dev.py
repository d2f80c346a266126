"""Character error rate of a line reader on the development pages (choices are made here, never
on the unseen-font set): held-out fortunes that are not in the unseen-font evaluation, drawn
plain in the TRAINING fonts (one seeded font per sentence) at 14, 20 and 28 px.

    python scripts/eval_page_reader_dev.py                                # the shipped reader
    python scripts/eval_page_reader_dev.py --reader runs/page_reader/final --texts 150
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path

import torch

from mmembed.encoders.reader import load_reader
from mmembed.pages import corpora
from mmembed.pages.styles import font_files, plain_page
from mmembed.pages.unseen import MAX_CHARS, MIN_CHARS, unseen_set
from mmembed.train.page_reader import edit_distance, load_train_cfg

ROOT = Path(__file__).resolve().parent.parent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reader", type=Path, help="a run's final/ folder (default: shipped)")
    parser.add_argument(
        "--config", type=Path, default=ROOT / "configs" / "reader" / "page_reader.yaml"
    )
    parser.add_argument("--texts", type=int, default=150)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    cfg = load_train_cfg(args.config)
    evaluation = set(unseen_set(cfg.held_out_fonts, cfg.held_out_permille).texts)
    _, held = corpora.split_held_out(corpora.read_fortunes(), cfg.held_out_permille)
    lines = {corpora.one_line(g.text) for g in held}
    texts = sorted(t for t in lines if MIN_CHARS <= len(t) <= MAX_CHARS and t not in evaluation)
    texts = texts[: args.texts]
    rng = random.Random(1)
    fonts = font_files(cfg.fonts, cfg.held_out_fonts)
    fonts = [rng.choice(fonts) for _ in texts]
    reader = load_reader("reader", args.reader) if args.reader else load_reader()
    for size in (14, 20, 28):
        errors = sum(
            edit_distance(reader.read_page(plain_page(text, font, size)), text)
            for text, font in zip(texts, fonts, strict=True)
        )
        print(f"{size} px: CER {errors / sum(map(len, texts)):.4f} ({len(texts)} pages)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
