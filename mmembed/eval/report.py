"""MMEB results: one record per dataset, the summary table, and the JSON/Markdown files.

Scores are stored as fractions in [0, 1] with the metric name next to them; the Markdown
table shows them ×100 with one decimal, as the MMEB papers do.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..hub.atomic import write_atomic as _write_file_atomic
from .datasets import DATASETS, Benchmark, DatasetSpec, MetaTask, Split, list_datasets

SANITY_Z = 2.0
"""A run whose pooled hit@1 is less than this many standard deviations above the chance level
(random guessing) gets a warning: the usual sign of a wrongly loaded checkpoint."""

_TITLES = {
    Benchmark.MMEB.value: "MMEB",
    Benchmark.MMEB_V2_VIDEO.value: "MMEB-V2 video",
    Benchmark.MMEB_V2_VISDOC.value: "MMEB-V2 visual documents",
    Benchmark.MMEB_V2_VISDOC_ENGLISH.value: "MMEB-V2's English-only ViDoRe-V2 sets (not in its "
    "leaderboard)",
}

MMEB_V2 = "mmeb-v2"
"""Summary key of MMEB-V2's overall table: its image part is MMEB's 36 datasets."""

_V2_PARTS = {
    "Image": Benchmark.MMEB.value,
    "Video": Benchmark.MMEB_V2_VIDEO.value,
    "VisDoc": Benchmark.MMEB_V2_VISDOC.value,
}


@dataclass
class DatasetResult:
    """The result of one dataset, written to ``OUT/datasets/<name>.json``."""

    name: str  # dataset name, e.g. "ImageNet-1K"
    benchmark: str  # Benchmark value
    meta_task: str  # MetaTask value
    split: str | None  # "IND", "OOD" or None
    score: float  # headline score, a fraction in [0, 1]
    metric: str  # the headline metric's name, e.g. "hit@1"
    metrics: dict[str, float]  # every computed metric, by name
    num_queries: int  # queries evaluated
    num_candidates: int  # candidate slots over all queries (the total)
    unique_candidates: int  # distinct candidates, each embedded once
    unique_queries: int  # distinct queries, each embedded once
    candidates_per_query_min: int  # fewest candidates of a query
    candidates_per_query_max: int  # most candidates of a query
    chance: float  # the headline metric's mean value under a random ranking
    tied_queries: int  # queries whose headline value the tie rule decides
    failed_items: int  # items that could not be embedded (scored as lowest)
    model: str  # embedder name
    mmembed_version: str  # version of mmembed that produced the result
    data_revision: str  # dataset revision (hub commit) or "unknown"
    max_queries: int | None  # query limit of a partial run; None for the full data
    wall_time_s: float  # seconds spent on this dataset
    finished_at: str  # UTC time, ISO 8601
    tie_rule: str = (
        "pessimistic"  # "official" or "pessimistic" (results before the rule was recorded)
    )
    duplicated_positives: int = 0  # queries whose positive also stands among the negatives
    skipped_rows: int = 0  # malformed rows left out (--skip-bad-items); scored as misses
    failed_rows: int = 0  # rows with an item that could not be embedded (ranked last)
    placeholders: str = "removed"  # how item texts were read: "in_place", "removed" or "split"
    text_dropped: int = 0  # video items whose text the model could not read with the video
    ranking: str = "per row"  # "per row" (own candidates) or "corpus" (V2's eval_type global)
    chance_by_metric: dict[str, float] = field(default_factory=dict)  # random-ranking value
    tied_by_metric: dict[str, int] = field(default_factory=dict)  # queries ties decide
    tie_bounds: dict[str, list[float]] = field(default_factory=dict)  # [pessimistic, optimistic]
    precision: str = "fp32"  # the model's weights: fp32, bf16 or fp16
    video_files: int = 0  # V2 videos read from files (mmembed's frame sampling, not V2's)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DatasetResult:
        """Read back what ``to_dict`` wrote (unknown keys are ignored)."""
        names = cls.__dataclass_fields__
        return cls(**{key: value for key, value in data.items() if key in names})


@dataclass
class MMEBReport:
    """A whole run: per-dataset results, the summary, and checks on them."""

    model: str  # embedder name
    mmembed_version: str  # version of mmembed
    data_revision: str  # dataset revision (hub commit) or "unknown"
    data_dir: str  # where the data was read
    tie_rule: str  # how equal scores are ranked
    datasets: dict[str, DatasetResult]  # results by dataset name, in registry order
    missing: list[str]  # selected datasets with no data in data_dir
    empty: list[str] = field(
        default_factory=list
    )  # datasets whose files hold no rows (not averaged)
    summary: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)  # see summarize
    warnings: list[str] = field(default_factory=list)  # problems a user must look at
    notes: list[str] = field(default_factory=list)  # differences from the release worth knowing

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict; ``datasets`` is keyed by dataset name."""
        data = asdict(self)
        data["datasets"] = {name: result.to_dict() for name, result in self.datasets.items()}
        data["unique_candidates"] = sum(r.unique_candidates for r in self.datasets.values())
        data["total_candidates"] = sum(r.num_candidates for r in self.datasets.values())
        data["wall_time_s"] = round(sum(r.wall_time_s for r in self.datasets.values()), 3)
        return data

    def to_markdown(self) -> str:
        """The report as Markdown tables laid out like the MMEB papers'."""
        return render_markdown(self)

    def write(self, out_dir: Path | str) -> None:
        """Write ``report.json`` and ``report.md`` into ``out_dir``, each atomically."""
        out = Path(out_dir)
        write_atomic(out / "report.json", json.dumps(self.to_dict(), indent=2) + "\n")
        write_atomic(out / "report.md", self.to_markdown())


