"""The MMEB harness: embed each dataset's queries and candidates, score, write results.

Protocol (as in MMEB): each query has a candidate list whose first entry is correct; texts are
embedded as given (they carry MMEB's instruction), with ``instruction=None`` and normalised
vectors, so scores are cosine similarities. Every distinct item (same text, same image path)
is embedded once per dataset. Each dataset's result is written atomically to
``OUT/datasets/<name>.json`` as soon as it is done, so a killed run resumes where it stopped.
"""

from __future__ import annotations

import datetime as _dt
import importlib.metadata
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np

from ..errors import InputError
from .data import Example, Item, MediaRoots, find_dataset_files, load_examples, to_input
from .datasets import DatasetSpec, resolve_datasets
from .metrics import TIE_RULE, metric_value, ranked_relevance, top_tie
from .report import DatasetResult, MMEBReport, build_report, write_atomic

logger = logging.getLogger(__name__)

DATA_INFO_FILE = ".mmembed-data.json"
"""Written into the data folder by ``download_mmeb``: the hub repository and resolved revision."""


class EmbedderLike(Protocol):
    """What the harness needs from an embedder (see docs/CONTRACT.md)."""

    name: str
    dim: int

    def encode(
        self,
        items: list[Any],
        instruction: str | None = None,
        batch_size: int = 32,
        normalize: bool = True,
        convert_to: str = "numpy",
        show_progress_bar: bool | None = None,
        on_error: str = "raise",
    ) -> Any:
        """Embed items; one row per item, in order."""
        ...


@dataclass(frozen=True)
class MMEBOptions:
    """How to run the evaluation (everything but the model, data and output folder)."""

    image_dir: Path | str | None = None  # image root; default DATA_DIR/images
    video_dir: Path | str | None = None  # video/frame root; default DATA_DIR/videos
    batch_size: int = 32  # passed to Embedder.encode
    chunk_size: int = 512  # items handed to one encode call (bounds memory, paces logging)
    num_frames: int = 8  # frames sampled per video
    max_queries: int | None = None  # keep the first N queries per dataset (quick runs)
    on_error: Literal["raise", "skip"] = "raise"  # "skip": unreadable items rank last, counted
    data_revision: str | None = None  # recorded in the report; default read from DATA_DIR
    overwrite: bool = False  # recompute datasets that already have a result file


def evaluate_mmeb(
    model: EmbedderLike | str,
    data_dir: Path | str,
    datasets: Sequence[str] | None = None,
    out_dir: Path | str | None = None,
    options: MMEBOptions | None = None,
) -> MMEBReport:
    """Evaluate a model on the MMEB datasets present in ``data_dir``.

    Args:
        model: an embedder, or a name for ``mmembed.load``.
        data_dir: folder in the MMEB-eval layout (see ``mmembed.eval.data``).
        datasets: dataset or benchmark names ("mmeb", "mmeb-v2-video", "mmeb-v2-visdoc",
            "all"); None means the 36 MMEB datasets.
        out_dir: where per-dataset results and ``report.json``/``report.md`` go; results
            already there for the same model, data revision and query limit are reused.
            None keeps everything in memory.
        options: run settings.

    Returns:
        The report; datasets without data are listed in ``report.missing``.

    Raises:
        ValueError: ``out_dir`` holds results of another model, data revision or query limit
            (pass ``overwrite=True`` or use another folder).
        InputError: an item cannot be embedded and ``on_error`` is "raise".
    """
    options = options or MMEBOptions()
    embedder = _load_model(model) if isinstance(model, str) else model
    data_root = Path(data_dir)
    roots = MediaRoots(
        Path(options.image_dir) if options.image_dir else data_root / "images",
        Path(options.video_dir) if options.video_dir else data_root / "videos",
        options.num_frames,
    )
    context = {
        "model": str(embedder.name),
        "mmembed_version": mmembed_version(),
        "data_revision": options.data_revision or read_data_revision(data_root),
    }
    out = Path(out_dir) if out_dir is not None else None
    results: dict[str, DatasetResult] = {}
    missing: list[str] = []

    def report() -> MMEBReport:
        return build_report(results, missing, data_dir=str(data_root), tie_rule=TIE_RULE, **context)

    for spec in resolve_datasets(list(datasets) if datasets else None):
        saved = _load_saved(out, spec.name, context, options) if out is not None else None
        if saved is not None:
            logger.info("%s: already done (%s), skipping", spec.name, _result_path(out, spec.name))
            results[spec.name] = saved
            continue
        files = find_dataset_files(data_root, spec.name)
        if not files:
            logger.info("%s: no data in %s, skipping", spec.name, data_root)
            missing.append(spec.name)
            continue
        examples = load_examples(files, options.max_queries)
        result = evaluate_dataset(embedder, spec, examples, roots, options, context)
        results[spec.name] = result
        logger.info("%s: %s = %.4f", spec.name, result.metric, result.score)
        if out is not None:
            write_atomic(_result_path(out, spec.name), json.dumps(result.to_dict(), indent=2))
            report().write(out)
    final = report()
    if missing:
        logger.warning(
            "no data in %s for %d datasets: %s", data_root, len(missing), ", ".join(missing)
        )
    if out is not None:
        final.write(out)
    for message in final.warnings:
        logger.warning(message)
    return final


