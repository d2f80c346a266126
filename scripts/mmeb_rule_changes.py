"""Scores of the MMEB task-family fixture (``tests/mmeb_official.py``) under whichever mmembed is
on the path, to show what each rule of the harness changes.

    PYTHONPATH=.:tests python scripts/mmeb_rule_changes.py            # this tree
    PYTHONPATH=/path/to/older/tree:tests python scripts/mmeb_rule_changes.py

Prints one JSON object: per embedder ("ties": three distinct vectors, "continuous") and dataset,
the headline metric's value (percent); then the audit's malformed inputs, each with the score it
gets or the error it raises.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from mmeb_official import FAMILIES, HashEmbedder, write_family_fixture  # noqa: E402

from mmembed.eval import evaluate_mmeb  # noqa: E402

GOOD = {"qry_text": "q", "qry_img_path": "", "tgt_text": ["a", "b", "c"], "tgt_img_path": [""] * 3}
MALFORMED = {
    "tgt_text is one string": {"tgt_text": "a"},
    "qry_img_path is null": {"qry_img_path": None},
    "one candidate": {"tgt_text": ["a"], "tgt_img_path": [""]},
}


def family_scores(root: Path) -> dict[str, dict[str, float]]:
    write_family_fixture(root)
    scores: dict[str, dict[str, float]] = {}
    for label, levels in (("ties", 3), ("continuous", None)):
        report = evaluate_mmeb(HashEmbedder(levels), root, list(FAMILIES))
        scores[label] = {n: round(100 * r.score, 1) for n, r in report.datasets.items()}
        bounds = {  # (ties as misses, ties as hits), where this tree reports them
            n: [round(100 * v, 1) for v in r.tie_bounds[r.metric]]
            for n, r in report.datasets.items()
            if getattr(r, "tie_bounds", None)
        }
        if bounds:
            scores[f"{label} bounds"] = bounds
    return scores


def malformed(root: Path) -> dict[str, str]:
    outcome = {}
    for case, change in MALFORMED.items():
        folder = root / case.replace(" ", "_")
        folder.mkdir()
        rows = [GOOD, {**GOOD, **change}]
        (folder / "OK-VQA.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        try:
            report = evaluate_mmeb(HashEmbedder(None), folder, ["OK-VQA"])
            outcome[case] = f"score {100 * report.datasets['OK-VQA'].score:.1f}, no error"
        except ValueError as error:
            outcome[case] = f"error: {str(error).split(': ', 2)[-1]}"
    return outcome


def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        result = {"families": family_scores(root / "families"), "malformed": malformed(root)}
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
