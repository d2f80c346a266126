"""Readers for MMEB-V2's own data files: the columns VLM2Vec-V2's dataset parsers read
(TIGER-AI-Lab/VLM2Vec ``main`` = 6e1e1d42d4cba85ae4db4d3f7a25cba2465d1e16,
``src/data/eval_dataset/*.py``), turned into the harness's rows with the exact strings V2 builds.

Layout (the hub dataset's files, copied as they are)::

    DATA_DIR/<dataset>/*.parquet | *.jsonl       the rows (V2's columns, below)
    DATA_DIR/<dataset>/{queries,qrels,corpus}*   BEIR sets (ViDoRe, VisRAG): files or folders
    DATA_DIR/<dataset>/labels.txt                video classification: V2's class list, one per
                                                 line (``VIDEOCLS_LABEL_MAPPING``), the corpus
    VIDEO_DIR/<dataset>/<video id>/              V2's frame folders (its ``frame_root``)
    IMAGE_DIR/<dataset>/<corpus id>.png          V2's page images (its ``image_root``)

Texts use the Qwen2-VL backbone's strings (VLM2Vec-V2.0's), with ``<|image_1|>`` standing for
the image token and ``<|video_pad|>`` for the video token, so ``data.to_input`` puts each model's
own media where V2 puts the token. Candidate names are V2's (``RowItem.name``), so prediction files
compare with V2's. Parsers covered: vidore (with its language filter), visrag, and the video
parsers of ``v2_video`` (video_classification, ssv2, msrvtt, msvd, didemo, youcook2, vatex,
videomme, nextqa, egoschema, mvbench, activitynetqa, moment_retrieval, momentseeker): every
dataset of V2's ``video.yaml`` and ``visdoc.yaml``.

Reading is strict (``v2_rows``): a missing column stops the run; a field of the wrong shape, an
answer outside the options, or a per-row dataset's row with fewer than 2 candidates is an error
naming the dataset, the file, the row and the field, or, with ``skip_bad_rows``, a row left out
and counted as a miss.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import logging
import os
from pathlib import Path

from .data import DataError, Example, LoadedRows, RowItem
from .datasets import DATASETS
from .v2_rows import IMAGE, VIDEO, RowError, read_rows, v2_text
from .v2_video import BUILDERS, CLASS_INSTRUCTION, EVERY_FRAME, MVBENCH_SUBSETS, VIDEOMME_PROMPT

logger = logging.getLogger(__name__)

V2_PARSERS: dict[str, str] = {
    "SmthSmthV2": "ssv2",
    "HMDB51": "video_classification",
    "UCF101": "video_classification",
    "K700": "video_classification",
    "Breakfast": "video_classification",
    "MSR-VTT": "msrvtt",
    "MSVD": "msvd",
    "DiDeMo": "didemo",
    "YouCook2": "youcook2",
    "VATEX": "vatex",
    "QVHighlight": "moment_retrieval",
    "Charades-STA": "moment_retrieval",
    "MomentSeeker": "momentseeker",
    "Video-MME": "videomme",
    "NExTQA": "nextqa",
    "EgoSchema": "egoschema",
    "MVBench": "mvbench",
    "ActivityNetQA": "activitynetqa",
}
"""Dataset -> V2 parser (``experiments/public/eval/video.yaml``); every ViDoRe and
ViDoSeek/MMLongBench set uses ``vidore``, every VisRAG set ``visrag`` (``visdoc.yaml``)."""

VIDORE_LANGUAGE: dict[str, str] = {
    "ViDoRe_biomedical_lectures_v2": "english",
    "ViDoRe_economics_reports_v2": "english",
    "ViDoRe_esg_reports_v2": "english",
}
"""ViDoRe sets whose queries V2 keeps only in one language: the second entry of
``EVAL_DATASET_HF_PATH`` (``src/constant/dataset_hf_path.py`` lines 59-64), applied by
``dataset.filter(lambda example: example["language"] == lang)`` in ``vidore_dataset.py``
lines 82-86, to the queries only (qrels and corpus stay whole). Their ``_multilingual`` twins
read the same files unfiltered."""

V2_SAMPLE: dict[str, int] = {"SmthSmthV2": 1000}
"""``num_sample_per_subset`` of ``video.yaml``: V2 keeps the first N rows of the file
(``sample_dataset``, ``src/utils/dataset_utils.py`` lines 7-17); no other video or visual-document
set sets one."""

HUB_CONFIGS: dict[str, tuple[str, str]] = {
    "NExTQA": ("MC", "test"),
    "EgoSchema": ("Subset", "test"),
}
"""The hub config and split V2 loads (``EVAL_DATASET_HF_PATH``, ``dataset_hf_path.py`` lines
25-26): the folder ``DATA_DIR/<dataset>/<config>/`` holds the files when copied from the hub."""

DOC_QUERY = "Find a document image that matches the given query:"
DOC_TARGET = "Understand the content of the provided document image."

__all__ = [
    "CLASS_INSTRUCTION",
    "EVERY_FRAME",
    "IMAGE",
    "VIDEO",
    "VIDEOMME_PROMPT",
    "VIDORE_LANGUAGE",
    "parser_of",
    "read_v2",
    "v2_text",
]


def parser_of(dataset: str) -> str | None:
    """V2's parser for a dataset, or None when it has no reader here."""
    if dataset.startswith(("ViDoRe_", "ViDoSeek", "MMLongBench")):
        return "vidore"
    if dataset.startswith("VisRAG_"):
        return "visrag"
    return V2_PARSERS.get(dataset)


