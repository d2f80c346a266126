"""The MMEB harness: embed each dataset's queries and candidates, score, write results.

Protocol (as in MMEB): each query has a candidate list whose first entry is correct; texts are
embedded as given (they carry MMEB's instruction), with ``instruction=None`` and normalised
vectors, so scores are cosine similarities. Ranking follows each version's own code by default
(``scoring``: V1's argmax, V2's stable argsort, per row or against the corpus). Every distinct
item (same text, same image path) is embedded once per dataset. Each dataset's result is
written atomically to ``OUT/datasets/<name>.json`` as soon as it is done, so a killed run
resumes where it stopped, and its predictions beside ``report.json`` in the official format
(``predictions``).
"""

from __future__ import annotations

import dataclasses
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
from .data import (
    MMEB_COLUMNS,
    V2_COLUMNS,
    V2_RESOLUTIONS,
    DataError,
    Example,
    LoadedRows,
    MediaRoots,
    Placeholders,
    RowItem,
    default_image_dir,
    find_dataset_files,
    load_corpus,
    load_examples,
    text_dropped,
    to_input,
)
from .datasets import Benchmark, DatasetSpec, resolve_datasets
from .metrics import TIE_RULES, TieRule
from .predictions import write_predictions
from .report import DatasetResult, MMEBReport, build_report, write_atomic
from .scoring import global_corpus, score_rows
from .v2_data import EVERY_FRAME, read_v2
from .v2_rows import has_mmeb_columns

MMEBTies = Literal["official", "pessimistic"]
"""``official``: each version's own ranking (V1's argmax, V2's stable argsort; ``scoring``);
``pessimistic``: a tie with a wrong candidate is a miss (a lower bound)."""

Precision = Literal["fp32", "bf16", "fp16"]

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

    image_dir: Path | str | None = (
        None  # image root; default DATA_DIR/eval_images, else DATA_DIR/images
    )
    video_dir: Path | str | None = None  # video/frame root; default DATA_DIR/videos
    device: str | None = None  # model device for a model name; None: "cuda" if present, else cpu
    precision: Precision | None = None  # for a model name; None: bf16 on a GPU, fp32 on a CPU
    batch_size: int = 32  # passed to Embedder.encode
    chunk_size: int = 512  # items handed to one encode call (bounds memory, paces logging)
    num_frames: int = 8  # frames sampled per video
    frame_resolution: str | None = None  # V2's --image_resolution for frames: low/mid/high
    max_queries: int | None = None  # keep the first N queries per dataset (quick runs)
    on_error: Literal["raise", "skip"] = "raise"  # "skip": unreadable items rank last, counted
    data_revision: str | None = None  # recorded in the report; default read from DATA_DIR
    overwrite: bool = False  # recompute datasets that already have a result file
    ties: MMEBTies = "official"  # "official": each version's rule; "pessimistic": ties are misses
    allow_trivial: bool = False  # accept rows ranked per row with fewer than 2 candidates
    placeholders: Placeholders | None = None  # None: placeholder_style(model)


