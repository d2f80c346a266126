"""Training of the reader page tower's line reader (``mmembed.encoders.reader``) with CTC.

Every step draws pages at random: a text (Debian's fortunes, training split, WordNet glosses
and examples, translated messages of Debian's base packages for accented letters, some random
strings for digits, punctuation and rare letters), a font file from the training list that
draws every character of it (Debian font packages; the held-out families are refused), a size
of 12-36 px, width, margins, line spacing, colours, then scan noise
(``mmembed.pages.styles.degrade``: rotation, blur, low resolution, noise, JPEG). The page's
lines are found with the reader's own ``line_crops`` and paired with the lines that were drawn;
a page where the count differs is skipped (and counted), so the reader learns from the crops it
will meet at test time.

    python scripts/train_page_reader.py --config configs/reader/page_reader.yaml [--resume]

The loss is CTC over characters, not a similarity between sides, so this is not a contrastive
recipe; the optimizer, schedule and checkpoints are the trainer's own (``train.optim``,
``train.checkpoint``): AdamW without decay on biases and norms, warm-up then cosine, gradient
clipping, an atomic checkpoint every ``save_every`` steps that ``--resume`` continues from.
``init`` starts from a saved reader (the characters both alphabets share keep their weights).
"""

from __future__ import annotations

import logging
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
    ALPHABETS,
    LATIN,
    LineReader,
    ReaderCfg,
    batch_lines,
    encode,
    line_crops,
    load_reader,
    save_reader,
    to_alphabet,
)
from ..hub.env import respect_omp_thread_limit
from ..pages import corpora
from ..pages.styles import StyleCfg, _colours, degrade, font_files, fonts_for
from ..processors.render import open_font, wrap_text
from .checkpoint import (
    capture_rng,
    latest_checkpoint,
    load_checkpoint,
    prune_checkpoints,
    restore_rng,
    save_checkpoint,
)
from .config import OptimConfig, from_dict
from .optim import build_optimizer, cosine_schedule

logger = logging.getLogger(__name__)
CPU = torch.device("cpu")
TRAIN_COMMAND = "python scripts/train_page_reader.py --config"
DEFAULT_CONFIG = "configs/reader/page_reader.yaml"


def _optim() -> OptimConfig:
    return OptimConfig(
        lr=1e-3, weight_decay=0.01, betas=[0.9, 0.999], eps=1e-8, warmup_steps=150,
        min_lr_ratio=0.05, max_grad_norm=5.0,
    )  # fmt: skip


@dataclass(frozen=True)
class ReaderTrainCfg:
    """A line reader training run (``configs/reader/page_reader.yaml``)."""

    fonts: list[str]  # globs of training font files
    held_out_fonts: list[str]  # globs of families never drawn (the unseen-font evaluation)
    output_dir: str = "runs/page_reader"
    held_out_permille: int = 50  # texts whose hash falls here are never drawn
    steps: int = 2500
    batch_lines: int = 48  # line crops per step
    optim: OptimConfig = field(default_factory=_optim)  # AdamW and its warm-up + cosine
    random_text_prob: float = 0.08  # pages of random strings (digits, symbols, odd case)
    translation_prob: float = 0.3  # pages of translated messages (accented letters)
    max_chars: int = 300  # texts are cut to this length
    save_every: int = 250
    keep_checkpoints: int = 2  # older checkpoints are deleted
    eval_lines: int = 300  # validation lines (training fonts, held-out texts) for the CER
    seed: int = 0
    threads: int = 1  # torch threads
    init: str | None = None  # a saved reader, "FOLDER/NAME" (no suffix), to start from
    reader: dict[str, Any] = field(default_factory=dict)  # ReaderCfg overrides
    style: dict[str, Any] = field(default_factory=dict)  # mmembed.pages.styles.StyleCfg overrides


def load_train_cfg(path: Path) -> ReaderTrainCfg:
    return from_dict(ReaderTrainCfg, yaml.safe_load(path.read_text(encoding="utf-8")), "config")


@dataclass(frozen=True)
class Texts:
    """What pages are drawn from: English prose and accented messages, each split by hash."""

    english: list[str]
    accented: list[str]


