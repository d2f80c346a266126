"""Per-query prediction files in VLM2Vec's own formats, and a diff against official ones.

* MMEB (V1): ``<dataset>_pred.txt``, one line per query, the top candidate as the Python tuple
  ``(tgt_text, tgt_img_path)`` (``eval.py`` lines 158-172 on ``v1``).
* MMEB-V2: ``<dataset>_pred.jsonl``, one JSON object per query: ``prediction`` (every ranked
  candidate name, best first), ``label`` (the relevant names) and ``rel_scores`` (their grades,
  or null) (``eval.py`` lines 315-361 on ``main``).

The files sit beside ``report.json``; ``compare_predictions`` reads a folder of official files
(VLM2Vec's ``--encode_output_path``) and lists the queries where the top prediction differs.
"""

from __future__ import annotations

import ast
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .datasets import Benchmark, DatasetSpec, get_dataset
from .report import write_atomic


def prediction_path(out: Path, spec: DatasetSpec) -> Path:
    """Where a dataset's prediction file goes, named as VLM2Vec names it."""
    suffix = "txt" if spec.benchmark is Benchmark.MMEB else "jsonl"
    return out / f"{spec.name}_pred.{suffix}"


def write_predictions(out: Path, spec: DatasetSpec, predictions: list[dict[str, Any]]) -> Path:
    """Write one dataset's predictions in its version's official format, atomically."""
    path = prediction_path(out, spec)
    if spec.benchmark is Benchmark.MMEB:
        text = "".join(f"{tuple(p['top'])}\n" for p in predictions)
    else:
        keys = ("prediction", "label", "rel_scores")
        text = "".join(json.dumps({k: p[k] for k in keys}) + "\n" for p in predictions)
    write_atomic(path, text)
    return path


def read_top_predictions(path: Path) -> list[str]:
    """The top prediction of each query in a prediction file of either format, as text."""
    lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if path.suffix == ".txt":
        return [repr(ast.literal_eval(line)) for line in lines]
    tops = []
    for line in lines:
        ranked = json.loads(line)["prediction"]
        tops.append(str(ranked[0]) if ranked else "")
    return tops


@dataclass
class Comparison:
    """How one dataset's predictions compare with the official file."""

    dataset: str
    queries: int  # queries in both files
    agree: int  # queries with the same top prediction
    disagreements: list[tuple[int, str, str]] = field(default_factory=list)  # (query, ours, theirs)
    note: str = ""  # a count mismatch or a missing file

    def describe(self, shown: int = 5) -> list[str]:
        """Lines for the terminal."""
        lines = [f"{self.dataset}: {self.agree}/{self.queries} top predictions agree{self.note}"]
        for query, ours, theirs in self.disagreements[:shown]:
            lines.append(f"  query {query}: mmembed {ours[:80]!r}, official {theirs[:80]!r}")
        if len(self.disagreements) > shown:
            lines.append(f"  ... {len(self.disagreements) - shown} more")
        return lines


def compare_predictions(ours: Path, official: Path, datasets: list[str]) -> list[Comparison]:
    """Compare the prediction files of ``datasets`` in ``ours`` with those in ``official``."""
    comparisons = []
    for name in datasets:
        spec = get_dataset(name)
        mine, theirs = prediction_path(ours, spec), prediction_path(official, spec)
        if not theirs.is_file() or not mine.is_file():
            absent = theirs if not theirs.is_file() else mine
            comparisons.append(Comparison(name, 0, 0, note=f" (no {absent})"))
            continue
        a, b = read_top_predictions(mine), read_top_predictions(theirs)
        note = f" (mmembed has {len(a)} queries, official {len(b)})" if len(a) != len(b) else ""
        pairs = list(zip(a, b, strict=False))
        differ = [(i, x, y) for i, (x, y) in enumerate(pairs) if x != y]
        comparisons.append(Comparison(name, len(pairs), len(pairs) - len(differ), differ, note))
    return comparisons