def evaluate_dataset(
    embedder: EmbedderLike,
    spec: DatasetSpec,
    examples: list[Example],
    roots: MediaRoots,
    options: MMEBOptions,
    context: dict[str, str],
) -> DatasetResult:
    """Embed and score one dataset.

    Args:
        embedder: the model.
        spec: the registry entry (metrics, meta-task, split).
        examples: the dataset's rows.
        roots: where media paths resolve.
        options: run settings.
        context: ``model``, ``mmembed_version`` and ``data_revision`` for the record.
    """
    start = time.perf_counter()
    queries = list(dict.fromkeys(example.query for example in examples))
    candidates = list(dict.fromkeys(c for example in examples for c in example.candidates))
    items = list(dict.fromkeys(queries + candidates))
    vectors, failed = embed_items(embedder, items, roots, options, label=spec.name)
    row_of = {item: row for row, item in enumerate(items)}
    totals = dict.fromkeys(spec.metrics, 0.0)
    tied = 0
    chance = 0.0
    for example in examples:
        scores = score_candidates(
            vectors, row_of[example.query], [row_of[c] for c in example.candidates]
        )
        ranked = ranked_relevance(scores, example.relevance)
        for name in spec.metrics:
            totals[name] += metric_value(name, ranked)
        tied += top_tie(scores, example.relevance)
        chance += sum(g > 0 for g in example.relevance) / len(example.relevance)
    count = max(len(examples), 1)
    metrics = {name: total / count for name, total in totals.items()}
    sizes = [len(example.candidates) for example in examples] or [0]
    return DatasetResult(
        name=spec.name,
        benchmark=spec.benchmark.value,
        meta_task=spec.meta_task.value,
        split=spec.split.value if spec.split else None,
        score=metrics[spec.metric],
        metric=spec.metric,
        metrics=metrics,
        num_queries=len(examples),
        num_candidates=sum(len(example.candidates) for example in examples),
        unique_candidates=len(candidates),
        unique_queries=len(queries),
        candidates_per_query_min=min(sizes),
        candidates_per_query_max=max(sizes),
        chance=chance / count,
        tied_queries=int(tied),
        failed_items=failed,
        max_queries=options.max_queries,
        wall_time_s=round(time.perf_counter() - start, 3),
        finished_at=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        **context,
    )


def score_candidates(vectors: np.ndarray, query: int, candidates: list[int]) -> np.ndarray:
    """Dot products of one query row with its candidate rows, in float64.

    Each distinct row is scored once and the score copied to its repeats, and each product is
    a row-wise sum, so equal vectors give bit-identical scores (ties are exact, not noise).
    """
    rows, inverse = np.unique(np.asarray(candidates), return_inverse=True)
    query_vector = vectors[query].astype(np.float64)
    scores = (vectors[rows].astype(np.float64) * query_vector).sum(axis=1)
    return scores[inverse]