class PageLines:
    """Random training pages and the text of each of their lines."""

    def __init__(self, cfg: ReaderTrainCfg, reader: ReaderCfg, texts: Texts, seed: int):
        self.fonts = font_files(cfg.fonts, cfg.held_out_fonts)
        self.texts = texts
        self.cfg = cfg
        self.reader = reader
        self.alphabet = ALPHABETS[reader.alphabet]
        self.style = StyleCfg(**cfg.style)
        self.rng = random.Random(seed)
        self.pages = self.skipped = 0

    def text(self) -> str:
        draw = self.rng.random()
        if draw < self.cfg.random_text_prob:
            return random_words(self.rng, self.alphabet)
        accented = draw < self.cfg.random_text_prob + self.cfg.translation_prob
        pool = self.texts.accented if accented and self.texts.accented else self.texts.english
        return self.rng.choice(pool)[: self.cfg.max_chars]

    def page(self, text: str) -> tuple[Image.Image, list[str]]:
        """``text`` drawn in a random look, and the lines drawn (in the reader's alphabet).

        The font is one that draws every character of ``text``; when none does, the text is
        drawn as its ASCII look-alike."""
        rng, style = self.rng, self.style
        fonts = fonts_for(text, self.fonts)
        if not fonts:
            text, fonts = to_alphabet(text, LATIN[:95]), self.fonts
        size = rng.randint(*style.sizes)
        font = open_font(rng.choice(fonts), size)
        width = rng.randint(style.min_width, style.page_width)
        margin = rng.randint(*style.margins)
        step = max(1, round(size * rng.uniform(*style.line_spacing)))
        lines = [
            line
            for line in wrap_text(text, font, width - 2 * margin)
            if to_alphabet(line, self.alphabet)
        ]
        lines = lines[: max(1, (style.page_height - 2 * margin) // step)]
        height = 2 * margin + step * len(lines) + size // 3 + rng.randint(0, 30)
        fg, bg = _colours(rng, style)
        page = Image.new("RGB", (width, height), bg)
        draw = ImageDraw.Draw(page)
        for number, line in enumerate(lines):
            draw.text((margin, margin + number * step), line, font=font, fill=fg)
        return degrade(page, rng, style), [to_alphabet(line, self.alphabet) for line in lines]

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


def random_words(rng: random.Random, alphabet: str = LATIN) -> str:
    """A line of random tokens: numbers, dates, codes, punctuation, odd capitals, rare letters."""
    letters = "".join(c for c in alphabet if c.isalpha())
    pools = [string.digits, string.ascii_letters, string.punctuation, string.ascii_uppercase]
    pools += [letters] if len(letters) > 52 else []
    printable = alphabet[1:]  # no space
    words = []
    for _ in range(rng.randint(3, 12)):
        pool = rng.choice(pools) if rng.random() < 0.5 else printable
        words.append("".join(rng.choice(pool) for _ in range(rng.randint(1, 9))))
    return " ".join(words)


def corpus(permille: int) -> tuple[Texts, Texts]:
    """(training, held-out) texts. English: fortunes split by hash, plus WordNet glosses and
    examples; accented: translated messages (``corpora.read_translations``) split by hash.

    A text filed twice can hash to both sides (its line breaks differ); its held-out copy is
    dropped, as the evaluation sets (``mmembed.pages.unseen``) drop it.
    """
    fortunes_train, fortunes_held = corpora.split_held_out(corpora.read_fortunes(), permille)
    glosses = corpora.read_wordnet() + corpora.read_wordnet_examples()
    gloss_train, _ = corpora.split_held_out(glosses, permille)
    train = [g.text for g in fortunes_train] + [g.text for g in gloss_train]
    seen = {corpora.one_line(text) for text in train}
    held = [line for g in fortunes_held if (line := corpora.one_line(g.text)) not in seen]
    try:
        translations = corpora.read_translations()
    except FileNotFoundError as missing:
        logger.warning("no accented texts: %s", missing)
        translations = []
    accented_train, accented_held = corpora.split_held_out(translations, permille)
    accented = sorted({g.text for g in accented_train})
    accented_held_texts = sorted({g.text for g in accented_held} - set(accented))
    return Texts(train, accented), Texts(held, accented_held_texts)


def ctc_loss(reader: LineReader, pairs: list[tuple[Any, str]], loss: nn.CTCLoss) -> torch.Tensor:
    lines, widths = batch_lines([crop for crop, _ in pairs])
    log_probs = reader(lines).log_softmax(-1).transpose(0, 1)  # (T, B, C)
    targets = [torch.tensor(encode(text, reader.alphabet)) for _, text in pairs]
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


def train_reader(
    cfg: ReaderTrainCfg, resume: bool = False, command: str = f"{TRAIN_COMMAND} {DEFAULT_CONFIG}"
) -> dict[str, Any]:
    """Train, checkpoint and save ``output_dir/final`` (a loadable reader); return the record,
    which keeps ``command`` (the command line that ran, with its config) beside the config."""
    torch.set_num_threads(cfg.threads)
    respect_omp_thread_limit()
    torch.manual_seed(cfg.seed)
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    reader_cfg = ReaderCfg(**{**cfg.reader, **_tuple_channels(cfg.reader)})
    # Validation reads with the weights being trained, never an export.
    reader = LineReader(reader_cfg, runtime="torch")
    if cfg.init:
        warm_start(reader, load_reader(Path(cfg.init).name, Path(cfg.init).parent))
    optimizer = build_optimizer(reader, cfg.optim)
    scheduler = cosine_schedule(
        optimizer, cfg.optim.warmup_steps, cfg.steps, cfg.optim.min_lr_ratio
    )
    train_texts, held_texts = corpus(cfg.held_out_permille)
    valid = PageLines(cfg, reader_cfg, held_texts, seed=cfg.seed + 10_000).batch(cfg.eval_lines)
    step, history, drawn = 0, [], {"pages": 0, "skipped": 0}
    last = latest_checkpoint(out) if resume else None
    if last is not None:
        state = load_checkpoint(last)
        reader.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        step, history, drawn = state["step"], state["history"], state["drawn"]
        restore_rng(state["rng"], CPU)
        # The learning rate of this config's schedule (its ``steps`` may differ from the run's).
        for group, base in zip(optimizer.param_groups, scheduler.base_lrs, strict=True):
            group["lr"] = base * scheduler.lr_lambdas[0](step)
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
        nn.utils.clip_grad_norm_(reader.parameters(), cfg.optim.max_grad_norm or float("inf"))
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
            # A resumed run redraws from a seed of its step; the lines queued now are dropped.
            queue = []
            data.rng = random.Random(cfg.seed + step)
            totals = {
                "pages": drawn["pages"] + data.pages,
                "skipped": drawn["skipped"] + data.skipped,
            }
            state = {
                "model": reader.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "step": step,
                "history": history,
                "drawn": totals,
                "rng": capture_rng(CPU),
            }
            save_checkpoint(state, out / f"step_{step:08d}.pt")
            prune_checkpoints(out, cfg.keep_checkpoints)
    totals = {"pages": drawn["pages"] + data.pages, "skipped": drawn["skipped"] + data.skipped}
    record = {
        "training": {
            "command": command,
            "config": asdict(cfg),
            "history": history,
            "pages_drawn": totals["pages"],
            "pages_skipped_line_count": totals["skipped"],
        }
    }
    save_reader(reader.eval(), out / "final", "reader", record)
    return record


def warm_start(reader: LineReader, source: LineReader) -> None:
    """Copy ``source``'s weights into ``reader``; the classifier row of each character both
    alphabets hold (and the blank's) is copied, the new characters keep their fresh init."""
    state = {k: v for k, v in source.state_dict().items() if not k.startswith("classify.")}
    reader.load_state_dict(state, strict=False)
    rows = [0] + [reader.alphabet.index(c) + 1 for c in source.alphabet]
    with torch.no_grad():
        reader.classify.weight[rows] = source.classify.weight
        reader.classify.bias[rows] = source.classify.bias
    logger.info("started from a reader of %d characters", len(source.alphabet))


def _tuple_channels(overrides: dict[str, Any]) -> dict[str, Any]:
    return {"channels": tuple(overrides["channels"])} if "channels" in overrides else {}


__all__ = ["ReaderTrainCfg", "Texts", "load_train_cfg", "train_reader", "warm_start"]
