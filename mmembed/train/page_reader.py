"""Training of the reader page tower's line reader (``mmembed.encoders.reader``) with CTC.

Every step draws pages at random: a text (Debian's fortunes, training split, and WordNet
glosses and examples; some random strings for digits and punctuation), a font file from the
training list (Debian font packages; the held-out families are refused), a size of 12-36 px,
width, margins, line spacing, colours, then scan noise (``styles.degrade``: rotation,
blur, low resolution, noise, JPEG). The page's lines are found with the reader's own
``line_crops`` and paired with the lines that were drawn; a page where the count differs is
skipped (and counted), so the reader learns from the crops it will meet at test time.

    python scripts/train_page_reader.py --config configs/reader/page_reader.yaml [--resume]

This is not a contrastive recipe (the loss is CTC over characters, not a similarity between
sides), so it has its own small loop: AdamW, warm-up then cosine, gradient clipping, an atomic
checkpoint every ``save_every`` steps that ``--resume`` continues from.
"""

from __future__ import annotations

import logging
import math
import os
import random
import string
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml
from PIL import Image, ImageDraw
from torch import nn

from ..encoders.reader import (
    LineReader,
    ReaderCfg,
    batch_lines,
    decode,
    encode,
    line_crops,
    save_reader,
    to_alphabet,
)
from ..pages import corpora
from ..pages.styles import StyleCfg, _colours, degrade, font_files
from ..processors.render import open_font, wrap_text
from .config import from_dict

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReaderTrainCfg:
    """A line reader training run (``configs/reader/page_reader.yaml``)."""

    fonts: list[str]  # globs of training font files
    held_out_fonts: list[str]  # globs of families never drawn (the unseen-font evaluation)
    output_dir: str = "runs/page_reader"
    held_out_permille: int = 50  # texts whose hash falls here are never drawn
    steps: int = 2500
    batch_lines: int = 48  # line crops per step
    lr: float = 1e-3
    warmup_steps: int = 150
    weight_decay: float = 0.01
    max_grad_norm: float = 5.0
    random_text_prob: float = 0.08  # pages of random strings (digits, symbols, odd case)
    max_chars: int = 300  # texts are cut to this length
    save_every: int = 250
    eval_lines: int = 300  # validation lines (training fonts, held-out texts) for the CER
    seed: int = 0
    threads: int = 1  # torch threads
    reader: dict[str, Any] = field(default_factory=dict)  # ReaderCfg overrides
    style: dict[str, Any] = field(default_factory=dict)  # styles.StyleCfg overrides


def load_train_cfg(path: Path) -> ReaderTrainCfg:
    return from_dict(ReaderTrainCfg, yaml.safe_load(path.read_text(encoding="utf-8")), "config")


