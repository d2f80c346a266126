"""``python -m benchmarks``: speed and memory of mmembed against the reference libraries.

Prints a table and writes JSON. Ratios compare mmembed with the reference library on the same
weights and inputs, measured in one process, in turns (A, B, A, B, ...; the median of
--repeats >= 5 rounds after one warm-up). Each suite runs in a child process of its own: its
peak memory is its own, no runtime's thread pools outlive it into the next suite, and a suite
that crashes (the parent once died with exit 139 after a sweep, holding OpenVINO, ONNX
Runtime and torch pools of nine suites) costs its rows only, named in the report. The headline
rows run at the default thread count, as a user gets them; ``--threads 1,4`` adds rows at
each other count (``OMP_NUM_THREADS`` and torch's threads set in the child). Every row records
its thread count and the load that other programs put on the machine before and during its
suite (``benchmarks/load.py``); a suite run while other tasks kept more than 0.5 cores busy is
warned about and marked busy. Nothing here is asserted in tests. ``--check`` reruns the
suites and flags every ratio that fell by more than 15% against the committed
``benchmarks/results/cpu.json``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import signal
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


NOTES = ("auto_ran", "cosine_to_fp32", "max_abs_diff", "ratio_vs_fp32_reference", "reference")


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


CHILD = "MMEMBED_BENCH_CHILD"  # set in a suite's child process: run in-process, write --out


def run_child(suite: str, argv: list[str], threads: int | None) -> tuple[list[dict], str | None]:
    """One suite's rows from a child process (at ``threads``, else the default count), or the
    line saying why it gave none."""
    env = {**os.environ, CHILD: "1"}
    if threads is not None:
        env |= {"OMP_NUM_THREADS": str(threads), "MMEMBED_BENCH_THREADS": str(threads)}
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "rows.json"
        child = [sys.executable, "-X", "faulthandler", "-m", "benchmarks", *argv]
        done = subprocess.run([*child, "--suites", suite, "--out", str(out)], env=env)
        if done.returncode == 0 and out.exists():
            return json.loads(out.read_text())["rows"], None
    where = f"{threads} threads" if threads is not None else "default threads"
    code = done.returncode
    how = f"killed by {signal.Signals(-code).name}" if code < 0 else f"exited {code}"
    return [], f"suite {suite!r} at {where}: child {how}, no rows"


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
        "--merge",
        action="store_true",
        help="keep the output file's rows of suites this run did not measure (recorded in it)",
    )
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
    if os.environ.get(CHILD):  # one suite, in this process
        rows = [row for name in args.suites for row in run_suite(name, args)]
        print(format_table(rows), flush=True)
        write_json(args.out, {"rows": rows})
        return 0
    options = ("--threads", "--out", "--check", "--baseline", "--suites", "--sweep-suites")
    child_argv = _without(list(argv if argv is not None else sys.argv[1:]), options)
    counts = [int(c) for c in args.threads.split(",") if c.strip()]
    plan = [(name, None) for name in args.suites]
    plan += [
        (name, count)
        for count in counts
        if count != torch.get_num_threads()  # the headline rows are this count
        for name in (args.sweep_suites or args.suites)
    ]
    rows, failed = [], []
    for name, threads in plan:
        suite_rows, failure = run_child(name, child_argv, threads)
        rows += suite_rows
        if failure:
            print(f"error: {failure}", file=sys.stderr, flush=True)
            failed.append(failure)
    report = {
        "machine": machine(),
        "args": {k: str(v) for k, v in vars(args).items()},
        "rows": rows,
        "failed": failed,
        "wall_s": time.time() - started,
    }
    out = args.out or (None if args.check else args.baseline)
    if out is not None and args.merge and out.exists():
        report = merged(json.loads(out.read_text()), report)
    if out is not None:
        write_json(out, report)
    print(f"\n{len(rows)} rows in {report['wall_s']:.0f} s" + (f"; wrote {out}" if out else ""))
    if failed:
        print(f"{len(failed)} suite runs gave no rows: " + "; ".join(failed), file=sys.stderr)
    if not args.check:
        return 1 if failed else 0
    changes = check.compare(check.committed_rows(args.baseline), rows)
    print("\n" + check.format_changes(changes))
    fell = [c for c in changes if c.regressed]
    print(f"{len(fell)} of {len(changes)} ratios fell by more than {check.TOLERANCE:.0%}")
    return 1 if fell or failed else 0


def merged(old: dict, new: dict) -> dict:
    """``new`` plus ``old``'s rows of the suites ``new`` did not measure; ``"kept"`` says which
    suites those are and the run (arguments, machine) they came from."""
    measured = {row["suite"] for row in new["rows"]}
    kept = [row for row in old["rows"] if row["suite"] not in measured]
    if not kept:
        return new
    source = {k: old[k] for k in ("args", "machine", "merged", "kept") if k in old}
    suites = sorted({row["suite"] for row in kept})
    return {**new, "rows": new["rows"] + kept, "kept": {"suites": suites, "from": source}}


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
