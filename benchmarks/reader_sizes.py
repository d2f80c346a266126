"""``python -m benchmarks.reader_sizes``: the line reader sizes measured for the reader page route.

For each training config: its parameters, its validation character error rate at each
checkpointed step (from the run's ``checkpoint.pt``: same data, schedule and steps for every
size, so equal steps compare equal training) and the time to read one unseen-font page at
20 px (line finding excluded, one thread, best of two passes over the same pages).

    python -m benchmarks.reader_sizes configs/reader/page_reader.yaml configs/reader/page_reader_small.yaml
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from mmembed.encoders.reader import LineReader, ReaderCfg, line_crops
from mmembed.pages.unseen import unseen_set
from mmembed.train.page_reader import load_train_cfg

from .output import write_json

ROOT = Path(__file__).resolve().parent.parent


def read_ms(reader: LineReader, crops: list) -> float:
    reader.read(crops[0])  # warm-up
    best = float("inf")
    for _ in range(2):
        started = time.perf_counter()
        for page in crops:
            reader.read(page)
        best = min(best, time.perf_counter() - started)
    return 1000 * best / len(crops)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.reader_sizes")
    parser.add_argument("configs", type=Path, nargs="+", help="page reader training configs")
    parser.add_argument("--pages", type=int, default=60, help="unseen-font pages timed")
    parser.add_argument(
        "--out", type=Path, default=ROOT / "benchmarks" / "results" / "reader_sizes.json"
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    first = load_train_cfg(args.configs[0])
    held = unseen_set(first.held_out_fonts, first.held_out_permille, args.pages)
    crops = [line_crops(held.page(i, 20), ReaderCfg()) for i in range(len(held.texts))]
    rows = []
    for path in args.configs:
        cfg = load_train_cfg(path)
        overrides = dict(cfg.reader)
        if "channels" in overrides:
            overrides["channels"] = tuple(overrides["channels"])
        reader = LineReader(ReaderCfg(**overrides)).eval()
        checkpoint = Path(cfg.output_dir) / "checkpoint.pt"
        history = (
            torch.load(checkpoint, weights_only=False)["history"] if checkpoint.is_file() else []
        )
        rows.append(
            {
                "config": str(path),
                "channels": list(reader.cfg.channels),
                "hidden": reader.cfg.hidden,
                "parameters_m": round(sum(p.numel() for p in reader.parameters()) / 1e6, 2),
                "fp16_mb": round(sum(p.numel() for p in reader.state_dict().values()) * 2 / 1e6, 2),
                "read_ms_per_page": round(read_ms(reader, crops), 1),
                "valid_cer_by_step": {row["step"]: row["valid_cer"] for row in history},
            }
        )
    steps = sorted(set.intersection(*(set(r["valid_cer_by_step"]) for r in rows)))
    print(f"{'config':38s} {'params':>7s} {'MB':>5s} {'ms/page':>8s}  CER at steps {steps}")
    for r in rows:
        cers = " ".join(f"{r['valid_cer_by_step'][s]:.4f}" for s in steps)
        print(
            f"{r['config']:38s} {r['parameters_m']:>6.2f}M {r['fp16_mb']:>5.2f} "
            f"{r['read_ms_per_page']:>8.1f}  {cers}"
        )
    write_json(args.out, {"pages": len(crops), "size_px": 20, "rows": rows})
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