def read_v2(
    folder: Path,
    dataset: str,
    video_root: Path | None = None,
    skip_bad_rows: bool = False,
    min_candidates: int | None = None,
) -> LoadedRows | None:
    """The rows of a dataset stored in V2's layout, or None when ``folder`` holds none.

    Args:
        folder: ``DATA_DIR/<dataset>``.
        dataset: the registered name.
        video_root: ``VIDEO_DIR/<dataset>``, where moment-retrieval clips are listed.
        skip_bad_rows: leave out a row with a wrong field (counted in ``skipped``) instead of
            raising; a missing column always raises.
        min_candidates: fewer candidates in a row is a row error; None: 2 for a dataset ranked
            per row (one candidate would be a free hit), 1 for one ranked against its corpus.

    Raises:
        DataError: a file lacks a column the parser reads, or (without ``skip_bad_rows``) a row
            is malformed; the message names the dataset, the file, the row and the field.
    """
    parser = parser_of(dataset)
    if parser is None or not folder.is_dir():
        return None
    if min_candidates is None:
        spec = DATASETS.get(dataset)
        min_candidates = 1 if spec is not None and spec.corpus_ranked else 2
    if parser in ("vidore", "visrag"):
        return _beir(folder, dataset, parser == "visrag", skip_bad_rows)
    sources = _sources(folder, dataset, parser)
    if not sources:
        return None
    build = BUILDERS[parser]
    loaded = LoadedRows([], [])
    rows = (
        dataclasses.replace(row, fields=row.fields | added) if added else row
        for path, added in sources
        for row in read_rows([path], dataset)
    )
    for row in itertools.islice(rows, V2_SAMPLE.get(dataset)):
        try:
            example = build(row, len(loaded.examples) + len(loaded.skipped), video_root)
            if len(example.candidates) < min_candidates:
                raise row.error(
                    "candidates",
                    f"{len(example.candidates)} candidate(s), fewer than {min_candidates}: the "
                    "row would score without ranking anything (--allow-trivial accepts it)",
                )
            loaded.examples.append(example)
        except RowError as error:
            if not skip_bad_rows:
                raise
            logger.warning("skipping a bad row: %s", error)
            loaded.skipped.append(str(error))
    if parser == "video_classification":
        labels = folder / "labels.txt"
        names = labels.read_text(encoding="utf-8").splitlines() if labels.is_file() else []
        loaded.corpus = [RowItem(name, name=name) for name in names if name]
    return loaded