class PageLines:
    """Random training pages and the text of each of their lines."""

    def __init__(self, cfg: ReaderTrainCfg, reader: ReaderCfg, texts: list[str], seed: int):
        self.fonts = font_files(cfg.fonts, cfg.held_out_fonts)
        self.texts = texts
        self.cfg = cfg
        self.reader = reader
        self.style = StyleCfg(**cfg.style)
        self.rng = random.Random(seed)
        self.pages = self.skipped = 0

    def text(self) -> str:
        if self.rng.random() < self.cfg.random_text_prob:
            return random_words(self.rng)
        text = self.rng.choice(self.texts)
        return text[: self.cfg.max_chars]

    def page(self, text: str) -> tuple[Image.Image, list[str]]:
        """``text`` drawn in a random look, and the lines drawn (in the reader's alphabet)."""
        rng, style = self.rng, self.style
        size = rng.randint(*style.sizes)
        font = open_font(rng.choice(self.fonts), size)
        width = rng.randint(style.min_width, style.page_width)
        margin = rng.randint(*style.margins)
        step = max(1, round(size * rng.uniform(*style.line_spacing)))
        lines = [line for line in wrap_text(text, font, width - 2 * margin) if to_alphabet(line)]
        lines = lines[: max(1, (style.page_height - 2 * margin) // step)]
        height = 2 * margin + step * len(lines) + size // 3 + rng.randint(0, 30)
        fg, bg = _colours(rng, style)
        page = Image.new("RGB", (width, height), bg)
        draw = ImageDraw.Draw(page)
        for number, line in enumerate(lines):
            draw.text((margin, margin + number * step), line, font=font, fill=fg)
        return degrade(page, rng, style), [to_alphabet(line) for line in lines]

    def batch(self, count: int) -> list[tuple[Any, str]]:
        """``count`` (line crop, text) pairs from pages whose lines were all found."""
        pairs: list[tuple[Any, str]] = []
        while len(pairs) < count:
            page, lines = self.page(self.text())
            crops = line_crops(page, self.reader)
            self.pages += 1
            if len(crops) != len(lines) or not lines:
                self.skipped += 1
                continue
            pairs += [
                (crop, line)
                for crop, line in zip(crops, lines, strict=True)
                if len(line) <= crop.shape[1] // LineReader.STRIDE  # CTC needs room to emit
            ]
        return pairs[:count]


def random_words(rng: random.Random) -> str:
    """A line of random tokens: numbers, dates, codes, punctuation, odd capitals."""
    pools = [string.digits, string.ascii_letters, string.punctuation, string.ascii_uppercase]
    words = []
    for _ in range(rng.randint(3, 12)):
        pool = rng.choice(pools) if rng.random() < 0.5 else string.printable[:94]
        words.append("".join(rng.choice(pool) for _ in range(rng.randint(1, 9))))
    return " ".join(words)


def corpus(permille: int) -> tuple[list[str], list[str]]:
    """(training, held-out) texts: fortunes split by hash, plus WordNet glosses and examples.

    A fortune filed twice can hash to both sides (its line breaks differ); its held-out copy is
    dropped, as the unseen-font evaluation (``mmembed.pages.unseen.unseen_set``) drops it.
    """
    fortunes_train, fortunes_held = corpora.split_held_out(corpora.read_fortunes(), permille)
    glosses = corpora.read_wordnet() + corpora.read_wordnet_examples()
    gloss_train, _ = corpora.split_held_out(glosses, permille)
    train = [g.text for g in fortunes_train] + [g.text for g in gloss_train]
    seen = {corpora.one_line(text) for text in train}
    held = [line for g in fortunes_held if (line := corpora.one_line(g.text)) not in seen]
    return train, held


def ctc_loss(reader: LineReader, pairs: list[tuple[Any, str]], loss: nn.CTCLoss) -> torch.Tensor:
    lines, widths = batch_lines([crop for crop, _ in pairs])
    log_probs = reader(lines).log_softmax(-1).transpose(0, 1)  # (T, B, C)
    targets = [torch.tensor(encode(text)) for _, text in pairs]
    return loss(
        log_probs,
        torch.cat(targets),
        widths // LineReader.STRIDE,
        torch.tensor([len(t) for t in targets]),
    )


def char_error_rate(reader: LineReader, pairs: list[tuple[Any, str]]) -> float:
    """Edit distance of the read lines to the drawn ones, per drawn character."""
    reader.eval()
    read = []
    for start in range(0, len(pairs), 64):
        read += reader.read([crop for crop, _ in pairs[start : start + 64]])
    reader.train()
    errors = sum(edit_distance(a, text) for a, (_, text) in zip(read, pairs, strict=True))
    return errors / max(1, sum(len(text) for _, text in pairs))


def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance (insertions, deletions, substitutions)."""
    from rapidfuzz.distance import Levenshtein

    return Levenshtein.distance(a, b)


def schedule(cfg: ReaderTrainCfg):
    def factor(step: int) -> float:
        if step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        progress = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
        return 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return factor


def train_reader(cfg: ReaderTrainCfg, resume: bool = False) -> dict[str, Any]:
    """Train, checkpoint and save ``output_dir/final`` (a loadable reader); return the record."""
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    reader_cfg = ReaderCfg(**{**cfg.reader, **_tuple_channels(cfg.reader)})
    reader = LineReader(
        reader_cfg, runtime="torch"
    )  # validation reads with the weights being trained, never an export
    optimizer = torch.optim.AdamW(reader.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule(cfg))
    train_texts, held_texts = corpus(cfg.held_out_permille)
    valid = PageLines(cfg, reader_cfg, held_texts, seed=cfg.seed + 10_000).batch(cfg.eval_lines)
    step, history = 0, []
    checkpoint = out / "checkpoint.pt"
    if resume and checkpoint.is_file():
        state = torch.load(checkpoint, weights_only=False)
        reader.load_state_dict(state["reader"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        step, history = state["step"], state["history"]
        logger.info("resumed at step %d", step)
    data = PageLines(cfg, reader_cfg, train_texts, seed=cfg.seed + step)
    loss_fn = nn.CTCLoss(blank=0, zero_infinity=True)
    reader.train()
    started = time.perf_counter()
    queue: list[list[tuple[Any, str]]] = []
    while step < cfg.steps:
        if not queue:  # lines of similar width share a batch: less padding to compute
            pairs = sorted(data.batch(4 * cfg.batch_lines), key=lambda pair: pair[0].shape[1])
            queue = [pairs[i : i + cfg.batch_lines] for i in range(0, len(pairs), cfg.batch_lines)]
            data.rng.shuffle(queue)
        loss = ctc_loss(reader, queue.pop(), loss_fn)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(reader.parameters(), cfg.max_grad_norm)
        optimizer.step()
        scheduler.step()
        step += 1
        if step % 25 == 0:
            logger.info("step %d loss %.3f (%.2f s/step)", step, loss.item(),
                        (time.perf_counter() - started) / 25)  # fmt: skip
            started = time.perf_counter()
        if step % cfg.save_every == 0 or step == cfg.steps:
            cer = char_error_rate(reader, valid)
            history.append(
                {"step": step, "loss": round(loss.item(), 4), "valid_cer": round(cer, 4)}
            )
            logger.info("step %d: validation CER %.4f", step, cer)
            _save_checkpoint(checkpoint, reader, optimizer, scheduler, step, history)
    record = {
        "training": {
            "command": "python scripts/train_page_reader.py --config configs/reader/page_reader.yaml",
            "config": asdict(cfg),
            "history": history,
            "pages_drawn": data.pages,
            "pages_skipped_line_count": data.skipped,
        }
    }
    save_reader(reader.eval(), out / "final", "reader", record)
    return record


def _tuple_channels(overrides: dict[str, Any]) -> dict[str, Any]:
    return {"channels": tuple(overrides["channels"])} if "channels" in overrides else {}


def _save_checkpoint(path: Path, reader, optimizer, scheduler, step: int, history: list) -> None:
    state = {
        "reader": reader.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "step": step,
        "history": history,
    }
    partial = path.with_suffix(".partial")
    torch.save(state, partial)
    os.replace(partial, path)  # a kill leaves the previous checkpoint whole


__all__ = ["ReaderTrainCfg", "decode", "load_train_cfg", "train_reader"]
