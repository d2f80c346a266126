"""Regression guard: ratios of a new run against the last committed results.

Only ratios are compared (mmembed against a reference timed in the same process), never
absolute times, which depend on the machine and its load.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path

TOLERANCE = 0.15  # a ratio may fall by this fraction of its committed value before it is flagged


@dataclass
class RatioChange:
    key: str  # "suite | run | ratio field"
    committed: float
    measured: float

    @property
    def change(self) -> float:
        return self.measured / self.committed - 1

    @property
    def regressed(self) -> bool:
        return self.change < -TOLERANCE


def committed_rows(path: Path) -> list[dict]:
    """Rows of ``path`` as committed at git HEAD (the file on disk when git has none)."""
    try:
        text = subprocess.run(
            ["git", "show", f"HEAD:{path.as_posix()}"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        text = path.read_text()
    return json.loads(text)["rows"]


def ratios(rows: list[dict]) -> dict[str, float]:
    """Every ratio field of every row, keyed by suite, run name and field."""
    return {
        f"{r['suite']} | {r['name']} | {field}": float(value)
        for r in rows
        for field, value in r.items()
        if field.startswith("ratio") and isinstance(value, (int, float))
    }


def compare(committed: list[dict], measured: list[dict]) -> list[RatioChange]:
    """Changes of the ratios present in both runs, in the order of the new run."""
    before = ratios(committed)
    return [
        RatioChange(key, before[key], value)
        for key, value in ratios(measured).items()
        if key in before and before[key] > 0
    ]


def format_changes(changes: list[RatioChange]) -> str:
    lines = [f"{'ratio':96s} {'committed':>9s} {'now':>7s} {'change':>7s}"]
    for c in changes:
        flag = "  FELL" if c.regressed else ""
        lines.append(
            f"{c.key[:96]:96s} {c.committed:8.2f}x {c.measured:6.2f}x {c.change:+7.0%}{flag}"
        )
    return "\n".join(lines)
