"""How busy the machine is while a suite runs, without counting the suite itself.

A ratio measured while other programs share the cores is not what a user gets on a quiet
machine: ONNX Runtime loses less than torch when cores are shared, so a loaded run flatters
mmembed (issue 26: x2.04 loaded against x1.17-1.25 quiet on MiniLM). Every suite therefore runs
inside a :class:`LoadMonitor`, which samples, every 0.25 s, the number of runnable tasks on the
machine (``/proc/loadavg``'s fourth field) minus this process's own running threads. Its row
is marked busy when the mean over the suite of those *other* runnable tasks exceeds
``BUSY_PER_CORE`` per core. The 1-minute load average before and after is recorded as well,
as the kernel reports it (it counts the suite too).
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

BUSY_PER_CORE = 0.5  # other runnable tasks per core above which a measurement is marked busy
SAMPLE_S = 0.25


def runnable_total() -> int:
    """Tasks running or ready to run on the machine now (``/proc/loadavg``), the reader included."""
    return int(Path("/proc/loadavg").read_text().split()[3].split("/")[0])


def runnable_own() -> int:
    """This process's threads that are running or ready to run now."""
    count = 0
    for stat in Path("/proc/self/task").glob("*/stat"):
        try:
            state = stat.read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue  # the thread ended while we looked
        count += state == "R"
    return count


def load_average() -> float:
    """The kernel's 1-minute load average."""
    return float(Path("/proc/loadavg").read_text().split()[0])


class LoadMonitor:
    """Samples the other tasks' load on a thread while the ``with`` block runs."""

    def __init__(self, cores: int | None = None):
        self.cores = cores or os.cpu_count() or 1
        self.samples: list[int] = []

    def __enter__(self) -> LoadMonitor:
        self.before = load_average()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(SAMPLE_S):
            # The sampling thread itself is running in both counts; it cancels out.
            self.samples.append(max(runnable_total() - runnable_own(), 0))

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.after = load_average()

    def summary(self) -> dict:
        """``load_before``/``load_after`` (1-min averages), ``others_per_core`` (mean other
        runnable tasks per core during the block) and ``busy``."""
        others = sum(self.samples) / len(self.samples) if self.samples else 0.0
        per_core = others / self.cores
        return {
            "load_before": self.before,
            "load_after": self.after,
            "others_per_core": round(per_core, 3),
            "busy": per_core > BUSY_PER_CORE,
        }


def quiet_before(seconds: float = 2.0) -> dict:
    """The other tasks' load per core over ``seconds`` before a suite starts."""
    with LoadMonitor() as monitor:
        time.sleep(seconds)
    return monitor.summary()