def build_report(
    results: dict[str, DatasetResult],
    missing: list[str],
    *,
    model: str,
    mmembed_version: str,
    data_revision: str,
    data_dir: str,
    tie_rule: str,
    empty: list[str] | None = None,
) -> MMEBReport:
    """Assemble the report: order results by registry, summarise, and run the sanity checks."""
    ordered = {name: results[name] for name in DATASETS if name in results}
    ordered.update({name: result for name, result in results.items() if name not in ordered})
    report = MMEBReport(
        model, mmembed_version, data_revision, data_dir, tie_rule, ordered, missing, empty or []
    )
    report.summary = summarize(ordered.values())
    report.warnings = sanity_warnings(ordered.values()) + [
        f"{name}: the data holds no rows; it is reported empty and left out of the averages."
        for name in report.empty
    ]
    report.notes = release_notes(ordered.values())
    return report


def summarize(results: Any) -> dict[str, dict[str, dict[str, Any]]]:
    """Mean headline scores per meta-task, IND, OOD and overall, for each benchmark evaluated.

    Returns:
        benchmark -> column -> {"score", "metric", "datasets" (evaluated), "of" (registered)};
        a column with no evaluated dataset has score None.
    """
    by_benchmark: dict[str, list[DatasetResult]] = {}
    for result in results:
        by_benchmark.setdefault(result.benchmark, []).append(result)
    summary: dict[str, dict[str, dict[str, Any]]] = {}
    for benchmark_name, members in by_benchmark.items():
        specs = _registered(benchmark_name)
        columns: dict[str, dict[str, Any]] = {}
        for column, predicate in _columns(specs):
            chosen = [r for r in members if predicate(r)]
            registered = sum(1 for spec in specs if predicate(spec))
            columns[column] = _mean_cell(chosen, registered)
        summary[benchmark_name] = columns
    if by_benchmark.keys() & {Benchmark.MMEB_V2_VIDEO.value, Benchmark.MMEB_V2_VISDOC.value}:
        summary[MMEB_V2] = v2_summary(by_benchmark)
    return summary


def v2_summary(by_benchmark: dict[str, list[DatasetResult]]) -> dict[str, dict[str, Any]]:
    """MMEB-V2's aggregation, by its own definition: per modality, the mean of the datasets'
    headline scores (hit@1 for image and video, nDCG@5 for visual documents), as VLM2Vec's
    ``experiments/report_score_v2.py`` lines 88-92 and 180-205 print it. That script prints no
    overall score, so neither does this table."""
    columns: dict[str, dict[str, Any]] = {}
    for column, benchmark_name in _V2_PARTS.items():
        members = by_benchmark.get(benchmark_name, [])
        columns[column] = _mean_cell(members, len(_registered(benchmark_name)))
    return columns


