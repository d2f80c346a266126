"""``python -m benchmarks.pages``: mmembed-mini's page routes on the same unseen-font pages.

The pages are held-out texts in held-out font families (``mmembed.pages.unseen``: fonts and
texts that neither the line reader's nor the pixel tower's training draws), in three sets:
``unseen`` (one fortune a page), ``accented`` (translated messages: é, ü, ß, ł, ş, ...) and
``two_column`` (at most 96 pages of two columns, two fortunes each). Each route (``reader``: line
reader + text tower; ``pixel``: the pixel tower; ``ocr``: Tesseract + text tower) embeds the
same pages through ``Embedder.encode`` (PIL pages, drawn before timing); the queries are the
texts embedded by the text tower, which all routes share. Reported per set, route and size:
text -> page recall@1 and @5 (ties count for the query), pages/s of one timed pass after a short
warm-up, and for the routes that read, the character error rate of what they read against the
drawn text (``to_alphabet``'d; edit distance over all pages / characters drawn).

    python -m benchmarks.pages                       # 200 sentences at 20 px
    python -m benchmarks.pages --sizes 14 20 28      # all three evaluation sizes
    python -m benchmarks.pages --sets unseen accented two_column --routes reader

    python -m benchmarks.pages --routes reader --reader runs/page_reader/final  # a run

Speed is wall time on this machine under its current load; compare the routes' ratios,
which are measured in one process.
"""

from __future__ import annotations

import argparse
import logging
import os
import time
from pathlib import Path

import numpy as np
import torch

import mmembed
from mmembed.encoders.reader import load_reader, to_alphabet
from mmembed.eval.metrics import mean_metrics
from mmembed.pages.unseen import accented_set, two_column_set, unseen_set
from mmembed.train import load_config

from .__main__ import machine
from .output import write_json

ROOT = Path(__file__).resolve().parent.parent
UNSEEN_CONFIG = ROOT / "configs" / "pixel_text_fonts.yaml"
ROUTES = ("reader", "pixel", "ocr")
SETS = {"unseen": unseen_set, "accented": accented_set, "two_column": two_column_set}


def recall(queries: np.ndarray, pages: np.ndarray) -> dict[str, float]:
    """Recall@1/5 when query ``i`` should find page ``i`` (ties count for the query)."""
    scores = queries @ pages.T
    found = mean_metrics(scores, np.eye(len(scores)), ("recall@1", "recall@5"), ties="optimistic")
    return {"recall_at_1": found["recall@1"], "recall_at_5": found["recall@5"]}


def char_error_rate(read: list[str], drawn: list[str]) -> float:
    """Edit distance of what was read to what was drawn, over all pages, per character drawn."""
    from rapidfuzz.distance import Levenshtein

    truth = [to_alphabet(text) for text in drawn]
    errors = sum(Levenshtein.distance(a, b) for a, b in zip(read, truth, strict=True))
    return errors / max(1, sum(len(text) for text in truth))


def run_route(
    route: str,
    texts: list[str],
    pages_by_size: dict,
    warmup: int,
    reader: Path | None = None,
    name: str = "unseen",
) -> list[dict]:
    """Rows of one route on one set: load, embed the queries, time the pages of each size.

    ``reader``: with the reader route, a training run's ``final`` folder to read with instead of
    the shipped line reader (to measure a run before ``--export``).
    """
    model = mmembed.load("mmembed-mini", page=route)
    if route == "reader" and reader is not None:
        model.towers["page"].reader = load_reader(reader.name, reader.parent)
    queries = model.encode(texts, show_progress_bar=False)
    tower = model.towers["page"]
    rows = []
    for size, pages in pages_by_size.items():
        model.encode(pages[:warmup], show_progress_bar=False)
        started = time.perf_counter()
        vectors = model.encode(pages, show_progress_bar=False)
        seconds = time.perf_counter() - started
        reads = hasattr(tower, "read")  # the routes that read text (reader, ocr)
        cer = char_error_rate([tower.read(p.source) for p in pages], texts) if reads else None
        rows.append(
            {
                "set": name,
                "route": route,
                "size_px": size,
                "pages": len(pages),
                "seconds": round(seconds, 2),
                "pages_per_s": round(len(pages) / seconds, 2),
                **{k: round(v, 3) for k, v in recall(queries, vectors).items()},
                "cer": None if cer is None else round(cer, 4),
            }
        )
        print(format_row(rows[-1]), flush=True)
    return rows


def format_row(row: dict) -> str:
    cer = "-" if row["cer"] is None else f"{row['cer']:.4f}"
    return (
        f"{row['set']:10s} {row['route']:6s} {row['size_px']:>4d}px {row['pages']:>6d} "
        f"{row['recall_at_1']:>6.3f} {row['recall_at_5']:>6.3f} {cer:>7s} {row['pages_per_s']:>9.2f}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.pages", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "--sentences", type=int, default=200, help="pages of the unseen and accented sets"
    )
    parser.add_argument("--sets", nargs="+", choices=list(SETS), default=["unseen"])
    parser.add_argument("--sizes", type=int, nargs="+", default=[20], help="font sizes in px")
    parser.add_argument("--routes", nargs="+", choices=ROUTES, default=list(ROUTES))
    parser.add_argument(
        "--reader",
        type=Path,
        help="reader route: a saved reader FOLDER/NAME (a run's final/reader) to use instead",
    )
    parser.add_argument("--warmup", type=int, default=8, help="pages embedded before timing")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "pages.json")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)
    os.environ.setdefault("OMP_THREAD_LIMIT", "1")  # one thread per Tesseract process
    options = load_config(UNSEEN_CONFIG).task_options
    fonts, permille = options["held_out_fonts"], options["held_out_permille"]
    started = time.time()
    print(
        f"{'set':10s} {'route':6s} {'size':>6s} {'pages':>6s} {'R@1':>6s} {'R@5':>6s} "
        f"{'CER':>7s} {'pages/s':>9s}"
    )
    rows, families = [], {}
    for name in args.sets:
        # The two-column set holds 96 pages (four held-out fortunes each).
        count = min(args.sentences, 96) if name == "two_column" else args.sentences
        held = SETS[name](fonts, permille, count)
        families[name] = held.families()
        pages_by_size = {
            size: [mmembed.Page(held.page(i, size)) for i in range(len(held.texts))]
            for size in args.sizes
        }
        for route in args.routes:
            rows += run_route(route, held.texts, pages_by_size, args.warmup, args.reader, name)
    speed = {(r["set"], r["route"], r["size_px"]): r["pages_per_s"] for r in rows}
    for name in args.sets:
        for size in args.sizes:
            for route in ("reader", "pixel"):
                if (name, route, size) in speed and (name, "ocr", size) in speed:
                    ratio = speed[name, route, size] / speed[name, "ocr", size]
                    print(f"{name} {size}px: {route} / OCR pages/s = {ratio:.1f}x")
    report = {
        "machine": {**machine(), "load_average": os.getloadavg()},
        "pages": {"sets": args.sets, "sentences": args.sentences, "families": families},
        "reader": str(args.reader) if args.reader else "shipped",
        "torch_threads": torch.get_num_threads(),
        "rows": rows,
        "wall_s": round(time.time() - started, 1),
    }
    write_json(args.out, report)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
