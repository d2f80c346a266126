"""Show torch's CPU gradients going wrong when ``OMP_THREAD_LIMIT`` is below its thread count.

    python scripts/omp_thread_limit.py

Runs the same seeded convolution backward in three fresh processes: torch's default threads,
``OMP_THREAD_LIMIT=1`` with torch's default threads (what a process inherits from a parent that
set the limit for Tesseract), and ``OMP_THREAD_LIMIT=1`` after
``mmembed.hub.env.respect_omp_thread_limit()``. Prints each weight-gradient norm; the
second differs from the first on torch 2.14 when torch plans for two or more threads.
"""

from __future__ import annotations

import os
import subprocess
import sys

CHILD = """
import sys, torch
if sys.argv[1] == "guarded":
    from mmembed.hub.env import respect_omp_thread_limit
    respect_omp_thread_limit()
torch.manual_seed(0)
conv = torch.nn.Conv2d(3, 32, 8, 8)
conv(torch.randn(8, 3, 64, 64)).square().sum().backward()
print(torch.get_num_threads(), conv.weight.grad.norm().item())
"""


def run(label: str, limit: str | None, mode: str) -> tuple[int, float]:
    env = {key: value for key, value in os.environ.items() if key != "OMP_THREAD_LIMIT"}
    if limit is not None:
        env["OMP_THREAD_LIMIT"] = limit
    out = subprocess.run(
        [sys.executable, "-c", CHILD, mode], env=env, capture_output=True, text=True, check=True
    ).stdout.split()
    threads, norm = int(out[0]), float(out[1])
    print(f"{label:48s} torch threads {threads}   conv weight-gradient norm {norm:.4f}")
    return threads, norm


def main() -> int:
    _, reference = run("default", None, "plain")
    _, limited = run("OMP_THREAD_LIMIT=1, torch's default threads", "1", "plain")
    _, guarded = run("OMP_THREAD_LIMIT=1, respect_omp_thread_limit()", "1", "guarded")
    print(
        f"relative error: limited {abs(limited - reference) / reference:.3f}, "
        f"guarded {abs(guarded - reference) / reference:.3f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