def sanity_warnings(results: Any) -> list[str]:
    """Warnings on the whole run: chance-level scores, failed items."""
    results = list(results)
    warnings = []
    graded = [r for r in results if "hit@1" in r.metrics and r.num_queries]
    chance = {r.name: r.chance_by_metric.get("hit@1", r.chance) for r in graded}
    hits = sum(r.metrics["hit@1"] * r.num_queries for r in graded)
    expected = sum(chance[r.name] * r.num_queries for r in graded)
    variance = sum(r.num_queries * chance[r.name] * (1.0 - chance[r.name]) for r in graded)
    if graded and hits <= expected + SANITY_Z * math.sqrt(variance):
        queries = sum(r.num_queries for r in graded)
        warnings.append(
            f"hit@1 is at chance level: {hits:.0f} of {queries} queries correct where random "
            f"ranking expects {expected:.1f}. This is the usual sign of a wrongly loaded "
            "checkpoint (random or missing weights, wrong preprocessing); check the model "
            "before trusting these numbers."
        )
    for result in results:
        warnings += tie_warnings(result)
        if result.failed_items:
            warnings.append(
                f"{result.name}: {result.failed_items} items could not be embedded and were "
                f"ranked last ({result.failed_rows} rows affected); the score is a lower bound."
            )
        if result.skipped_rows:
            warnings.append(
                f"{result.name}: {result.skipped_rows} malformed rows were skipped and scored "
                "as misses; the score is a lower bound."
            )
        if result.video_files:
            warnings.append(
                f"{result.name}: {result.video_files} videos are files, sampled by mmembed's "
                "rule; VLM2Vec-V2 samples frame folders (extract the frames to compare)."
            )
        if result.text_dropped:
            warnings.append(
                f"{result.name}: {result.text_dropped} video items were embedded without their "
                "text: this model cannot read text together with a video."
            )
    return warnings


def tie_warnings(result: DatasetResult) -> list[str]:
    """One warning per reported metric whose value the tie rule changes, with the range."""
    warnings = []
    for name, (worst, best) in result.tie_bounds.items():
        if worst != best:
            tied = result.tied_by_metric.get(name, 0)
            value = result.metrics[name]
            warnings.append(
                f"{result.name}: ties decide {name} for {tied} of {result.num_queries} queries: "
                f"{100 * value:.1f} under the {result.tie_rule} rule, {100 * worst:.1f} if ties "
                f"are misses, {100 * best:.1f} if they are hits."
            )
    return warnings


def release_notes(results: Any) -> list[str]:
    """Notes where the evaluated data differs from the release (partial runs, candidate counts)."""
    notes = []
    for result in results:
        spec = DATASETS.get(result.name)
        expected = spec.num_candidates if spec is not None else None
        counts = (result.candidates_per_query_min, result.candidates_per_query_max)
        if expected is not None and counts != (expected, expected):
            shown = counts[0] if counts[0] == counts[1] else f"{counts[0]}-{counts[1]}"
            notes.append(
                f"{result.name}: {shown} candidates per query; the release has {expected}."
            )
        if result.max_queries is not None:
            notes.append(f"{result.name}: limited to the first {result.max_queries} queries.")
    return notes


