"""``python -m benchmarks``: speed and memory of mmembed against the reference libraries.

Prints a table and writes JSON. Ratios compare mmembed with the reference library on the same
weights and inputs, measured in this process, in turns (A, B, A, B, ...; the median of
--repeats >= 5 rounds after one warm-up). The headline rows run at the default thread count, as
a user gets them; ``--threads 1,4`` adds rows at each other count (a child process per count,
``OMP_NUM_THREADS`` and torch's threads set). Every row records its thread count and the load
that other programs put on the machine before and during its suite (``benchmarks/load.py``);
a suite run while other tasks kept more than 0.5 cores busy is warned about and marked busy.
Nothing here is asserted in tests. ``--check`` reruns the suites and flags every ratio that
fell by more than 15% against the committed ``benchmarks/results/cpu.json``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from . import check, runtimes, suites
from .load import LoadMonitor, quiet_before
from .output import write_json

SUITES = {
    "image": lambda a: suites.open_clip_image(a.images, a.batch_size, a.repeats),
    "text": lambda a: suites.open_clip_text(a.texts, a.batch_size, a.repeats),
    "minilm": lambda a: suites.minilm_text(a.texts, a.batch_size, a.repeats),
    "runtimes": lambda a: runtimes.text_runtimes(a.texts, a.batch_size, a.repeats),
    "image-runtimes": lambda a: runtimes.image_runtimes(a.images, a.batch_size, a.repeats),
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
        "onnxruntime": _version("onnxruntime"),
        "openvino": _version("openvino"),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
    }


NOTES = ("cosine_to_fp32", "max_abs_diff", "ratio_vs_fp32_reference", "reference")


def _version(package: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return None


def format_table(rows: list[dict]) -> str:
    """One line per row: its thread count, the other tasks' load per core during its suite
    (``busy`` when above 0.5), speed, memory, ratio to its reference."""
    head = f"{'suite':16s} {'run':58s} {'thr':>3s} {'load':>5s} {'items/s':>9s} {'peak MB':>8s}"
    lines = [f"{head} {'ratio':>6s}  notes"]
    for r in rows:
        ratio = f"{r['ratio']:.2f}x" if "ratio" in r else ""
        notes = ", ".join(
            f"{k}={r[k]:.5f}" if isinstance(r[k], float) else f"{k}={r[k]}" for k in NOTES if k in r
        )
        load = f"{r['others_per_core']:.2f}" if "others_per_core" in r else ""
        busy = "BUSY " if r.get("busy") else ""
        lines.append(
            f"{r['suite'][:16]:16s} {r['name'][:58]:58s} {r.get('threads', ''):>3} {load:>5s} "
            f"{r['items_per_s']:9.1f} {r['peak_rss_mb']:8.0f} {ratio:>6s}  {busy}{notes}"
        )
    return "\n".join(lines)


def run_suite(name: str, args: argparse.Namespace) -> list[dict]:
    """The suite's rows, each with its thread count and the load before and during it."""
    before = quiet_before()
    with LoadMonitor() as monitor:
        rows = SUITES[name](args)
    during = monitor.summary()
    load = {
        "threads": torch.get_num_threads(),
        "load_before": before["load_before"],
        "others_per_core_before": before["others_per_core"],
        "load_after": during["load_after"],
        "others_per_core": during["others_per_core"],
        "busy": before["busy"] or during["busy"],
    }
    if load["busy"]:
        print(
            f"warning: suite {name!r} ran on a busy machine ({load['others_per_core']:.2f} other "
            f"runnable tasks per core during it, {load['others_per_core_before']:.2f} before): "
            "its rows are marked busy; rerun on a quiet machine for what a user gets",
            file=sys.stderr,
            flush=True,
        )
    return [{**row, **load} for row in rows]


def sweep(counts: list[int], argv: list[str]) -> list[dict]:
    """Rows at each thread count of ``counts`` other than the default, one child each."""
    rows = []
    for count in counts:
        if count == torch.get_num_threads():
            continue  # the headline rows are this count
        with tempfile.TemporaryDirectory() as folder:
            out = Path(folder) / "rows.json"
            env = {**os.environ, "OMP_NUM_THREADS": str(count), "MMEMBED_BENCH_THREADS": str(count)}
            child = [sys.executable, "-m", "benchmarks", *argv, "--threads", "", "--out", str(out)]
            subprocess.run(child, env=env, check=True)
            rows += json.loads(out.read_text())["rows"]
    return rows


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
    parser.add_argument("--repeats", type=int, default=5, help="timed rounds (median of >= 5)")
    parser.add_argument(
        "--threads",
        default="",
        help="comma-separated thread counts to add rows for, e.g. 1,4 (default: none)",
    )
    parser.add_argument(
        "--sweep-suites",
        nargs="+",
        choices=sorted(SUITES),
        default=None,
        help="the suites --threads adds rows for (default: --suites)",
    )
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
    if os.environ.get("MMEMBED_BENCH_THREADS"):  # a child of --threads
        torch.set_num_threads(int(os.environ["MMEMBED_BENCH_THREADS"]))
    if args.repeats < 5:
        print(f"note: --repeats {args.repeats} < 5: a smoke run, not a figure", file=sys.stderr)
    if args.workers is None:
        from mmembed.preparation import default_workers

        args.workers = default_workers()
    logging.basicConfig(level=logging.ERROR)
    started = time.time()
    rows = []
    for name in args.suites:
        suite_rows = run_suite(name, args)
        print(
            format_table(suite_rows).split("\n", 1)[1] if rows else format_table(suite_rows),
            flush=True,
        )
        rows += suite_rows
    counts = [int(c) for c in args.threads.split(",") if c.strip()]
    if counts:
        child_argv = [a for a in (argv if argv is not None else sys.argv[1:])]
        options = ("--threads", "--out", "--check", "--baseline", "--suites", "--sweep-suites")
        child_argv = _without(child_argv, options)
        child_argv += ["--suites", *(args.sweep_suites or args.suites)]
        swept = sweep(counts, child_argv)
        if swept:
            print(format_table(swept).split("\n", 1)[1], flush=True)
        rows += swept
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


def _without(argv: list[str], options: tuple[str, ...]) -> list[str]:
    """``argv`` less ``options`` and their values (``--out X`` and ``--out=X`` alike)."""
    kept, skipping = [], False
    for arg in argv:
        if skipping and not arg.startswith("--"):
            continue  # a value of the option being left out (--suites takes several)
        skipping = False
        if arg in options:
            skipping = arg != "--check"
            continue
        if arg.split("=", 1)[0] in options:
            continue
        kept.append(arg)
    return kept


if __name__ == "__main__":
    raise SystemExit(main())