def evaluate_mmeb(
    model: EmbedderLike | str,
    data_dir: Path | str,
    datasets: Sequence[str] | None = None,
    out_dir: Path | str | None = None,
    options: MMEBOptions | None = None,
) -> MMEBReport:
    """Evaluate a model on the MMEB datasets present in ``data_dir``.

    Args:
        model: an embedder, or a name for ``mmembed.load`` (loaded on ``options.device`` in
            ``options.precision``).
        data_dir: folder in the MMEB-eval layout (see ``mmembed.eval.data``).
        datasets: dataset or benchmark names ("mmeb", "mmeb-v2-video", "mmeb-v2-visdoc",
            "mmeb-v2-visdoc-english", "all"); None means the 36 MMEB datasets.
        out_dir: where per-dataset results, ``report.json``/``report.md`` and the prediction
            files go; results already there for the same model, data revision and query limit
            are reused. None keeps everything in memory.
        options: run settings.

    Returns:
        The report; datasets without data are listed in ``report.missing``.

    Raises:
        KeyError: an unknown dataset name (checked before the model loads).
        DataError: ``data_dir`` is not a folder (nothing is written), a file lacks a required
            column, or a row is malformed and ``on_error`` is "raise"; the message names the
            dataset, the file, the row and the field.
        ValueError: ``out_dir`` holds results of another model, data revision or query limit
            (pass ``overwrite=True`` or use another folder).
        InputError: an item cannot be embedded and ``on_error`` is "raise".
    """
    options = options or MMEBOptions()
    specs = resolve_datasets(list(datasets) if datasets else None)
    data_root = Path(data_dir)
    if not data_root.is_dir():
        raise DataError(f"{data_root}: no such data folder (see --download)")
    if options.frame_resolution is not None and options.frame_resolution not in V2_RESOLUTIONS:
        raise ValueError(
            f"frame resolution {options.frame_resolution!r}: use one of {list(V2_RESOLUTIONS)}"
        )
    embedder = _load_model(model, options) if isinstance(model, str) else model
    roots = MediaRoots(
        Path(options.image_dir) if options.image_dir else default_image_dir(data_root),
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
    empty: list[str] = []
    placeholders = options.placeholders or placeholder_style(embedder)
    options = dataclasses.replace(options, placeholders=placeholders)

    def report() -> MMEBReport:
        built = build_report(
            results,
            missing,
            data_dir=str(data_root),
            tie_rule=_tie_description(options.ties),
            empty=empty,
            **context,
        )
        built.warnings += prompt_warnings(embedder, results)
        return built

    for spec in specs:
        saved = _load_saved(out, spec.name, context, options) if out is not None else None
        if saved is not None:
            logger.info("%s: already done (%s), skipping", spec.name, _result_path(out, spec.name))
            results[spec.name] = saved
            continue
        files = find_dataset_files(data_root, spec.name)
        if files and spec.benchmark is not Benchmark.MMEB and not has_mmeb_columns(files[0]):
            files = []  # V2's own columns (its hub files are named test-*.parquet too)
        dataset_roots = _roots_for(spec, roots, options)
        loaded = _load_rows(spec, files, options) if files else None
        if loaded is None:
            loaded = _load_v2(spec, data_root, roots.videos / spec.name, options)
            if loaded is not None:  # V2's layout: media in per-dataset folders
                loaded.examples = loaded.examples[: options.max_queries]
                dataset_roots = dataclasses.replace(
                    dataset_roots,
                    images=roots.images / spec.name,
                    videos=roots.videos / spec.name,
                    every_frame=spec.name in EVERY_FRAME,
                )
        if loaded is None:
            logger.info("%s: no data in %s, skipping", spec.name, data_root)
            missing.append(spec.name)
            continue
        if not loaded.examples and not loaded.skipped:
            logger.warning("%s: no rows; left out of the averages", spec.name)
            empty.append(spec.name)
            continue
        result, predictions = evaluate_dataset(
            embedder,
            spec,
            loaded.examples,
            dataset_roots,
            options,
            context,
            len(loaded.skipped),
            loaded.corpus,
        )
        results[spec.name] = result
        logger.info("%s: %s = %.4f", spec.name, result.metric, result.score)
        if out is not None:
            write_predictions(out, spec, predictions)
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


def _load_rows(spec: DatasetSpec, files: list[Path], options: MMEBOptions) -> LoadedRows:
    columns = MMEB_COLUMNS if spec.benchmark is Benchmark.MMEB else V2_COLUMNS
    fewest = 1 if options.allow_trivial or spec.corpus_ranked else 2
    loaded = load_examples(
        files, options.max_queries, spec.name, options.on_error == "skip", columns, fewest
    )
    corpus_file = files[0].parent / "corpus.jsonl"
    if spec.corpus_ranked and files[0].parent.name == spec.name and corpus_file.is_file():
        loaded.corpus = load_corpus(corpus_file, spec.name)
    return loaded


def _load_v2(
    spec: DatasetSpec, data_root: Path, video_root: Path, options: MMEBOptions
) -> LoadedRows | None:
    fewest = 1 if options.allow_trivial else None  # None: the reader's rule for the ranking
    skip = options.on_error == "skip"
    return read_v2(data_root / spec.name, spec.name, video_root, skip, fewest)


def _roots_for(spec: DatasetSpec, roots: MediaRoots, options: MMEBOptions) -> MediaRoots:
    """V2 datasets read frame folders as VLM2Vec-V2 does; MMEB (V1) has no video."""
    if spec.benchmark is Benchmark.MMEB:
        return roots
    size = V2_RESOLUTIONS[options.frame_resolution] if options.frame_resolution else None
    return dataclasses.replace(roots, frame_rule="v2", frame_size=size)


def _rank_rule(ties: MMEBTies) -> TieRule:
    return "stable" if ties == "official" else "pessimistic"


def _tie_description(ties: MMEBTies) -> str:
    if ties == "pessimistic":
        return TIE_RULES["pessimistic"]
    return (
        "official: each version's own ranking, "
        + TIE_RULES["stable"].split(": ", 1)[1]
        + "; a repeat of the correct candidate counts as correct (V2 matches names)"
    )


def evaluate_dataset(
    embedder: EmbedderLike,
    spec: DatasetSpec,
    examples: list[Example],
    roots: MediaRoots,
    options: MMEBOptions,
    context: dict[str, str],
    skipped_rows: int = 0,
    extra_corpus: list[RowItem] | None = None,
) -> tuple[DatasetResult, list[dict[str, Any]]]:
    """Embed and score one dataset.

    Args:
        embedder: the model.
        spec: the registry entry (metrics, meta-task, split, corpus-wide ranking).
        examples: the dataset's rows.
        roots: where media paths resolve, and how frames are read.
        options: run settings.
        context: ``model``, ``mmembed_version`` and ``data_revision`` for the record.
        skipped_rows: bad rows the loader left out; they count as misses (a lower bound).
        extra_corpus: candidates of a corpus-ranked dataset that no row lists.

    Returns:
        The result, and one prediction per query (``scoring.Scored.predictions``).
    """
    start = time.perf_counter()
    placeholders = options.placeholders or placeholder_style(embedder)
    if placeholders == "split" and any(example.query.plain is None for example in examples):
        placeholders = "in_place"  # MMEB-eval's joined rows: nothing to split (see the warning)
    corpus = global_corpus(examples, extra_corpus or []) if spec.corpus_ranked else None
    queries = list(dict.fromkeys(example.query for example in examples))
    listed = [c for example in examples for c in example.candidates]
    candidates = list(dict.fromkeys(listed + (corpus or [])))
    items = list(dict.fromkeys(queries + candidates))
    where = item_locations(examples)
    vectors, failed = embed_items(
        embedder, items, roots, options, label=spec.name, where=where, placeholders=placeholders
    )
    row_of = {item: row for row, item in enumerate(items)}
    scored = score_rows(
        vectors,
        row_of,
        examples,
        spec.metrics,
        _rank_rule(options.ties),
        corpus,
        skipped_rows,
    )
    sizes = [len(corpus) if corpus is not None else len(e.candidates) for e in examples] or [0]
    result = DatasetResult(
        name=spec.name,
        benchmark=spec.benchmark.value,
        meta_task=spec.meta_task.value,
        split=spec.split.value if spec.split else None,
        score=scored.metrics[spec.metric],
        metric=spec.metric,
        metrics=scored.metrics,
        num_queries=len(examples) + skipped_rows,
        num_candidates=sum(sizes) if examples else 0,
        unique_candidates=len(candidates),
        unique_queries=len(queries),
        candidates_per_query_min=min(sizes),
        candidates_per_query_max=max(sizes),
        chance=scored.chance[spec.metric],
        tie_rule=options.ties,
        tied_queries=scored.tied[spec.metric],
        duplicated_positives=int(scored.duplicated),
        skipped_rows=skipped_rows,
        failed_rows=scored.failed_rows,
        placeholders=placeholders,
        text_dropped=sum(text_dropped(item, placeholders) for item in items),
        failed_items=failed,
        max_queries=options.max_queries,
        wall_time_s=round(time.perf_counter() - start, 3),
        finished_at=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        ranking="corpus" if corpus is not None else "per row",
        chance_by_metric=scored.chance,
        tied_by_metric=scored.tied,
        tie_bounds={name: list(bounds) for name, bounds in scored.bounds.items()},
        precision=str(getattr(getattr(embedder, "cfg", None), "precision", "fp32")),
        video_files=sum(
            bool(item.video) and not (roots.videos / item.video).is_dir() for item in items
        )
        if roots.frame_rule == "v2"
        else 0,
        **context,
    )
    return result, scored.predictions


def embed_items(
    embedder: EmbedderLike,
    items: list[RowItem],
    roots: MediaRoots,
    options: MMEBOptions,
    label: str = "",
    where: dict[RowItem, str] | None = None,
    placeholders: Placeholders = "in_place",
) -> tuple[np.ndarray, int]:
    """Embed items in chunks; rows of items that failed (``on_error="skip"``) are NaN.

    Args:
        where: the first row and field of each item (``item_locations``), for messages.
        placeholders: how ``to_input`` reads media placeholders.

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
                inputs.append(to_input(item, roots, placeholders))
                positions.append(start + offset)
            except InputError as error:
                if options.on_error == "raise":
                    raise InputError(
                        f"{label}: {_describe(item, where)}: {error.reason}"
                    ) from error
                failed += 1
        split = placeholders == "split"  # items that keep their instruction apart give it
        instructions = [
            (chunk[p - start].instruction or None) if split else None for p in positions
        ]
        block = _encode(
            embedder, inputs, instructions, chunk, positions, start, options, label, where
        )
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
    instructions: list[str | None],
    chunk: list[RowItem],
    positions: list[int],
    start: int,
    options: MMEBOptions,
    label: str,
    where: dict[RowItem, str] | None = None,
) -> np.ndarray:
    if not inputs:
        return np.empty((0, int(embedder.dim)), dtype=np.float32)
    block: np.ndarray | None = None
    for instruction in dict.fromkeys(instructions):  # one call per instruction, in order
        picked = [k for k, given in enumerate(instructions) if given == instruction]
        try:
            vectors = embedder.encode(
                [inputs[k] for k in picked],
                instruction=instruction,
                batch_size=options.batch_size,
                normalize=True,
                convert_to="numpy",
                show_progress_bar=False,
                on_error=options.on_error,
            )
        except InputError as error:
            index = picked[error.index] if error.index is not None else None
            item = chunk[positions[index] - start] if index is not None else None
            place = _describe(item, where) if item is not None else "an item"
            raise InputError(f"{label}: {place}: {error.reason}") from error
        vectors = np.asarray(vectors, dtype=np.float32).reshape(len(picked), -1)
        if block is None:
            block = np.empty((len(inputs), vectors.shape[1]), dtype=np.float32)
        block[picked] = vectors
    return block


def item_locations(examples: list[Example]) -> dict[RowItem, str]:
    """Where each distinct item first appears: ``"row 3, tgt_img_path[2]"``, and so on."""
    where: dict[RowItem, str] = {}
    for example in examples:
        where.setdefault(example.query, f"row {example.row}, {_field(example.query, 'qry')}")
        for position, candidate in enumerate(example.candidates):
            field = f"{_field(candidate, 'tgt')}[{position}]"
            where.setdefault(candidate, f"row {example.row}, {field}")
    return where


def _field(item: RowItem, side: str) -> str:
    if item.video:
        return f"{side}_video_path"
    return f"{side}_img_path" if item.image else f"{side}_text"


def _describe(item: RowItem, where: dict[RowItem, str] | None = None) -> str:
    parts = [where[item]] if where and item in where else []
    parts += [f"text {item.text[:60]!r}"] if item.text else []
    parts += [f"image {item.image!r}"] if item.image else []
    parts += [f"video {item.video!r}"] if item.video else []
    return ", ".join(parts) or "empty item"


def placeholder_style(embedder: EmbedderLike) -> Placeholders:
    """``in_place`` for a model with a VLM ("sequence") tower, which writes its own media
    tokens (``split`` when its family's own MMEB code reads the instruction apart,
    ``BackboneSpec.mmeb_rows``), else ``removed``."""
    towers = getattr(embedder, "towers", None)
    if towers is None or "sequence" not in towers:
        return "removed"
    spec = getattr(towers["sequence"], "spec", None)  # a VLMTower's BackboneSpec
    return "split" if spec is not None and spec.mmeb_rows == "split" else "in_place"


def prompt_warnings(embedder: EmbedderLike, results: dict[str, DatasetResult]) -> list[str]:
    """A model whose own MMEB code reads the instruction apart, run on rows that join it to the
    text (MMEB-eval's): its scores there are not comparable to its published ones."""
    if placeholder_style(embedder) != "split":
        return []
    joined = [name for name, result in results.items() if result.placeholders == "in_place"]
    if not joined:
        return []
    return [
        f"{embedder.name}: {', '.join(joined)}: these rows give the instruction joined to the "
        "text (MMEB-eval's layout); this model's own MMEB code reads it apart "
        "(MMEB_Test_Instruct: the instruction as its system message, candidates without "
        "instruction text), so here the instruction stays in the text and the scores are not "
        "comparable to its published ones. Rows with qry_inst are read apart."
    ]


def _result_path(out: Path, name: str) -> Path:
    return out / "datasets" / f"{name}.json"


def _load_saved(
    out: Path, name: str, context: dict[str, str], options: MMEBOptions
) -> DatasetResult | None:
    path = _result_path(out, name)
    if options.overwrite or not path.is_file():
        return None
    result = DatasetResult.from_dict(json.loads(path.read_text(encoding="utf-8")))
    expected = {**context, "max_queries": options.max_queries, "tie_rule": options.ties}
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


def _load_model(name: str, options: MMEBOptions) -> EmbedderLike:
    """Load a model by name on the chosen device, by default as the official runs do: bf16 on
    a GPU (VLM2Vec casts the model to bf16, ``eval.py`` line 195 on ``main``), fp32 on a CPU."""
    import torch

    from ..models.registry import load

    device = options.device or ("cuda" if torch.cuda.is_available() else "cpu")
    precision = options.precision or ("fp32" if device == "cpu" else "bf16")
    logger.info("loading %s on %s in %s", name, device, precision)
    return load(name, device=device, precision=precision)