def _sources(folder: Path, dataset: str, parser: str) -> list[tuple[Path, dict[str, str]]]:
    """A video dataset's data files, each with the fields V2 adds to its rows: the files in
    ``folder``, else the hub's own tree: MVBench's 20 subset folders in ``subset_meta`` order,
    each row given its ``subset`` (``load_hf_dataset_multiple_subset``,
    ``src/utils/dataset_utils.py`` lines 78-91), or the config folder of ``HUB_CONFIGS``.

    Raises:
        DataError: some of MVBench's subset folders are there and others are not.
    """
    flat = [
        p
        for p in sorted(folder.iterdir())
        if p.suffix in (".parquet", ".jsonl") and p.name != "corpus.jsonl"
    ]
    if flat:
        return [(path, {}) for path in flat]
    if parser == "mvbench":
        present = [s for s in MVBENCH_SUBSETS if (folder / s).is_dir()]
        missing = [s for s in MVBENCH_SUBSETS if s not in present]
        if present and missing:
            raise DataError(f"{dataset}: {folder}: V2 reads all 20 subsets; missing {missing}")
        return [(p, {"subset": s}) for s in present for p in _split_files(folder / s, "train")]
    config = HUB_CONFIGS.get(dataset)
    if config is not None and (folder / config[0]).is_dir():
        return [(path, {}) for path in _split_files(folder / config[0], config[1])]
    return []


def _split_files(folder: Path, split: str) -> list[Path]:
    """The data files under a hub config folder, those of ``split`` when the names tell
    (``test-*.parquet``, ``train/0000.parquet``)."""
    files = sorted(p for p in folder.rglob("*") if p.suffix in (".parquet", ".jsonl"))
    chosen = [p for p in files if p.relative_to(folder).parts[0].startswith(split)]
    return chosen or files


def _beir(folder: Path, dataset: str, hashed: bool, skip_bad_rows: bool) -> LoadedRows | None:
    """``vidore_dataset.py`` lines 15-111 / ``visrag_dataset.py`` lines 15-110: queries (in one
    language for the sets of ``VIDORE_LANGUAGE``), qrels with score > 0
    (``load_qrels_mapping``), the corpus in its order; pages named by corpus id."""
    parts = {part: _part(folder, part) for part in ("queries", "qrels", "corpus")}
    if not all(parts.values()):
        return None
    qrels: dict[str, dict[str, float]] = {}
    for row in read_rows(parts["qrels"], dataset):
        query_id, corpus_id = row.ident("query-id"), row.ident("corpus-id")
        score = row.number_value("score")
        if score > 0:
            qrels.setdefault(query_id, {})[corpus_id] = score
    page = _hashed_page if hashed else (lambda corpus_id: f"{corpus_id}.png")
    target = v2_text(DOC_TARGET, image=True)
    language = VIDORE_LANGUAGE.get(dataset)
    loaded = LoadedRows([], [])
    number = 0
    for row in read_rows(parts["queries"], dataset):
        try:
            if language is not None and row.text("language") != language:
                continue
            query_id, text = row.ident("query-id"), row.text("query")
            judged = qrels.get(query_id)
            if not judged:
                raise row.error("query-id", f"query {query_id!r} has no relevant page in qrels")
            pages = tuple(RowItem(target, image=page(c), name=c) for c in judged)
            query = RowItem(v2_text(DOC_QUERY, text))
            loaded.examples.append(Example(query, pages, tuple(judged.values()), number))
        except RowError as error:
            if not skip_bad_rows:
                raise
            logger.warning("skipping a bad row: %s", error)
            loaded.skipped.append(str(error))
        number += 1
    loaded.corpus = [
        RowItem(target, image=page(corpus_id), name=corpus_id)
        for corpus_id in (row.ident("corpus-id") for row in read_rows(parts["corpus"], dataset))
    ]
    return loaded


def _part(folder: Path, part: str) -> list[Path]:
    inside = folder / part
    found = (
        sorted(inside.glob("*.parquet")) + sorted(inside.glob("*.jsonl")) if inside.is_dir() else []
    )
    return found or sorted(p for p in folder.glob(f"{part}*") if p.suffix in (".parquet", ".jsonl"))


def _hashed_page(image_name: str) -> str:
    """VisRAG's file name for a page: the first 50 characters of the name, ``_``, 8 hex digits
    of its md5, the extension (``visrag_dataset.py`` lines 29-33)."""
    base, ext = os.path.splitext(image_name)
    return base[:50] + "_" + hashlib.md5(image_name.encode("utf-8")).hexdigest()[:8] + ext