def render_markdown(report: MMEBReport) -> str:
    """Summary table per benchmark (one row: the model), then a per-dataset table."""
    lines = [f"# {report.model} on MMEB", ""]
    for message in report.warnings:
        lines += [f"> **Warning:** {message}", ""]
    for benchmark_name, columns in report.summary.items():
        metric = _benchmark_metric(report, benchmark_name)
        if benchmark_name == MMEB_V2:
            metric = "image and video hit@1, visual documents ndcg@5"
        title = _TITLES.get(benchmark_name, "MMEB-V2 by modality")
        lines += [f"## {title} ({metric}, %; each column the mean of its datasets)", ""]
        header = [""] + [_column_title(name, cell) for name, cell in columns.items()]
        row = [report.model] + [_percent(cell["score"]) for cell in columns.values()]
        chance = ["chance"] + [_percent(cell["chance"]) for cell in columns.values()]
        lines += _table(header, [row, chance], numeric_from=1)
        lines.append("")
    lines += _dataset_table(report)
    lines += _footer(report)
    return "\n".join(lines) + "\n"


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` with ``hub.atomic.write_atomic`` (a kill never leaves a
    half-written file), readable by all (0644) whatever the umask."""
    path.parent.mkdir(parents=True, exist_ok=True)

    def write(temporary: Path) -> None:
        temporary.write_text(text, encoding="utf-8")
        os.chmod(temporary, 0o644)

    _write_file_atomic(path, write)


def _registered(benchmark_name: str) -> list[DatasetSpec]:
    try:
        return list_datasets(Benchmark(benchmark_name))
    except ValueError:
        return []


def _columns(specs: list[DatasetSpec]) -> list[tuple[str, Any]]:
    """(column name, predicate on a spec or result) in table order."""
    tasks = [task for task in MetaTask if any(spec.meta_task is task for spec in specs)]
    columns: list[tuple[str, Any]] = [
        (task.value, lambda item, t=task.value: _value(item.meta_task) == t) for task in tasks
    ]
    if any(spec.split is not None for spec in specs):
        for split in Split:
            columns.append((split.value, lambda item, s=split.value: _value(item.split) == s))
    columns.append(("Overall", lambda item: True))
    return columns


def _value(value: Any) -> Any:
    return value.value if hasattr(value, "value") else value


def _mean_cell(chosen: list[DatasetResult], registered: int) -> dict[str, Any]:
    metrics = sorted({r.metric for r in chosen})
    score = sum(r.score for r in chosen) / len(chosen) if chosen else None
    chance = sum(r.chance for r in chosen) / len(chosen) if chosen else None
    metric = metrics[0] if len(metrics) == 1 else ("mixed" if metrics else None)
    return {
        "score": score,
        "chance": chance,
        "metric": metric,
        "aggregate": "mean of datasets",
        "datasets": len(chosen),
        "of": registered,
    }


def _benchmark_metric(report: MMEBReport, benchmark_name: str) -> str:
    metrics = sorted({r.metric for r in report.datasets.values() if r.benchmark == benchmark_name})
    return ", ".join(metrics)


def _column_title(name: str, cell: dict[str, Any]) -> str:
    if cell["of"] and cell["datasets"] != cell["of"]:
        return f"{name} ({cell['datasets']}/{cell['of']})"
    return f"{name} ({cell['datasets']})"


def _percent(score: float | None) -> str:
    return "–" if score is None else f"{100.0 * score:.1f}"


def _table(header: list[str], rows: list[list[str]], numeric_from: int) -> list[str]:
    rule = ["---" if i < numeric_from else "---:" for i in range(len(header))]
    return ["| " + " | ".join(cells) + " |" for cells in [header, rule, *rows]]


def _dataset_table(report: MMEBReport) -> list[str]:
    header = [
        "Meta-task",
        "Dataset",
        "Split",
        "Metric",
        "Score",
        "Chance",
        "Queries",
        "Ranked against",
        "Candidates (unique / total)",
        "Tie-decided",
    ]
    rows = []
    for result in report.datasets.values():
        rows.append(
            [
                result.meta_task,
                result.name,
                result.split or "–",
                result.metric,
                _percent(result.score),
                _percent(result.chance),
                str(result.num_queries),
                "corpus" if result.ranking == "corpus" else "own candidates",
                f"{result.unique_candidates} / {result.num_candidates}",
                str(result.tied_queries),
            ]
        )
    return ["## Per dataset", "", *_table(header, rows, numeric_from=4), ""]


def _footer(report: MMEBReport) -> list[str]:
    unique = sum(r.unique_candidates for r in report.datasets.values())
    total = sum(r.num_candidates for r in report.datasets.values())
    evaluated = len(report.datasets)
    versions = sorted({r.mmembed_version for r in report.datasets.values()}) or [
        report.mmembed_version
    ]
    lines = [
        f"Datasets evaluated: {evaluated} of {evaluated + len(report.missing)} selected.",
        f"Candidates embedded: {unique} unique of {total} candidate slots "
        "(each distinct candidate is embedded once).",
        f"Model `{report.model}`, mmembed {', '.join(versions)}, data revision "
        f"`{report.data_revision}`.",
        f"Ties: {report.tie_rule}.",
        f"Precision: {', '.join(sorted({r.precision for r in report.datasets.values()})) or '–'}.",
    ]
    if report.missing:
        lines.append(f"Missing (no data found): {', '.join(report.missing)}.")
    if report.empty:
        lines.append(f"Empty (no rows, not averaged): {', '.join(report.empty)}.")
    lines += [f"Note: {note}" for note in report.notes]
    return ["", *[f"{line}  " for line in lines]]
