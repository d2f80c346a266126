"""``python -m benchmarks.tables RESULTS.json ...``: the markdown tables docs/benchmarks.md and
the README quote, printed from the results files, so every figure there comes from a run.

One table per suite: rows at the default thread count first, then the other counts; each row
names its thread count, the other tasks' load per core during its suite (``busy`` above 0.5,
see ``benchmarks/load.py``), items/s, the ratio to its reference and its quality columns.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

EXTRA = (
    "cosine_to_fp32",
    "max_abs_diff",
    "recall_at_1",
    "ndcg_at_10",
    "recall_at_1_change",
    "ndcg_at_10_change",
)


def table(rows: list[dict], default_threads: int) -> str:
    """A markdown table of one suite's rows, default threads first."""
    rows = sorted(rows, key=lambda r: r.get("threads", default_threads) != default_threads)
    columns = [c for c in EXTRA if any(c in r for r in rows)]
    head = ["run", "threads", "load/core", "items/s", "ratio", "vs", *columns]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        load = r.get("others_per_core")
        load_text = "" if load is None else f"{load:.2f}" + (" busy" if r.get("busy") else "")
        cells = [
            r["name"],
            str(r.get("threads", "")),
            load_text,
            f"{r['items_per_s']:.1f}",
            f"{r['ratio']:.2f}x" if "ratio" in r else "",
            r.get("reference", ""),
            *[_cell(c, r.get(c)) for c in columns],
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _cell(column: str, value) -> str:
    if value is None:
        return ""
    if column == "max_abs_diff":
        return f"{value:.1e}"
    return f"{value:+.4f}" if column.endswith("_change") else f"{value:.4f}"


def main(argv: list[str] | None = None) -> int:
    for path in argv if argv is not None else sys.argv[1:]:
        report = json.loads(Path(path).read_text())
        default = int(report["machine"].get("torch_threads") or 0)
        print(f"## {path} (default threads: {default}, {report['machine'].get('cpu')})\n")
        suites: dict[str, list[dict]] = {}
        for r in report["rows"]:
            suites.setdefault(r["suite"], []).append(r)
        for suite, rows in suites.items():
            print(f"### {suite}\n\n{table(rows, default)}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
