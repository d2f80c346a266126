"""Which engine ``runtime="auto"`` runs a tower on: the faster one on this machine, measured.

ONNX Runtime is not faster than torch everywhere. On the 2-core EPYC this project is measured
on, at the default 2 threads on a quiet machine, torch ran MiniLM's short queries 1.11x and
its paragraphs 1.02x sentence-transformers where ONNX Runtime gave 0.96x and 0.89x, and
ViT-B-32 images 0.99x open_clip against 0.80x; pinned to one core with the other busy, ONNX
Runtime won by 1.6-2x (docs/benchmarks.md). Which one wins depends on the CPU, the thread
count and the library versions, so "auto" measures instead of guessing: the first time a
tower's export is opened on a machine, the tower's own calibration batches (its forward, as
``encode`` runs it) go through torch and the export in turns, ``ROUNDS`` times after a
warm-up; ONNX Runtime wins when its median is ``ONNX_MARGIN`` (5%) below torch's, else
torch runs (a near tie is noise). Both give the same vectors (within 1e-5),
so the choice changes speed only.

The result is cached under ``$MMEMBED_HOME/onnx/speed/`` per weights digest and thread count,
sealed like every cache file (``hub.verified``), and measured again when the CPU, core count,
onnxruntime or torch version differ from the record's. A race run while other programs keep
the cores busy (1-minute load average, less this process, above ``BUSY_PER_CORE`` per core)
decides for this process only and is not cached: ONNX Runtime loses less than torch when the
cores are shared (issue 26), so a busy race would pin a choice a quiet machine may not share. ``MMEMBED_AUTO_RUNTIME=onnx`` or
``=torch`` skips the measurement (a deployment that measured once; the test suite).
"""

from __future__ import annotations

import json
import logging
import os
import platform
import statistics
import time
from collections.abc import Callable
from importlib import metadata
from pathlib import Path

from ..hub import verified
from ..hub.env import mmembed_home

logger = logging.getLogger(__name__)

ENGINES = ("onnx", "torch")  # what "auto" chooses between
AUTO_ENV = "MMEMBED_AUTO_RUNTIME"  # "onnx" or "torch": what "auto" runs, unmeasured
ROUNDS = 3  # timed turns per engine after one warm-up; the median decides
VERSION = 2  # bump when the way the race is run changes (2: full windows, ONNX_MARGIN)
BUSY_PER_CORE = 0.5  # other programs' load per core above which a race is not cached
ONNX_MARGIN = 0.05  # ONNX Runtime runs only when its race median is this much below torch's


def choose(digest: str, threads: int, runs: dict[str, Callable[[], object]]) -> str:
    """ "onnx" or "torch" for a tower with weights ``digest`` on ``threads`` threads.

    Args:
        digest: the tower's weights digest (``digest.tower_digest``).
        threads: the intra-op threads both engines run on.
        runs: engine -> one pass over the tower's calibration batches on that engine.
    """
    forced = os.environ.get(AUTO_ENV, "").strip().lower()
    if forced:
        if forced not in ENGINES:
            raise ValueError(f"{AUTO_ENV} must be one of {ENGINES}, got {forced!r}")
        return forced
    path = record_path(mmembed_home(), digest, threads)
    wanted = context(digest, threads)
    found = read_record(path)
    if found is not None and {k: found.get(k) for k in wanted} == wanted:
        return found["choice"]
    others = others_per_core()
    seconds = race(runs)
    choice = winner(seconds)
    record = {**wanted, "seconds": seconds, "choice": choice, "others_per_core": others}
    if others > BUSY_PER_CORE:
        logger.info("runtime 'auto': machine busy (%.2f per core): %s, not cached", others, choice)
        return choice
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        verified.publish_file(path, lambda tmp: tmp.write_text(json.dumps(record) + "\n"))
    except OSError as error:  # a read-only home: the choice holds for this process only
        logger.warning("runtime 'auto': could not cache its measurement at %s: %s", path, error)
    logger.info(
        "runtime 'auto' runs %s here (median of %d: onnx %.4f s, torch %.4f s)",
        choice,
        ROUNDS,
        seconds["onnx"],
        seconds["torch"],
    )
    return choice


def winner(seconds: dict[str, float]) -> str:
    """ "onnx" when its median beats torch's by ``ONNX_MARGIN``, else "torch": a near tie is
    within the race's noise, and torch then needs no export, no session and no first-call cost
    (on the Xeon a 0.1% win for ONNX Runtime picked an engine 11% slower on long texts)."""
    return "onnx" if seconds["onnx"] < (1 - ONNX_MARGIN) * seconds["torch"] else "torch"


def race(runs: dict[str, Callable[[], object]], rounds: int = ROUNDS) -> dict[str, float]:
    """Median seconds per engine of ``runs``, warmed up once and then timed in turns."""
    for run in runs.values():
        run()
    spent: dict[str, list[float]] = {engine: [] for engine in runs}
    for _ in range(rounds):
        for engine, run in runs.items():
            start = time.perf_counter()
            run()
            spent[engine].append(time.perf_counter() - start)
    return {engine: statistics.median(times) for engine, times in spent.items()}


def others_per_core() -> float:
    """Other programs' load per core: the 1-minute load average less this process's one."""
    cores = os.cpu_count() or 1
    return round(max(os.getloadavg()[0] - 1.0, 0.0) / cores, 3)


def record_path(home: Path, digest: str, threads: int) -> Path:
    """Where the measurement for ``digest`` on ``threads`` threads is cached."""
    return home / "onnx" / "speed" / f"{digest}-t{threads}.json"


def context(digest: str, threads: int) -> dict:
    """What a cached measurement must match to be reused: the weights, threads, machine and
    the versions of both engines."""
    return {
        "version": VERSION,
        "digest": digest,
        "threads": threads,
        "cpu": _cpu(),
        "cores": os.cpu_count(),
        "onnxruntime": _version("onnxruntime"),
        "torch": _version("torch"),
    }


def read_record(path: Path) -> dict | None:
    """The cached measurement at ``path`` when it is intact and readable (a damaged one is
    deleted with a warning by ``hub.verified`` and measured again)."""
    if not verified.intact_file(path):
        return None
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return record if record.get("choice") in ENGINES else None


def _cpu() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None
