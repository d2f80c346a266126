"""Median-of-N timing after warm-up, and peak resident memory while a call runs.

``measure_interleaved`` runs the compared functions in turns (A, B, A, B, ...), so a burst of
load from other processes on a shared machine hits both sides of a ratio alike; ``ratio`` is
then the median of the ratios of calls made side by side.
"""

from __future__ import annotations

import os
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

_PAGE = os.sysconf("SC_PAGE_SIZE")


@dataclass
class Measurement:
    name: str  # what ran, e.g. "mmembed encode"
    items: int  # items per call
    seconds: float  # median wall time of one call
    items_per_s: float
    peak_rss_mb: float  # highest resident memory of the process during the timed calls
    runs_s: list[float] = field(default_factory=list)  # every timed call, in order

    def as_dict(self) -> dict:
        return asdict(self)


def _rss_bytes() -> int:
    with open("/proc/self/statm", encoding="ascii") as handle:
        return int(handle.read().split()[1]) * _PAGE


class PeakRss:
    """Samples /proc/self/statm every 5 ms on a thread: CPU peak memory without tracing."""

    def __enter__(self):
        self.peak = _rss_bytes()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self):
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, _rss_bytes())

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def measure(
    name: str, fn: Callable[[], object], items: int, repeats: int = 3, warmup: int = 1
) -> Measurement:
    """Run ``fn`` ``warmup`` times, then ``repeats`` timed times; report the median."""
    for _ in range(warmup):
        fn()
    times = []
    with PeakRss() as memory:
        for _ in range(repeats):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
    seconds = statistics.median(times)
    return Measurement(name, items, seconds, items / seconds, memory.peak / 2**20)


def measure_interleaved(
    runs: dict[str, Callable[[], object]], items: int, repeats: int = 3, warmup: int = 1
) -> dict[str, Measurement]:
    """Each of ``runs`` warmed up, then timed ``repeats`` times in turns; medians per name."""
    for fn in runs.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {name: [] for name in runs}
    peaks: dict[str, int] = dict.fromkeys(runs, 0)
    for _ in range(repeats):
        for name, fn in runs.items():
            with PeakRss() as memory:
                start = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - start)
            peaks[name] = max(peaks[name], memory.peak)
    out = {}
    for name, spent in times.items():
        seconds = statistics.median(spent)
        out[name] = Measurement(name, items, seconds, items / seconds, peaks[name] / 2**20, spent)
    return out


def ratio(m: Measurement, reference: Measurement) -> float:
    """How many times faster ``m`` is than ``reference``.

    For runs timed in turns, the median over rounds of the per-round ratio (each round's
    calls ran next to each other, under the same load); otherwise the ratio of medians.
    """
    if m.runs_s and len(m.runs_s) == len(reference.runs_s):
        per_round = [r / t for r, t in zip(reference.runs_s, m.runs_s, strict=True)]
        return statistics.median(per_round) * reference.items / m.items
    return m.items_per_s / reference.items_per_s