def embed_items(
    embedder: EmbedderLike,
    items: list[Item],
    roots: MediaRoots,
    options: MMEBOptions,
    label: str = "",
) -> tuple[np.ndarray, int]:
    """Embed items in chunks; rows of items that failed (``on_error="skip"``) are NaN.

    Returns:
        ``(len(items), dim)`` float32 array, and the number of failed items.
    """
    vectors: np.ndarray | None = None
    failed = 0
    for start in range(0, len(items), options.chunk_size):
        chunk = items[start : start + options.chunk_size]
        inputs, positions = [], []
        for offset, item in enumerate(chunk):
            try:
                inputs.append(to_input(item, roots))
                positions.append(start + offset)
            except InputError as error:
                if options.on_error == "raise":
                    raise InputError(f"{label}: {_describe(item)}: {error.reason}") from error
                failed += 1
        block = _encode(embedder, inputs, chunk, positions, start, options, label)
        if vectors is None:
            vectors = np.full((len(items), block.shape[1]), np.nan, dtype=np.float32)
        vectors[positions] = block
        failed += int(np.isnan(block).any(axis=1).sum())
        logger.info("%s: embedded %d/%d items", label, start + len(chunk), len(items))
    if vectors is None:
        vectors = np.full((len(items), int(embedder.dim)), np.nan, dtype=np.float32)
    return vectors, failed


def _encode(
    embedder: EmbedderLike,
    inputs: list[Any],
    chunk: list[Item],
    positions: list[int],
    start: int,
    options: MMEBOptions,
    label: str,
) -> np.ndarray:
    if not inputs:
        return np.empty((0, int(embedder.dim)), dtype=np.float32)
    try:
        block = embedder.encode(
            inputs,
            instruction=None,
            batch_size=options.batch_size,
            normalize=True,
            convert_to="numpy",
            show_progress_bar=False,
            on_error=options.on_error,
        )
    except InputError as error:
        item = chunk[positions[error.index] - start] if error.index is not None else None
        where = _describe(item) if item is not None else "an item"
        raise InputError(f"{label}: {where}: {error.reason}") from error
    return np.asarray(block, dtype=np.float32).reshape(len(inputs), -1)


def _describe(item: Item) -> str:
    parts = [f"text {item.text[:60]!r}"] if item.text else []
    parts += [f"image {item.image!r}"] if item.image else []
    parts += [f"video {item.video!r}"] if item.video else []
    return ", ".join(parts) or "empty item"


def _result_path(out: Path, name: str) -> Path:
    return out / "datasets" / f"{name}.json"


def _load_saved(
    out: Path, name: str, context: dict[str, str], options: MMEBOptions
) -> DatasetResult | None:
    path = _result_path(out, name)
    if options.overwrite or not path.is_file():
        return None
    result = DatasetResult.from_dict(json.loads(path.read_text(encoding="utf-8")))
    expected = {**context, "max_queries": options.max_queries}
    expected.pop("mmembed_version")
    found = {key: getattr(result, key) for key in expected}
    if found != expected:
        raise ValueError(
            f"{path} holds a result for {found}, not {expected}; use another output folder "
            "or overwrite=True (--overwrite)"
        )
    return result


def mmembed_version() -> str:
    """The installed mmembed version, or "unknown" when running from a source tree."""
    try:
        return importlib.metadata.version("mmembed")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def read_data_revision(data_dir: Path) -> str:
    """The revision recorded by ``download_mmeb`` in ``data_dir``, or "unknown"."""
    path = data_dir / DATA_INFO_FILE
    if not path.is_file():
        return "unknown"
    info = json.loads(path.read_text(encoding="utf-8"))
    return str(info.get("revision") or "unknown")


def _load_model(name: str) -> EmbedderLike:
    from ..models.registry import load

    return load(name)
