"""``python -m benchmarks``: speed and memory of mmembed against the reference libraries.

Prints a table and writes JSON. Ratios compare mmembed with the reference library on the same
weights and inputs, measured in this process, in turns (median of --repeats runs after one
warm-up). Nothing here is asserted in tests. ``--check`` reruns the suites and flags every
ratio that fell by more than 15% against the committed ``benchmarks/results/cpu.json``.
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import time
from pathlib import Path

import torch

from . import check, suites
from .output import write_json

SUITES = {
    "image": lambda a: suites.open_clip_image(a.images, a.batch_size, a.repeats),
    "text": lambda a: suites.open_clip_text(a.texts, a.batch_size, a.repeats),
    "minilm": lambda a: suites.minilm_text(a.texts, a.batch_size, a.repeats),
    "files": lambda a: suites.files_to_vectors(a.files, a.batch_size, a.repeats, a.workers),
    "video": lambda a: suites.video(a.clips, a.repeats),
    "documents": lambda a: suites.documents_and_tables(a.documents, a.repeats),
    "mmeb": lambda a: suites.mmeb_fixture(a.repeats),
    "training": lambda a: suites.training(a.train_steps),
}


def machine() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            cpu = next(
                line.split(":", 1)[1].strip() for line in handle if line.startswith("model name")
            )
    except (OSError, StopIteration):
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
    }


def format_table(rows: list[dict]) -> str:
    lines = [f"{'suite':16s} {'run':58s} {'items/s':>9s} {'peak MB':>8s} {'ratio':>6s}  notes"]
    for r in rows:
        ratio = f"{r['ratio']:.2f}x" if "ratio" in r else ""
        notes = ", ".join(
            f"{k}={r[k]:.5f}" if isinstance(r[k], float) else f"{k}={r[k]}"
            for k in ("cosine_to_fp32", "max_abs_diff", "ratio_vs_fp32_reference", "reference")
            if k in r
        )
        lines.append(
            f"{r['suite']:16s} {r['name'][:58]:58s} {r['items_per_s']:9.1f} {r['peak_rss_mb']:8.0f} {ratio:>6s}  {notes}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--suites", nargs="+", choices=sorted(SUITES), default=list(SUITES))
    parser.add_argument("--images", type=int, default=32, help="images per call")
    parser.add_argument("--texts", type=int, default=256, help="texts per call (paragraphs: 1/8)")
    parser.add_argument("--files", type=int, default=512, help="JPEG files (files suite)")
    parser.add_argument(
        "--workers",
        type=int,
        default=None,
        help="worker processes on both sides of the files suite (default: mmembed's default)",
    )
    parser.add_argument("--clips", type=int, default=16, help="video clips per call")
    parser.add_argument("--documents", type=int, default=32, help="documents/tables per call")
    parser.add_argument("--train-steps", type=int, default=12, help="tiny_clip steps per run")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="JSON results (default: the baseline, unless --check)",
    )
    parser.add_argument("--baseline", type=Path, default=Path("benchmarks/results/cpu.json"))
    parser.add_argument(
        "--check",
        action="store_true",
        help="compare ratios with the committed baseline; exit 1 if one fell by more than 15%%",
    )
    args = parser.parse_args(argv)
    if args.workers is None:
        from mmembed.preparation import default_workers

        args.workers = default_workers()
    logging.basicConfig(level=logging.ERROR)
    started = time.time()
    rows = []
    for name in args.suites:
        suite_rows = SUITES[name](args)
        print(
            format_table(suite_rows).split("\n", 1)[1] if rows else format_table(suite_rows),
            flush=True,
        )
        rows += suite_rows
    report = {
        "machine": machine(),
        "args": {k: str(v) for k, v in vars(args).items()},
        "rows": rows,
        "wall_s": time.time() - started,
    }
    out = args.out or (None if args.check else args.baseline)
    if out is not None:
        write_json(out, report)
    print(f"\n{len(rows)} rows in {report['wall_s']:.0f} s" + (f"; wrote {out}" if out else ""))
    if not args.check:
        return 0
    changes = check.compare(check.committed_rows(args.baseline), rows)
    print("\n" + check.format_changes(changes))
    fell = [c for c in changes if c.regressed]
    print(f"{len(fell)} of {len(changes)} ratios fell by more than {check.TOLERANCE:.0%}")
    return 1 if fell else 0


if __name__ == "__main__":
    raise SystemExit(main())
